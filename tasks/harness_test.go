package tasks_test

import (
	"context"
	"net/http/httptest"
	"sync"
	"sync/atomic"
	"testing"
	"time"

	"github.com/hibiken/asynq"
	"github.com/redis/go-redis/v9"

	"github.com/sbagenthub/twilio-worker/calls"
	"github.com/sbagenthub/twilio-worker/delivery"
	"github.com/sbagenthub/twilio-worker/internal/redistest"
	"github.com/sbagenthub/twilio-worker/ledger"
	"github.com/sbagenthub/twilio-worker/metrics"
	"github.com/sbagenthub/twilio-worker/optout"
	"github.com/sbagenthub/twilio-worker/pool"
	"github.com/sbagenthub/twilio-worker/producer"
	"github.com/sbagenthub/twilio-worker/ratelimit"
	"github.com/sbagenthub/twilio-worker/tasks"
	"github.com/sbagenthub/twilio-worker/twilioapi"
	"github.com/sbagenthub/twilio-worker/twiliosim"
)

// harness is a worker in miniature: a private redis-server, the simulator
// over real HTTP, the real handler on a real asynq server.
type harness struct {
	rdb        *redis.Client
	sim        *twiliosim.Server
	client     *asynq.Client
	insp       *asynq.Inspector
	optouts    *optout.Store
	records    *calls.Store
	deliveries *delivery.Store
	tw         *twilioapi.Client
	limiter    *countingLimiter
	pool       *pool.Pool
	ledger     *ledger.Ledger
	metrics    *metrics.Metrics
	requests   atomic.Int64 // requests to Twilio, by op "send sms"
	mu         sync.Mutex
	outcomes   []string
}

type harnessOpt struct {
	sim       twiliosim.Config
	twilio    func(*twilioapi.Config)
	polling   tasks.Polling
	marketing tasks.Marketing
	limits    *ratelimit.Config // when set, the handler has a Limiter (h.limiter)
	pool      []string          // with limits: the handler's sender pool (h.pool)
	// scheduleMin is the handler's ScheduleMin (Twilio-side scheduling).
	scheduleMin time.Duration
}

