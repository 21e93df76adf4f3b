package tasks_test

import (
	"context"
	"encoding/json"
	"errors"
	"fmt"
	"strings"
	"sync/atomic"
	"testing"

	"github.com/hibiken/asynq"
	"github.com/redis/go-redis/v9"

	"github.com/sbagenthub/twilio-worker/delivery"
	"github.com/sbagenthub/twilio-worker/fraud"
	"github.com/sbagenthub/twilio-worker/internal/redistest"
	"github.com/sbagenthub/twilio-worker/optout"
	"github.com/sbagenthub/twilio-worker/ratelimit"
	"github.com/sbagenthub/twilio-worker/tasks"
	"github.com/sbagenthub/twilio-worker/twilioapi"
)

// roundTrips counts what a client sends to Redis: each command alone and
// each pipeline is one round trip (a new connection's handshake aside).
type roundTrips struct {
	n   atomic.Int64
	log []string
}

func (r *roundTrips) DialHook(next redis.DialHook) redis.DialHook { return next }
func (r *roundTrips) ProcessHook(next redis.ProcessHook) redis.ProcessHook {
	return func(ctx context.Context, cmd redis.Cmder) error {
		if n := cmd.Name(); n != "hello" && n != "client" { // a new connection's handshake
			r.n.Add(1)
			r.log = append(r.log, n)
		}
		return next(ctx, cmd)
	}
}
func (r *roundTrips) ProcessPipelineHook(next redis.ProcessPipelineHook) redis.ProcessPipelineHook {
	return func(ctx context.Context, cmds []redis.Cmder) error { r.n.Add(1); return next(ctx, cmds) }
}

func smsTask(t *testing.T, p tasks.SMSPayload) *asynq.Task {
	t.Helper()
	b, err := json.Marshal(p)
	if err != nil {
		t.Fatal(err)
	}
	return asynq.NewTask(tasks.TypeSendSMS, b)
}

// TestGuardCostsNoRoundTrip: the guard's velocity check rides in the
// opt-out check's pipeline, so a handler run with the guard makes as many
// Redis round trips as one without it (one, for this handler: no ledger,
// limiter or log).
func TestGuardCostsNoRoundTrip(t *testing.T) {
	ctx := context.Background()
	rdb := redistest.Start(t).Client(t)
	var rt roundTrips
	rdb.AddHook(&rt)
	store := optout.NewStore(rdb)
	run := func(h *tasks.SMSHandler, to string) int64 {
		t.Helper()
		rt.log = nil
		before := rt.n.Load()
		if err := h.ProcessTask(ctx, smsTask(t, tasks.SMSPayload{To: to, Body: "hi", Source: tasks.SourceAgent})); err != nil {
			t.Fatalf("ProcessTask(%s): %v", to, err)
		}
		return rt.n.Load() - before
	}
	plain := &tasks.SMSHandler{Messenger: &fakeMessenger{}, OptOuts: store}
	guarded := &tasks.SMSHandler{Messenger: &fakeMessenger{}, OptOuts: store, Guard: fraud.New(rdb, fraud.Config{})}
	run(guarded, "+14155550100") // the first run loads the script (NOSCRIPT, then EVAL)
	run(plain, "+14155550103")   // and connections are made
	if err := rdb.ConfigResetStat(ctx).Err(); err != nil {
		t.Fatal(err)
	}
	without := run(plain, "+14155550101")
	plainLog := rt.log
	with := run(guarded, "+14155550102")
	if with != without || with != 1 {
		t.Fatalf("round trips: %d with the guard, %d without; want 1 and 1 (%v, %v)", with, without, rt.log, plainLog)
	}
	// And the guard did run: the prefix's rate state is there.
	if n, err := rdb.Exists(ctx, fraud.RateKey("+1415555")).Result(); err != nil || n != 1 {
		t.Fatalf("rate key: %d %v", n, err)
	}
	// Redis's own count agrees: since the reset, one EVALSHA (the guarded
	// run's) and no EVAL: the script is not sent again.
	info, err := rdb.Info(ctx, "commandstats").Result()
	if err != nil {
		t.Fatal(err)
	}
	for _, want := range []string{"cmdstat_evalsha:calls=1,"} {
		if !strings.Contains(info, want) {
			t.Fatalf("commandstats lacks %s:\n%s", want, info)
		}
	}
	if strings.Contains(info, "cmdstat_eval:") {
		t.Fatalf("the whole script was sent again:\n%s", info)
	}
}

