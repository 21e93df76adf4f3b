package commlog_test

import (
	"context"
	"testing"
	"time"

	"github.com/sbagenthub/twilio-worker/commlog"
	"github.com/sbagenthub/twilio-worker/internal/redistest"
)

func TestAppendReadFilterRedact(t *testing.T) {
	t.Parallel()
	ctx := context.Background()
	rdb := redistest.Start(t).Client(t)
	l := commlog.New(rdb, commlog.Config{})
	base := time.Now().Add(-time.Minute)
	for i, e := range []commlog.Entry{
		{Event: commlog.Sending, TaskID: "t1", To: "+14155550001", Body: "code 123456", Slot: base.Add(-time.Millisecond)},
		{Event: commlog.Sent, TaskID: "t1", To: "+14155550001", SID: "SM1"},
		{Event: commlog.Sent, TaskID: "t2", To: "+14155550002", SID: "SM2"},
		{Event: commlog.Delivered, SID: "SM1", To: "+14155550001", Status: "delivered"},
	} {
		e.At = base.Add(time.Duration(i) * time.Second)
		if err := l.Append(ctx, e); err != nil {
			t.Fatal(err)
		}
	}
	var got []commlog.Entry
	if _, err := l.Read(ctx, commlog.Filter{To: "+14155550001"}, func(e commlog.Entry) error { got = append(got, e); return nil }); err != nil {
		t.Fatal(err)
	}
	if len(got) != 3 || got[0].Event != commlog.Sending || got[2].Event != commlog.Delivered {
		t.Fatalf("history %+v", got)
	}
	if !got[0].Slot.Equal(base.Add(-time.Millisecond)) || !got[1].Slot.IsZero() {
		t.Fatalf("slots %v, %v: the sending entry keeps the limiter's decision time", got[0].Slot, got[1].Slot)
	}
	if got[0].Body == "code 123456" || got[0].Body == "" {
		t.Fatalf("body %q: redacted by default, with its length", got[0].Body)
	}
	var since []commlog.Entry
	_, _ = l.Read(ctx, commlog.Filter{Since: base.Add(1500 * time.Millisecond)}, func(e commlog.Entry) error { since = append(since, e); return nil })
	if len(since) != 2 {
		t.Fatalf("since: %d entries, want 2", len(since))
	}
}

func TestRetentionTrims(t *testing.T) {
	t.Parallel()
	ctx := context.Background()
	rdb := redistest.Start(t).Client(t)
	// The second batch must take less than the retention, or its own first
	// entries age out too: two seconds is far more than 300 appends take
	// on a machine much slower than this one.
	const retention = 2 * time.Second
	l := commlog.New(rdb, commlog.Config{Retention: retention, KeepBodies: true})
	for i := 0; i < 300; i++ {
		if err := l.Append(ctx, commlog.Entry{Event: commlog.Sent}); err != nil {
			t.Fatal(err)
		}
	}
	time.Sleep(retention + 500*time.Millisecond) // the first batch ages past the retention
	second := time.Now()
	for i := 0; i < 300; i++ {
		if err := l.Append(ctx, commlog.Entry{Event: commlog.Sent, Body: "kept"}); err != nil {
			t.Fatal(err)
		}
	}
	n, err := rdb.XLen(ctx, commlog.Key).Result()
	if err != nil {
		t.Fatal(err)
	}
	// Approximate trimming removes whole macro-nodes: most old entries go,
	// and none of the second batch (unless appending it took longer than
	// the retention, which explains their going).
	took := time.Since(second)
	if n >= 600 || (n < 300 && took < retention) {
		t.Fatalf("stream holds %d entries (the second 300 took %v); entries older than the retention should be trimmed, no others", n, took)
	}
	var body string
	_, _ = l.Read(ctx, commlog.Filter{Since: time.Now().Add(-time.Minute)}, func(e commlog.Entry) error { body = e.Body; return nil })
	if body != "kept" {
		t.Fatalf("LOG_BODIES=keep: body %q", body)
	}
}

func TestFollow(t *testing.T) {
	t.Parallel()
	rdb := redistest.Start(t).Client(t)
	l := commlog.New(rdb, commlog.Config{})
	ctx, cancel := context.WithTimeout(context.Background(), 5*time.Second)
	defer cancel()
	got := make(chan commlog.Entry, 1)
	go func() {
		_ = l.Follow(ctx, commlog.Filter{To: "+14155550003"}, "0", func(e commlog.Entry) error { got <- e; return context.Canceled })
	}()
	_ = l.Append(context.Background(), commlog.Entry{Event: commlog.Sent, To: "+14155550009"})
	_ = l.Append(context.Background(), commlog.Entry{Event: commlog.Delivered, To: "+14155550003"})
	select {
	case e := <-got:
		if e.Event != commlog.Delivered {
			t.Fatalf("followed %+v", e)
		}
	case <-ctx.Done():
		t.Fatal("follow saw nothing")
	}
}
