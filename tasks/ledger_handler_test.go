package tasks_test

import (
	"context"
	"encoding/json"
	"errors"
	"sync/atomic"
	"testing"
	"time"

	"github.com/hibiken/asynq"

	"github.com/sbagenthub/twilio-worker/ledger"
	"github.com/sbagenthub/twilio-worker/producer"
	"github.com/sbagenthub/twilio-worker/tasks"
	"github.com/sbagenthub/twilio-worker/twiliosim"
)

func TestDroppedConnectionSendsExactlyOnce(t *testing.T) {
	t.Parallel()
	// Every create is answered by a dropped connection: Twilio has the
	// message, the worker does not know. Re-runs reconcile instead of sending.
	h := newHarness(t, harnessOpt{sim: twiliosim.Config{DropRate: 1}})
	id := h.enqueue(t, tasks.SMSPayload{To: "+14155550160", Body: "alert: disk full"})
	info := h.waitFinal(t, id)
	if info.State != asynq.TaskStateCompleted {
		t.Fatalf("state %s (%q)", info.State, info.LastErr)
	}
	msgs := h.messagesTo("+14155550160")
	if len(msgs) != 1 {
		t.Fatalf("%d messages in the simulator, want exactly 1", len(msgs))
	}
	var res tasks.SMSResult
	_ = json.Unmarshal(info.Result, &res)
	if res.MessageSID != msgs[0].Sid {
		t.Fatalf("result %+v does not name the message Twilio has (%s)", res, msgs[0].Sid)
	}
	if info.Retried < 1 {
		t.Fatal("the dropped answer did not cause a re-run")
	}
}

func TestDroppedCallPlacedExactlyOnce(t *testing.T) {
	t.Parallel()
	h := newHarness(t, harnessOpt{sim: twiliosim.Config{DropRate: 1}})
	task, err := tasks.NewMakeCallTask(tasks.CallPayload{To: "+14155550161", Say: "hi"}, tasks.Rules{})
	if err != nil {
		t.Fatal(err)
	}
	enq, err := h.client.Enqueue(task)
	if err != nil {
		t.Fatal(err)
	}
	info := h.waitFinal(t, enq.ID)
	if info.State != asynq.TaskStateCompleted || len(h.sim.Calls()) != 1 {
		t.Fatalf("state %s (%q), %d calls placed; want 1", info.State, info.LastErr, len(h.sim.Calls()))
	}
}

// twice runs the handler a second time after a successful first run, as
// asynq does when a worker dies between the send and the acknowledgement.
type twice struct{ inner asynq.Handler }

func (h twice) ProcessTask(ctx context.Context, t *asynq.Task) error {
	if err := h.inner.ProcessTask(ctx, t); err != nil {
		return err
	}
	return h.inner.ProcessTask(ctx, t)
}

func TestRerunAfterSuccessDoesNotSendAgain(t *testing.T) {
	t.Parallel()
	h := newHarness(t, harnessOpt{})
	// A second server on the same Redis whose handler runs every task twice.
	mux := asynq.NewServeMux()
	mux.Handle(tasks.TypeSendSMS, twice{&tasks.SMSHandler{Messenger: h.tw, OptOuts: h.optouts, Ledger: ledger.New(h.rdb)}})
	srv := asynq.NewServerFromRedisClient(h.rdb, asynq.Config{Concurrency: 2, Queues: map[string]int{"twice": 1}, LogLevel: asynq.ErrorLevel})
	if err := srv.Start(mux); err != nil {
		t.Fatal(err)
	}
	t.Cleanup(srv.Shutdown)
	id := h.enqueue(t, tasks.SMSPayload{To: "+14155550162", Body: "once"}, asynq.Queue("twice"))
	waitFor(t, "the task to complete", func() bool {
		info, err := h.insp.GetTaskInfo("twice", id)
		return err == nil && info.State == asynq.TaskStateCompleted
	})
	if n := len(h.messagesTo("+14155550162")); n != 1 {
		t.Fatalf("%d messages after two runs of one task, want 1", n)
	}
}

// cutShort runs inner, then fails the run as a lease expiry would after the
// send: the task runs again. Only the first run is cut short.
type cutShort struct {
	first, rest asynq.Handler
	runs        *atomic.Int32
}

func (h cutShort) ProcessTask(ctx context.Context, t *asynq.Task) error {
	if h.runs.Add(1) == 1 {
		_ = h.first.ProcessTask(ctx, t)
		return errors.New("lease expired")
	}
	return h.rest.ProcessTask(ctx, t)
}

// TestRerunAfterSendStartsTracking: a run that sent (the ledger has the
// SID) but ended before it started tracking leaves the re-run to do it: the
// message gets its delivery record, linked to the task, and is followed.
func TestRerunAfterSendStartsTracking(t *testing.T) {
	t.Parallel()
	h := newHarness(t, harnessOpt{})
	led := ledger.New(h.rdb)
	tracker := &tasks.Tracker{Store: h.deliveries, Fetcher: h.tw, FollowUps: &producer.FollowUps{Client: h.client},
		Polling: tasks.Polling{First: time.Second, Max: time.Second}}
	mux := asynq.NewServeMux()
	mux.Handle(tasks.TypeSendSMS, cutShort{
		first: &tasks.SMSHandler{Messenger: h.tw, OptOuts: h.optouts, Ledger: led}, // sends, never tracks
		rest:  &tasks.SMSHandler{Messenger: h.tw, OptOuts: h.optouts, Ledger: led, Tracker: tracker},
		runs:  new(atomic.Int32),
	})
	srv := asynq.NewServerFromRedisClient(h.rdb, asynq.Config{Concurrency: 2, Queues: map[string]int{"cut": 1}, LogLevel: asynq.ErrorLevel,
		RetryDelayFunc: func(int, error, *asynq.Task) time.Duration { return 10 * time.Millisecond }})
	if err := srv.Start(mux); err != nil {
		t.Fatal(err)
	}
	t.Cleanup(srv.Shutdown)
	id := h.enqueue(t, tasks.SMSPayload{To: "+14155550163", Body: "cut short"}, asynq.Queue("cut"))
	waitFor(t, "the task to complete", func() bool {
		info, err := h.insp.GetTaskInfo("cut", id)
		return err == nil && info.State == asynq.TaskStateCompleted
	})
	msgs := h.messagesTo("+14155550163")
	if len(msgs) != 1 {
		t.Fatalf("%d messages, want 1", len(msgs))
	}
	waitFor(t, "the delivery record", func() bool {
		rec, err := h.deliveries.Get(bg, msgs[0].Sid)
		return err == nil && rec.TaskID == id && rec.To == "+14155550163"
	})
}
