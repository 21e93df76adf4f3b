package tasks_test

import (
	"context"
	"fmt"
	"net/http/httptest"
	"strings"
	"sync"
	"testing"
	"time"

	"github.com/hibiken/asynq"
	"github.com/redis/go-redis/v9"

	"github.com/sbagenthub/twilio-worker/campaign"
	"github.com/sbagenthub/twilio-worker/commlog"
	"github.com/sbagenthub/twilio-worker/delivery"
	"github.com/sbagenthub/twilio-worker/fraud"
	"github.com/sbagenthub/twilio-worker/internal/redistest"
	"github.com/sbagenthub/twilio-worker/ledger"
	"github.com/sbagenthub/twilio-worker/optout"
	"github.com/sbagenthub/twilio-worker/producer"
	"github.com/sbagenthub/twilio-worker/ratelimit"
	"github.com/sbagenthub/twilio-worker/tasks"
	"github.com/sbagenthub/twilio-worker/twilioapi"
	"github.com/sbagenthub/twilio-worker/twiliosim"
)

// tripCounter counts what a client sends to Redis: round trips (a command
// or a pipeline) and commands.
type tripCounter struct {
	mu       sync.Mutex
	trips    int
	commands []string
}

func (r *tripCounter) DialHook(next redis.DialHook) redis.DialHook { return next }

func (r *tripCounter) ProcessHook(next redis.ProcessHook) redis.ProcessHook {
	return func(ctx context.Context, cmd redis.Cmder) error {
		if n := cmd.Name(); n == "hello" || n == "client" { // a new connection's handshake
			return next(ctx, cmd)
		}
		r.mu.Lock()
		r.trips++
		r.commands = append(r.commands, cmd.Name())
		r.mu.Unlock()
		return next(ctx, cmd)
	}
}

func (r *tripCounter) ProcessPipelineHook(next redis.ProcessPipelineHook) redis.ProcessPipelineHook {
	return func(ctx context.Context, cmds []redis.Cmder) error {
		r.mu.Lock()
		r.trips++
		for _, c := range cmds {
			r.commands = append(r.commands, c.Name())
		}
		r.mu.Unlock()
		return next(ctx, cmds)
	}
}

func (r *tripCounter) take() (int, []string) {
	r.mu.Lock()
	defer r.mu.Unlock()
	n, c := r.trips, r.commands
	r.trips, r.commands = 0, nil
	return n, c
}

