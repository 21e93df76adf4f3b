package tasks

import (
	"context"
	"errors"
	"log/slog"
	"testing"

	"github.com/sbagenthub/twilio-worker/commlog"
	"github.com/sbagenthub/twilio-worker/internal/redistest"
)

// TestOutcomeOutlivesTheRunsContext: when the lease expires mid-run asynq
// cancels the handler's context; the entry saying how the attempt ended must
// still be written.
func TestOutcomeOutlivesTheRunsContext(t *testing.T) {
	t.Parallel()
	rdb := redistest.Start(t).Client(t)
	l := commlog.New(rdb, commlog.Config{})
	j := &journal{log: l, entry: commlog.Entry{TaskID: "lease-expired", To: "+14155550123"}}
	ctx, cancel := context.WithCancel(context.Background())
	cancel()
	j.outcome(ctx, slog.New(slog.DiscardHandler), errors.New("send sms: context canceled"))
	var got []commlog.Entry
	if _, err := l.Read(context.Background(), commlog.Filter{TaskID: "lease-expired"}, func(e commlog.Entry) error {
		got = append(got, e)
		return nil
	}); err != nil {
		t.Fatal(err)
	}
	if len(got) != 1 || got[0].Event != commlog.Failed || got[0].Status != "retrying" {
		t.Fatalf("log %+v; want the failed (retrying) outcome", got)
	}
}