func TestHandlerFraudGuard(t *testing.T) {
	ctx := context.Background()
	rdb := redistest.Start(t).Client(t)
	r, _ := ratelimit.ParseRate("2/h")
	g := fraud.New(rdb, fraud.Config{PrefixRate: r})
	msgr := &fakeMessenger{}
	store := optout.NewStore(rdb)
	h := &tasks.SMSHandler{Messenger: msgr, OptOuts: store, Guard: g}
	if _, err := store.Add(ctx, optout.SMS, "+14155550199", optout.SourceCLI); err != nil {
		t.Fatal(err)
	}
	var errs []string
	for i := range 4 {
		err := h.ProcessTask(ctx, smsTask(t, tasks.SMSPayload{To: fmt.Sprintf("+141555501%02d", i), Body: "code 1234", Source: tasks.SourceAgent, Class: tasks.ClassAlert}))
		if err != nil {
			if !errors.Is(err, asynq.SkipRetry) {
				t.Fatalf("message %d: %v is not archived", i, err)
			}
			errs = append(errs, err.Error())
		}
	}
	if len(msgr.sent) != 2 || len(errs) != 2 || !strings.HasPrefix(errs[0], "fraud guard: prefix +1415555 blocked until ") {
		t.Fatalf("sent %d, archived %q", len(msgr.sent), errs)
	}
	// An opted-out recipient is skipped (completes), not archived, even in a blocked prefix.
	if err := h.ProcessTask(ctx, smsTask(t, tasks.SMSPayload{To: "+14155550199", Body: "hi", Source: tasks.SourceAgent})); err != nil {
		t.Fatalf("opted-out recipient: %v", err)
	}
	// The static rules are checked again in the handler.
	err := h.ProcessTask(ctx, smsTask(t, tasks.SMSPayload{To: "+2348031234567", Body: "hi"}))
	if !errors.Is(err, asynq.SkipRetry) || !strings.Contains(err.Error(), "fraud guard: to: country NG is blocked") {
		t.Fatalf("NG: %v", err)
	}
	if len(msgr.sent) != 2 {
		t.Fatalf("sent %d, want 2", len(msgr.sent))
	}
}

// refusingMessenger refuses every send with a Twilio code.
type refusingMessenger struct{ code int }

func (m refusingMessenger) SendSMS(context.Context, twilioapi.SendParams) (*twilioapi.Message, error) {
	return nil, &twilioapi.Error{Op: "send sms", Class: twilioapi.ClassifyCode(400, m.code), Status: 400, Code: m.code, Message: "refused"}
}
func (refusingMessenger) ListMessages(context.Context, twilioapi.ListParams) ([]twilioapi.Message, error) {
	return nil, nil
}

func TestTwilioFraudCodesArchiveAndCount(t *testing.T) {
	ctx := context.Background()
	rdb := redistest.Start(t).Client(t)
	r, _ := ratelimit.ParseRate("2/h")
	g := fraud.New(rdb, fraud.Config{PrefixRate: r})
	for _, code := range tasks.FraudCodes {
		h := &tasks.SMSHandler{Messenger: refusingMessenger{code}, OptOuts: optout.NewStore(rdb), Guard: g}
		err := h.ProcessTask(ctx, smsTask(t, tasks.SMSPayload{To: "+15005550003", Body: "hi"}))
		if !errors.Is(err, asynq.SkipRetry) || !strings.HasPrefix(err.Error(), "fraud guard: ") || !strings.Contains(err.Error(), fmt.Sprint(code)) {
			t.Fatalf("%d: %v", code, err)
		}
	}
	// Three strikes at 2/h: the prefix is blocked, and the next message to
	// it is not sent.
	err := (&tasks.SMSHandler{Messenger: refusingMessenger{30450}, OptOuts: optout.NewStore(rdb), Guard: g}).
		ProcessTask(ctx, smsTask(t, tasks.SMSPayload{To: "+15005550006", Body: "hi"}))
	if err == nil || !strings.HasPrefix(err.Error(), "fraud guard: prefix +1500555 blocked until") {
		t.Fatalf("after three strikes: %v", err)
	}
	blocks, err := g.Blocks(ctx)
	if err != nil || len(blocks) != 1 || blocks[0].Prefix != "+1500555" || blocks[0].Kind != fraud.ReasonTwilio ||
		!strings.Contains(blocks[0].Reason, "30649") {
		t.Fatalf("Blocks = %+v, %v", blocks, err)
	}
}