func newHarness(t *testing.T, o harnessOpt) *harness {
	t.Helper()
	srv := redistest.Start(t)
	h := &harness{rdb: srv.Client(t)}
	if o.sim.DeliveryDelay == 0 {
		o.sim.DeliveryDelay = 5 * time.Millisecond
	}
	if o.sim.CallRing == 0 {
		o.sim.CallRing = 200 * time.Millisecond
	}
	if o.sim.CallDuration == 0 {
		o.sim.CallDuration = 1100 * time.Millisecond
	}
	h.sim = twiliosim.New(o.sim)
	hs := httptest.NewServer(h.sim)
	t.Cleanup(func() { hs.Close(); h.sim.Close() })

	cfg := twilioapi.Config{AccountSID: h.sim.AccountSID(), AuthToken: twilioapi.Secret(h.sim.AuthToken()),
		PhoneNumber: "+15005550006", BaseURL: hs.URL, Timeout: 5 * time.Second,
		Observe: func(op, outcome string, _ time.Duration) {
			if op == "send sms" {
				h.requests.Add(1)
			}
			h.mu.Lock()
			h.outcomes = append(h.outcomes, outcome)
			h.mu.Unlock()
		}}
	if o.twilio != nil {
		o.twilio(&cfg)
	}
	tw, err := twilioapi.New(cfg)
	if err != nil {
		t.Fatal(err)
	}
	h.tw = tw
	h.optouts = optout.NewStore(h.rdb)
	mux := asynq.NewServeMux()
	led := ledger.New(h.rdb)
	h.client = asynq.NewClientFromRedisClient(h.rdb)
	h.deliveries = delivery.NewStore(h.rdb)
	tracker := &tasks.Tracker{Store: h.deliveries, Fetcher: tw, FollowUps: &producer.FollowUps{Client: h.client},
		Polling: tasks.Polling{First: time.Second, Max: time.Second}, RedeliverMax: 2, RedeliverBackoff: time.Second}
	mux.Handle(tasks.TypeTrackSMS, tracker)
	h.metrics = metrics.New(nil)
	handler := &tasks.SMSHandler{Messenger: tw, OptOuts: h.optouts, Ledger: led, Tracker: tracker, Marketing: o.marketing, Metrics: h.metrics}
	handler.Redis = h.rdb // the lean path, as the worker runs it
	handler.ScheduleMin = o.scheduleMin
	if o.limits != nil {
		h.limiter = &countingLimiter{Limiter: ratelimit.New(h.rdb, *o.limits)}
		handler.Limiter = h.limiter
		if len(o.pool) > 0 {
			h.pool = pool.New(h.rdb, h.limiter.Limiter, pool.Config{Numbers: o.pool})
			handler.Pool, handler.PoolBooker = h.pool, pool.WithPool(h.limiter.Limiter, h.pool)
		}
	}
	h.ledger = led
	mux.Handle(tasks.TypeSendSMS, handler)
	h.records = calls.NewStore(h.rdb)
	if o.polling == (tasks.Polling{}) {
		o.polling = tasks.Polling{First: time.Second, Max: 2 * time.Second}
	}
	callHandler := &tasks.CallHandler{Caller: tw, OptOuts: h.optouts, Records: h.records, Ledger: led, FollowUps: &producer.FollowUps{Client: h.client}, Polling: o.polling}
	if h.limiter != nil {
		callHandler.Limiter = h.limiter
	}
	mux.Handle(tasks.TypeMakeCall, callHandler)
	mux.Handle(tasks.TypePollCall, &tasks.PollHandler{Caller: tw, Records: h.records, Polling: o.polling})
	server := asynq.NewServerFromRedisClient(h.rdb, asynq.Config{
		Concurrency: 8, Queues: tasks.Queues,
		TaskCheckInterval: 10 * time.Millisecond, DelayedTaskCheckInterval: 50 * time.Millisecond,
		RetryDelayFunc: tasks.NewRetryDelay(50*time.Millisecond, 200*time.Millisecond),
		IsFailure:      tasks.IsFailure,
		LogLevel:       asynq.ErrorLevel,
	})
	if err := server.Start(mux); err != nil {
		t.Fatal(err)
	}
	t.Cleanup(server.Shutdown)
	h.insp = asynq.NewInspectorFromRedisClient(h.rdb)
	return h
}

func (h *harness) enqueue(t *testing.T, p tasks.SMSPayload, opts ...asynq.Option) string {
	t.Helper()
	task, err := tasks.NewSendSMSTask(p, tasks.Rules{}, opts...)
	if err != nil {
		t.Fatalf("NewSendSMSTask: %v", err)
	}
	info, err := h.client.Enqueue(task)
	if err != nil {
		t.Fatal(err)
	}
	return info.ID
}

// waitState waits until the task reaches one of the final states and returns it.
func (h *harness) waitFinal(t *testing.T, id string) *asynq.TaskInfo {
	t.Helper()
	deadline := time.Now().Add(30 * time.Second)
	for {
		info, err := tasks.Find(h.insp, id)
		if err != nil {
			t.Fatal(err)
		}
		if info.State == asynq.TaskStateCompleted || info.State == asynq.TaskStateArchived {
			return info
		}
		if time.Now().After(deadline) {
			t.Fatalf("task %s still %s (retried %d, last error %q)", id, info.State, info.Retried, info.LastErr)
		}
		time.Sleep(10 * time.Millisecond)
	}
}

// waitFor polls cond until it holds (30 s: a backstop, not a bound).
func waitFor(t *testing.T, what string, cond func() bool) {
	t.Helper()
	deadline := time.Now().Add(30 * time.Second)
	for !cond() {
		if time.Now().After(deadline) {
			t.Fatalf("timed out waiting for %s", what)
		}
		time.Sleep(10 * time.Millisecond)
	}
}

func (h *harness) messagesTo(to string) []twiliosim.Message {
	var out []twiliosim.Message
	for _, m := range h.sim.Messages() {
		if m.To == to {
			out = append(out, m)
		}
	}
	return out
}

var bg = context.Background()

func (h *harness) twilio(*testing.T) *twilioapi.Client { return h.tw }
