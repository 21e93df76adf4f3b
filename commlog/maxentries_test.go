package commlog_test

import (
	"context"
	"fmt"
	"testing"
	"time"

	"github.com/sbagenthub/twilio-worker/commlog"
	"github.com/sbagenthub/twilio-worker/internal/redistest"
)

// TestMaxEntriesBoundsTheStream: however young the entries, the stream keeps
// about MaxEntries of them (MAXLEN ~ trims whole nodes of at most 100).
func TestMaxEntriesBoundsTheStream(t *testing.T) {
	t.Parallel()
	ctx := context.Background()
	rdb := redistest.Start(t).Client(t)
	const max = 500
	l := commlog.New(rdb, commlog.Config{MaxEntries: max})
	for i := range 3000 {
		if err := l.Append(ctx, commlog.Entry{Event: commlog.Sent, TaskID: fmt.Sprint("t", i), SID: fmt.Sprintf("SM%032x", i)}); err != nil {
			t.Fatal(err)
		}
	}
	n, err := l.Len(ctx)
	if err != nil {
		t.Fatal(err)
	}
	if n < max || n >= max+100 {
		t.Fatalf("%d entries after 3000 appends with MaxEntries %d; want %d up to one stream node more", n, max, max)
	}
	// The newest are the ones kept.
	var last commlog.Entry
	if _, err := l.Read(ctx, commlog.Filter{}, func(e commlog.Entry) error { last = e; return nil }); err != nil {
		t.Fatal(err)
	}
	if last.TaskID != "t2999" {
		t.Fatalf("newest entry %q, want t2999", last.TaskID)
	}
}

// TestEntrySize measures what an entry costs in Redis (MEMORY USAGE over
// many typical entries), the figure README's sizing uses. It checks only
// that the measure is sane; the figure is printed with -v.
func TestEntrySize(t *testing.T) {
	t.Parallel()
	ctx := context.Background()
	rdb := redistest.Start(t).Client(t)
	l := commlog.New(rdb, commlog.Config{})
	const messages = 5000
	at := time.Now().Add(-time.Hour)
	for i := range messages {
		task := fmt.Sprintf("incident-42:+1415555%04d", i)
		to := fmt.Sprintf("+1415555%04d", i)
		sid := fmt.Sprintf("SM%032x", i)
		for _, e := range []commlog.Entry{
			{Event: commlog.Sending, Channel: "sms", TaskID: task, To: to, From: "+15005550006", Body: "Hi Jane, the API is down; we are on it."},
			{Event: commlog.Sent, Channel: "sms", TaskID: task, To: to, From: "+15005550006", SID: sid, Status: "queued"},
			{Event: commlog.Delivered, Channel: "sms", TaskID: task, To: to, SID: sid, Status: "delivered"},
		} {
			at = at.Add(time.Millisecond)
			e.At = at
			if err := l.Append(ctx, e); err != nil {
				t.Fatal(err)
			}
		}
	}
	bytes, err := rdb.MemoryUsage(ctx, commlog.Key, 0).Result() // SAMPLES 0: every node
	if err != nil {
		t.Fatal(err)
	}
	n, _ := l.Len(ctx)
	per := float64(bytes) / float64(n)
	t.Logf("tw:log: %d entries, %d bytes: %.0f bytes per entry, %.0f per message (3 entries)", n, bytes, per, per*3)
	if n != 3*messages || per < 50 || per > 2000 {
		t.Fatalf("%d entries at %.0f bytes each: implausible", n, per)
	}
}
