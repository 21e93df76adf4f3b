package delivery_test

import (
	"context"
	"errors"
	"sync"
	"sync/atomic"
	"testing"
	"time"

	"github.com/sbagenthub/twilio-worker/delivery"
	"github.com/sbagenthub/twilio-worker/internal/redistest"
)

func TestStatusOnlyMovesForward(t *testing.T) {
	t.Parallel()
	ctx := context.Background()
	s := delivery.NewStore(redistest.Start(t).Client(t))
	if err := s.Track(ctx, delivery.Record{SID: "SM1", TaskID: "t1", To: "+14155551234", Status: "queued"}); err != nil {
		t.Fatal(err)
	}
	steps := []struct {
		status string
		code   int
		final  bool
		want   string
	}{
		{"sent", 0, false, "sent"},
		{"sent", 0, false, "sent"},
		{"queued", 0, false, "sent"},
		{"undelivered", 30003, true, "undelivered"},
		{"delivered", 0, false, "undelivered"},
		{"undelivered", 30003, false, "undelivered"},
	}
	for i, st := range steps {
		rec, became, err := s.Apply(ctx, "SM1", st.status, st.code, time.Now())
		if err != nil {
			t.Fatal(err)
		}
		if became != st.final || rec.Status != st.want {
			t.Fatalf("step %d: %+v became final %v", i, rec, became)
		}
	}
	rec, _ := s.Get(ctx, "SM1")
	if rec.ErrorCode != 30003 || rec.TaskID != "t1" || !rec.Final() {
		t.Fatalf("record %+v", rec)
	}
	if _, err := s.Get(ctx, "SM404"); !errors.Is(err, delivery.ErrNotFound) {
		t.Fatalf("untracked: %v", err)
	}
	// A callback for a message nobody tracks records nothing.
	if _, _, err := s.Apply(ctx, "SM3", "delivered", 0, time.Now()); !errors.Is(err, delivery.ErrNotFound) {
		t.Fatalf("untracked callback: %v, want ErrNotFound", err)
	}
	if _, err := s.Get(ctx, "SM3"); !errors.Is(err, delivery.ErrNotFound) {
		t.Fatalf("a callback for an untracked message made a record: %v", err)
	}
	// An early callback of ours, before Track: Track keeps the newer status.
	if _, _, err := s.ApplyEarly(ctx, "SM2", "delivered", 0, time.Now()); err != nil {
		t.Fatal(err)
	}
	if err := s.Track(ctx, delivery.Record{SID: "SM2", To: "+14155551234", Status: "queued"}); err != nil {
		t.Fatal(err)
	}
	if rec, _ := s.Get(ctx, "SM2"); rec.Status != "delivered" {
		t.Fatalf("Track overwrote a callback's status: %+v", rec)
	}
}

func TestExactlyOneReportMakesItFinal(t *testing.T) {
	t.Parallel()
	ctx := context.Background()
	s := delivery.NewStore(redistest.Start(t).Client(t))
	_ = s.Track(ctx, delivery.Record{SID: "SM3", To: "+14155551234", Status: "queued"})
	var finals atomic.Int32
	var wg sync.WaitGroup
	for i := 0; i < 20; i++ {
		wg.Add(1)
		go func(i int) {
			defer wg.Done()
			status := "delivered"
			if i%2 == 0 {
				status = "undelivered"
			}
			if _, became, err := s.Apply(ctx, "SM3", status, 30003, time.Now()); err == nil && became {
				finals.Add(1)
			}
		}(i)
	}
	wg.Wait()
	if finals.Load() != 1 {
		t.Fatalf("%d reports made the message final, want 1", finals.Load())
	}
}

func TestTransientCodes(t *testing.T) {
	for code, want := range map[int]bool{30001: true, 30003: true, 30008: true, 30005: false, 30006: false, 0: false} {
		if delivery.Transient(code) != want {
			t.Errorf("Transient(%d) = %v", code, !want)
		}
	}
}

func TestSettledIsRecorded(t *testing.T) {
	t.Parallel()
	ctx := context.Background()
	s := delivery.NewStore(redistest.Start(t).Client(t))
	_ = s.Track(ctx, delivery.Record{SID: "SM9", To: "+14155551234", Status: "queued"})
	rec, _, _ := s.Apply(ctx, "SM9", "undelivered", 30003, time.Now())
	if rec.Settled {
		t.Fatal("settled before anyone acted on it")
	}
	if err := s.MarkSettled(ctx, "SM9"); err != nil {
		t.Fatal(err)
	}
	if rec, _ := s.Get(ctx, "SM9"); !rec.Settled {
		t.Fatal("MarkSettled not recorded")
	}
}
