package tasks_test

import (
	"context"
	"encoding/json"
	"errors"
	"testing"
	"time"

	"github.com/hibiken/asynq"

	"github.com/sbagenthub/twilio-worker/calls"
	"github.com/sbagenthub/twilio-worker/delivery"
	"github.com/sbagenthub/twilio-worker/internal/redistest"
	"github.com/sbagenthub/twilio-worker/ledger"
	"github.com/sbagenthub/twilio-worker/optout"
	"github.com/sbagenthub/twilio-worker/tasks"
	"github.com/sbagenthub/twilio-worker/twilioapi"
)

// twilioStub answers every request as Twilio would for a healthy account.
type twilioStub struct{}

func (twilioStub) SendSMS(_ context.Context, p twilioapi.SendParams) (*twilioapi.Message, error) {
	return &twilioapi.Message{SID: "SMfuzz", To: p.To, From: p.From, Body: p.Body, Status: "queued", NumSegments: 1, DateCreated: time.Now()}, nil
}
func (twilioStub) ListMessages(context.Context, twilioapi.ListParams) ([]twilioapi.Message, error) {
	return nil, nil
}
func (twilioStub) FetchMessage(_ context.Context, sid string) (*twilioapi.Message, error) {
	return &twilioapi.Message{SID: sid, Status: "delivered"}, nil
}
func (twilioStub) CreateCall(_ context.Context, p twilioapi.CallParams) (*twilioapi.Call, error) {
	return &twilioapi.Call{SID: "CAfuzz", To: p.To, From: p.From, Status: "queued", DateCreated: time.Now()}, nil
}
func (twilioStub) FetchCall(_ context.Context, sid string) (*twilioapi.Call, error) {
	return &twilioapi.Call{SID: sid, Status: "completed", Duration: 3}, nil
}
func (twilioStub) ListCalls(context.Context, twilioapi.CallListParams) ([]twilioapi.Call, error) {
	return nil, nil
}

type noOptOuts struct{}

func (noOptOuts) OptedOut(context.Context, optout.Channel, string) (bool, error) { return false, nil }
func (noOptOuts) Add(context.Context, optout.Channel, string, optout.Source) (bool, error) {
	return true, nil
}

type dropFollowUps struct{}

func (dropFollowUps) FollowUp(context.Context, *asynq.Task) error { return nil }

// payloadHandlers are the four task handlers on fakes and a test Redis.
func payloadHandlers(f *testing.F) map[string]asynq.Handler {
	f.Helper()
	rdb := redistest.Start(f).Client(f)
	records := calls.NewStore(rdb)
	tracker := &tasks.Tracker{Store: delivery.NewStore(rdb), Fetcher: twilioStub{}, FollowUps: dropFollowUps{}, RedeliverMax: 3}
	return map[string]asynq.Handler{
		tasks.TypeSendSMS: &tasks.SMSHandler{Messenger: twilioStub{}, OptOuts: noOptOuts{}, Ledger: ledger.New(rdb), Tracker: tracker},
		tasks.TypeMakeCall: &tasks.CallHandler{Caller: twilioStub{}, OptOuts: noOptOuts{}, Records: records,
			Ledger: ledger.New(rdb), FollowUps: dropFollowUps{}},
		tasks.TypePollCall: &tasks.PollHandler{Caller: twilioStub{}, Records: records},
		tasks.TypeTrackSMS: tracker,
	}
}

// checkPayload runs h on payload: it must not panic, and a payload that
// does not decode as want, or that valid rejects, must be archived
// (an error wrapping asynq.SkipRetry).
func checkPayload[P any](t *testing.T, h asynq.Handler, typ string, payload []byte, valid func(P) error) {
	t.Helper()
	ctx, cancel := context.WithTimeout(context.Background(), 5*time.Second)
	defer cancel()
	err := h.ProcessTask(ctx, asynq.NewTask(typ, payload))
	var p P
	bad := json.Unmarshal(payload, &p)
	if bad == nil {
		bad = valid(p)
	}
	if bad != nil && !errors.Is(err, asynq.SkipRetry) {
		t.Fatalf("%s payload %q is invalid (%v) but the handler returned %v, not an archive", typ, payload, bad, err)
	}
}

