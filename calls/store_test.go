package calls_test

import (
	"context"
	"errors"
	"sync"
	"testing"
	"time"

	"github.com/sbagenthub/twilio-worker/calls"
	"github.com/sbagenthub/twilio-worker/internal/redistest"
)

func TestApplyIgnoresDuplicatesAndReordering(t *testing.T) {
	t.Parallel()
	ctx := context.Background()
	s := calls.NewStore(redistest.Start(t).Client(t))
	now := time.Now().UTC()
	if err := s.Create(ctx, calls.Record{SID: "CA1", To: "+14155551234", From: "+15005550006", Status: "queued", CreatedAt: now}); err != nil {
		t.Fatal(err)
	}
	steps := []struct {
		status string
		became bool
	}{
		{"ringing", false}, {"ringing", false}, {"queued", false}, {"in-progress", false},
		{"completed", true}, {"completed", false}, {"ringing", false}, {"no-answer", false},
	}
	for i, st := range steps {
		_, became, err := s.Apply(ctx, "CA1", calls.Update{Status: st.status, At: now.Add(time.Duration(i) * time.Second), Source: "callback", Duration: 4})
		if err != nil {
			t.Fatal(err)
		}
		if became != st.became {
			t.Fatalf("step %d (%s): became terminal = %v", i, st.status, became)
		}
	}
	r, err := s.Get(ctx, "CA1")
	if err != nil {
		t.Fatal(err)
	}
	var got []string
	for _, c := range r.History {
		got = append(got, c.Status)
	}
	want := []string{"queued", "ringing", "in-progress", "completed"}
	if r.Status != "completed" || r.Duration != 4 || len(got) != len(want) {
		t.Fatalf("record %+v, history %v, want %v", r, got, want)
	}
	for i := range want {
		if got[i] != want[i] {
			t.Fatalf("history %v, want %v", got, want)
		}
	}
	if _, err := s.Get(ctx, "CA404"); !errors.Is(err, calls.ErrNotFound) {
		t.Fatalf("missing record: %v", err)
	}
	// Create never resets an existing record.
	if err := s.Create(ctx, calls.Record{SID: "CA1", Status: "queued"}); err != nil {
		t.Fatal(err)
	}
	if r, _ := s.Get(ctx, "CA1"); r.Status != "completed" {
		t.Fatalf("Create reset the record to %s", r.Status)
	}
}

func TestApplyConcurrentOnlyOneBecomesTerminal(t *testing.T) {
	t.Parallel()
	ctx := context.Background()
	s := calls.NewStore(redistest.Start(t).Client(t))
	if err := s.Create(ctx, calls.Record{SID: "CA2", Status: "queued"}); err != nil {
		t.Fatal(err)
	}
	var wg sync.WaitGroup
	var mu sync.Mutex
	became := 0
	for i := 0; i < 16; i++ {
		wg.Add(1)
		go func() {
			defer wg.Done()
			_, b, err := s.Apply(ctx, "CA2", calls.Update{Status: "completed", At: time.Now(), Source: "poll"})
			if err != nil {
				t.Error(err)
			}
			if b {
				mu.Lock()
				became++
				mu.Unlock()
			}
		}()
	}
	wg.Wait()
	if became != 1 {
		t.Fatalf("%d updates reported the call becoming terminal, want exactly 1", became)
	}
	if r, _ := s.Get(ctx, "CA2"); r.Polls != 16 {
		t.Fatalf("polls = %d, want 16", r.Polls)
	}
}