// TestSMSRoundTrips: with every store the worker gives it (ledger, limiter,
// opt-out list, fraud guard, campaigns, delivery tracking, the
// communications log), the handler talks to Redis in one round trip before
// the Twilio request and one after it, when the limits let the message go
// at once. Counted on the handler's own client (asynq's are apart), after a
// first message has loaded the scripts.
func TestSMSRoundTrips(t *testing.T) {
	t.Parallel()
	srv := redistest.Start(t)
	queueRdb := srv.Client(t) // asynq's
	rdb := srv.Client(t)      // the handler's
	counted := &tripCounter{}
	rdb.AddHook(counted)

	sim := twiliosim.New(twiliosim.Config{})
	hs := httptest.NewServer(sim)
	t.Cleanup(func() { hs.Close(); sim.Close() })
	tw, err := twilioapi.New(twilioapi.Config{AccountSID: sim.AccountSID(), AuthToken: twilioapi.Secret(sim.AuthToken()),
		PhoneNumber: "+15005550006", BaseURL: hs.URL, Timeout: 5 * time.Second})
	if err != nil {
		t.Fatal(err)
	}
	client := asynq.NewClientFromRedisClient(queueRdb)
	comms := commlog.New(rdb, commlog.Config{})
	handler := &tasks.SMSHandler{
		Messenger: tw, OptOuts: optout.NewStore(rdb), Ledger: ledger.New(rdb), Comms: comms,
		Tracker: &tasks.Tracker{Store: delivery.NewStore(rdb), Fetcher: tw, FollowUps: &producer.FollowUps{Client: client},
			Polling: tasks.Polling{First: time.Hour, Max: time.Hour}},
		Limiter: ratelimit.New(rdb, ratelimit.Config{Sender: ratelimit.Rate{N: 1000, Per: time.Second, Burst: 1},
			Recipient: ratelimit.Rate{N: 10, Per: time.Minute, Burst: 1}}),
		Campaigns: campaign.NewStore(rdb),
		Guard:     fraud.New(rdb, fraud.Config{}),
		Redis:     rdb,
	}
	mux := asynq.NewServeMux()
	mux.Handle(tasks.TypeSendSMS, handler)
	server := asynq.NewServerFromRedisClient(queueRdb, asynq.Config{Concurrency: 1, Queues: tasks.Queues,
		TaskCheckInterval: 10 * time.Millisecond, LogLevel: asynq.ErrorLevel})
	if err := server.Start(mux); err != nil {
		t.Fatal(err)
	}
	t.Cleanup(server.Shutdown)
	insp := asynq.NewInspectorFromRedisClient(queueRdb)

	send := func(i int) {
		t.Helper()
		task, err := tasks.NewSendSMSTask(tasks.SMSPayload{To: fmt.Sprintf("+1415555%04d", i), Body: "hi"}, tasks.Rules{})
		if err != nil {
			t.Fatal(err)
		}
		info, err := client.Enqueue(task, asynq.Retention(time.Hour))
		if err != nil {
			t.Fatal(err)
		}
		waitFor(t, "the message's task completed", func() bool {
			got, err := insp.GetTaskInfo(info.Queue, info.ID)
			return err == nil && got.State == asynq.TaskStateCompleted
		})
	}
	send(0) // loads the scripts
	counted.take()
	send(1)
	trips, cmds := counted.take()
	if n := len(sim.Messages()); n != 2 {
		t.Fatalf("the simulator received %d messages, want 2", n)
	}
	t.Logf("%d round trips, %d commands: %v", trips, len(cmds), cmds)
	if trips != 2 {
		t.Fatalf("%d round trips to Redis for one message, want 2 (one before the request, one after): %v", trips, cmds)
	}
	// The records the round trips wrote: the ledger's SID, the delivery
	// record, the log's "sending" and "sent".
	var events []string
	if _, err := comms.Read(bg, commlog.Filter{To: "+14155550001"}, func(e commlog.Entry) error {
		events = append(events, e.Event)
		return nil
	}); err != nil {
		t.Fatal(err)
	}
	if fmt.Sprint(events) != fmt.Sprint([]string{commlog.Sending, commlog.Sent}) {
		t.Fatalf("log entries %v, want sending, sent", events)
	}
	sid := sim.Messages()[1].Sid
	if rec, err := delivery.NewStore(rdb).Get(bg, sid); err != nil || rec.TaskID == "" {
		t.Fatalf("delivery record of %s: %+v, %v", sid, rec, err)
	}
}

// TestOptOutWhileWaitingForTheSlotIsHonoured: a message whose slot under the
// sender's limit is seconds away waits for it in its handler (MaxSleep
// allows it); a STOP recorded during that wait is honoured, because the
// last checks are made again just before the slot, not only in the round
// trip that took the slot.
func TestOptOutWhileWaitingForTheSlotIsHonoured(t *testing.T) {
	t.Parallel()
	h := newHarness(t, harnessOpt{limits: &ratelimit.Config{Sender: ratelimit.Rate{N: 1, Per: 10 * time.Second, Burst: 1},
		DefaultFrom: "+15005550006", MaxSleep: 15 * time.Second}})
	first := h.enqueue(t, tasks.SMSPayload{To: "+14155550160", Body: "one"})
	h.waitFinal(t, first)
	const to = "+14155550161"
	second := h.enqueue(t, tasks.SMSPayload{To: to, Body: "two"})
	waitFor(t, "the second message's handler to wait for its slot", func() bool {
		info, err := tasks.Find(h.insp, second)
		return err == nil && info.State == asynq.TaskStateActive
	})
	if _, err := h.optouts.Add(bg, optout.SMS, to, optout.SourceCLI); err != nil {
		t.Fatal(err)
	}
	info := h.waitFinal(t, second)
	if info.State != asynq.TaskStateCompleted || !strings.Contains(string(info.Result), "skipped") {
		t.Fatalf("second message: %s, result %s, last error %q; want completed as skipped", info.State, info.Result, info.LastErr)
	}
	if got := h.messagesTo(to); len(got) != 0 {
		t.Fatalf("%d messages sent to a number that opted out while its message waited", len(got))
	}
}