var payloadSeeds = []string{
	``, `null`, `{}`, `[]`, `"x"`, `{"to":1}`, `{`, "\xff",
	`{"to":"+14155551234","body":"hi"}`,
	`{"to":"+14155551234","body":"hi","class":"marketing","validFor":"10m"}`,
	`{"to":"+14155551234","body":"hi","validFor":"-1s"}`,
	`{"to":"+14155551234","body":"hi","expiresAt":"2001-01-01T00:00:00Z"}`,
	`{"to":"+14155551234","body":"hi","redelivery":-3}`,
	`{"to":"+14155551234","body":"hi","from":"ACME"}`,
	`{"to":"+14155551234","say":"hello"}`,
	`{"to":"+14155551234","url":"javascript:alert(1)"}`,
	`{"to":"+14155551234","twiml":"<Response/>","url":"https://x.test/t"}`,
	`{"callSid":"CA1"}`, `{"callSid":""}`, `{"messageSid":"SM1"}`, `{"messageSid":123}`,
}

func FuzzSMSSendPayload(f *testing.F) {
	for _, s := range payloadSeeds {
		f.Add([]byte(s))
	}
	h := payloadHandlers(f)[tasks.TypeSendSMS]
	f.Fuzz(func(t *testing.T, b []byte) {
		checkPayload(t, h, tasks.TypeSendSMS, b, func(p tasks.SMSPayload) error { _, err := p.Normalize(tasks.Rules{}); return err })
	})
}

func FuzzCallMakePayload(f *testing.F) {
	for _, s := range payloadSeeds {
		f.Add([]byte(s))
	}
	h := payloadHandlers(f)[tasks.TypeMakeCall]
	f.Fuzz(func(t *testing.T, b []byte) {
		checkPayload(t, h, tasks.TypeMakeCall, b, func(p tasks.CallPayload) error { _, err := p.Normalize(tasks.Rules{}); return err })
	})
}

func FuzzCallPollPayload(f *testing.F) {
	for _, s := range payloadSeeds {
		f.Add([]byte(s))
	}
	h := payloadHandlers(f)[tasks.TypePollCall]
	f.Fuzz(func(t *testing.T, b []byte) {
		checkPayload(t, h, tasks.TypePollCall, b, func(p tasks.PollPayload) error {
			if p.CallSID == "" {
				return errors.New("no callSid")
			}
			return nil
		})
	})
}

func FuzzSMSTrackPayload(f *testing.F) {
	for _, s := range payloadSeeds {
		f.Add([]byte(s))
	}
	h := payloadHandlers(f)[tasks.TypeTrackSMS]
	f.Fuzz(func(t *testing.T, b []byte) {
		checkPayload(t, h, tasks.TypeTrackSMS, b, func(p tasks.TrackPayload) error {
			if p.MessageSID == "" {
				return errors.New("no messageSid")
			}
			return nil
		})
	})
}

// A redelivery count below zero would reach Tracker.Settle as a negative
// shift (a panic) after a transient carrier failure: it is refused as
// invalid when the task runs.
func TestNegativeRedeliveryRefused(t *testing.T) {
	t.Parallel()
	if _, err := tasks.NewSendSMSTask(tasks.SMSPayload{To: "+14155551234", Body: "hi", Redelivery: -3}, tasks.Rules{}); err == nil {
		t.Error("NewSendSMSTask accepted redelivery -3")
	}
	h := &tasks.SMSHandler{Messenger: twilioStub{}, OptOuts: noOptOuts{}}
	err := h.ProcessTask(context.Background(), asynq.NewTask(tasks.TypeSendSMS, []byte(`{"to":"+14155551234","body":"hi","redelivery":-3}`)))
	if !errors.Is(err, asynq.SkipRetry) {
		t.Fatalf("handler returned %v; want the task archived as invalid", err)
	}
}
