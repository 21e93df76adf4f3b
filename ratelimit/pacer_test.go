package ratelimit_test

import (
	"context"
	"errors"
	"sync"
	"sync/atomic"
	"testing"
	"time"

	"github.com/sbagenthub/twilio-worker/ratelimit"
)

func TestPacerCapsConcurrency(t *testing.T) {
	t.Parallel()
	p := ratelimit.NewPacer(0, 3)
	var inFlight, most atomic.Int64
	var wg sync.WaitGroup
	for range 20 {
		wg.Add(1)
		go func() {
			defer wg.Done()
			release, err := p.Acquire(bg)
			if err != nil {
				t.Error(err)
				return
			}
			n := inFlight.Add(1)
			for m := most.Load(); n > m && !most.CompareAndSwap(m, n); m = most.Load() {
			}
			time.Sleep(time.Millisecond)
			inFlight.Add(-1)
			release()
		}()
	}
	wg.Wait()
	if m := most.Load(); m > 3 || m < 1 {
		t.Fatalf("%d requests in flight at once, cap 3", m)
	}
	// With the cap taken, Acquire gives up when its context ends.
	r1, _ := p.Acquire(bg)
	r2, _ := p.Acquire(bg)
	r3, _ := p.Acquire(bg)
	ctx, cancel := context.WithCancel(bg)
	cancel()
	if _, err := p.Acquire(ctx); !errors.Is(err, context.Canceled) {
		t.Fatalf("err %v with the cap taken and the context canceled", err)
	}
	r1()
	r2()
	r3()
}

func TestPacerRate(t *testing.T) {
	t.Parallel()
	// The sixth request needs ~200 ms after the first five (the burst is
	// one second's worth): a deadline shorter than that is refused at once.
	// A machine that stalls 200 ms between them refills a token, which
	// explains a sixth let through; only one let through sooner is wrong.
	for try := 1; ; try++ {
		p := ratelimit.NewPacer(5, 0)
		began := time.Now()
		for range 5 {
			if _, err := p.Acquire(bg); err != nil {
				t.Fatal(err)
			}
		}
		ctx, cancel := context.WithTimeout(bg, 20*time.Millisecond)
		_, err := p.Acquire(ctx)
		cancel()
		if err != nil {
			break
		}
		if took := time.Since(began); took < 200*time.Millisecond || try == 5 {
			t.Fatalf("a sixth request %v after the first was let through at 5/s (try %d)", took, try)
		}
	}
	var nilPacer *ratelimit.Pacer
	if release, err := nilPacer.Acquire(bg); err != nil || release == nil {
		t.Fatal("a nil Pacer must not pace")
	}
}

func TestUrgentGoesAheadOfThePacedQueue(t *testing.T) {
	t.Parallel()
	p := ratelimit.NewPacer(1, 1) // one request a second, one in flight
	release, err := p.Acquire(context.Background())
	if err != nil {
		t.Fatal(err)
	}
	defer release()
	// The paced queue is full: a normal request would wait for the release.
	ctx, cancel := context.WithTimeout(context.Background(), 50*time.Millisecond)
	defer cancel()
	if _, err := p.Acquire(ctx); err == nil {
		t.Fatal("a normal request got a turn while the cap was taken")
	}
	// An urgent one does not wait.
	// (A backstop: one that waited would wait for the release, at the end.)
	ctx2, cancel2 := context.WithTimeout(ratelimit.Urgent(context.Background()), 30*time.Second)
	defer cancel2()
	rel, err := p.Acquire(ctx2)
	if err != nil {
		t.Fatalf("urgent request waited: %v", err)
	}
	rel()
}