// TestCarrierFraudVerdictCounts: a message that Twilio accepted and then
// failed with 30450 (SMS pumping protection) counts toward its prefix.
func TestCarrierFraudVerdictCounts(t *testing.T) {
	ctx := context.Background()
	rdb := redistest.Start(t).Client(t)
	r, _ := ratelimit.ParseRate("1/h")
	g := fraud.New(rdb, fraud.Config{PrefixRate: r})
	tr := &tasks.Tracker{Guard: g}
	for i := range 2 {
		rec := delivery.Record{SID: fmt.Sprintf("SM%d", i), To: fmt.Sprintf("+4474001234%02d", i), Status: "failed", ErrorCode: 30450}
		if err := tr.Settle(ctx, rec); err != nil {
			t.Fatal(err)
		}
	}
	blocks, err := g.Blocks(ctx)
	if err != nil || len(blocks) != 1 || blocks[0].Prefix != "+44740012" || blocks[0].Kind != fraud.ReasonTwilio {
		t.Fatalf("Blocks = %+v, %v", blocks, err)
	}
}

// countingCaller places every call it is asked to.
type countingCaller struct{ n atomic.Int64 }

func (c *countingCaller) CreateCall(_ context.Context, p twilioapi.CallParams) (*twilioapi.Call, error) {
	c.n.Add(1)
	return &twilioapi.Call{SID: fmt.Sprintf("CA%032d", c.n.Load()), To: p.To, Status: "queued"}, nil
}
func (c *countingCaller) FetchCall(context.Context, string) (*twilioapi.Call, error) {
	return nil, errors.New("not kept")
}
func (c *countingCaller) ListCalls(context.Context, twilioapi.CallListParams) ([]twilioapi.Call, error) {
	return nil, nil
}

// TestCallHandlerFraudGuard: an agent's calls are metered per prefix like
// its messages, and a premium-rate number is refused in the handler too.
func TestCallHandlerFraudGuard(t *testing.T) {
	ctx := context.Background()
	rdb := redistest.Start(t).Client(t)
	r, _ := ratelimit.ParseRate("2/h")
	caller := &countingCaller{}
	h := &tasks.CallHandler{Caller: caller, OptOuts: optout.NewStore(rdb), Guard: fraud.New(rdb, fraud.Config{PrefixRate: r})}
	callTask := func(p tasks.CallPayload) error {
		b, _ := json.Marshal(p)
		return h.ProcessTask(ctx, asynq.NewTask(tasks.TypeMakeCall, b))
	}
	var errs []string
	for i := range 3 {
		if err := callTask(tasks.CallPayload{To: fmt.Sprintf("+141555502%02d", i), Say: "hello", Source: tasks.SourceAgent}); err != nil {
			errs = append(errs, err.Error())
		}
	}
	if caller.n.Load() != 2 || len(errs) != 1 || !strings.HasPrefix(errs[0], "fraud guard: prefix +1415555 blocked until ") {
		t.Fatalf("placed %d, refused %q", caller.n.Load(), errs)
	}
	err := callTask(tasks.CallPayload{To: "+19002345678", Say: "hello", Source: tasks.SourceOperator})
	if !errors.Is(err, asynq.SkipRetry) || !strings.Contains(err.Error(), "fraud guard: to: premium-rate number in US refused") {
		t.Fatalf("premium-rate call: %v", err)
	}
	if caller.n.Load() != 2 {
		t.Fatalf("placed %d calls, want 2", caller.n.Load())
	}
}
