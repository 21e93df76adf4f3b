package tasks_test

import (
	"context"
	"errors"
	"strings"
	"sync"
	"testing"

	"github.com/hibiken/asynq"

	"github.com/sbagenthub/twilio-worker/calls"
	"github.com/sbagenthub/twilio-worker/internal/redistest"
	"github.com/sbagenthub/twilio-worker/optout"
	"github.com/sbagenthub/twilio-worker/tasks"
	"github.com/sbagenthub/twilio-worker/vapi"
)

// fakeAgents is a hand-written AgentCaller.
type fakeAgents struct {
	mu      sync.Mutex
	creates int
	refuse  bool
}

func (f *fakeAgents) CreateCall(_ context.Context, p vapi.CreateCall) (*vapi.Call, error) {
	f.mu.Lock()
	defer f.mu.Unlock()
	f.creates++
	if f.refuse {
		return nil, &vapi.Error{Op: "create call", Status: 400, Message: "Couldn't Get Assistant."}
	}
	return &vapi.Call{ID: "3f1c2a9e-8b7d-4e6f-9a0b-1c2d3e4f5a6b", Status: "queued", AssistantID: p.AssistantID,
		PhoneCallProviderID: "CA" + strings.Repeat("1", 32), Customer: &p.Customer, Monitor: &vapi.Monitor{ControlURL: "http://control"}}, nil
}
func (f *fakeAgents) GetCall(context.Context, string) (*vapi.Call, error) {
	return nil, errors.New("unused")
}
func (f *fakeAgents) ListCalls(context.Context, vapi.ListParams) ([]vapi.Call, error) {
	return nil, nil
}
func (f *fakeAgents) EndCall(context.Context, string, string) error { return nil }

func TestAgentCallHandler(t *testing.T) {
	t.Parallel()
	rdb := redistest.Start(t).Client(t)
	optouts := optout.NewStore(rdb)
	records := calls.NewStore(rdb)
	run := func(h *tasks.CallHandler, to string) error {
		task, err := tasks.NewMakeCallTask(tasks.CallPayload{To: to, AssistantID: "asst-1"}, tasks.Rules{})
		if err != nil {
			t.Fatal(err)
		}
		return h.ProcessTask(bg, task)
	}

	fa := &fakeAgents{}
	h := &tasks.CallHandler{OptOuts: optouts, Records: records, Agents: fa}
	if err := run(h, "+14155550160"); err != nil {
		t.Fatal(err)
	}
	rec, err := records.Get(bg, "3f1c2a9e-8b7d-4e6f-9a0b-1c2d3e4f5a6b")
	if err != nil || rec.Provider != calls.ProviderVAPI || rec.Linked != "CA"+strings.Repeat("1", 32) || rec.ControlURL != "http://control" || rec.AssistantID != "asst-1" {
		t.Fatalf("record %+v, %v", rec, err)
	}

	if _, err := optouts.Add(bg, optout.Voice, "+14155550161", optout.SourceAPI); err != nil {
		t.Fatal(err)
	}
	if err := run(h, "+14155550161"); err != nil || fa.creates != 1 {
		t.Fatalf("do-not-call: %v, %d creates; want skipped without a create", err, fa.creates)
	}

	fa.refuse = true
	if err := run(h, "+14155550162"); !errors.Is(err, asynq.SkipRetry) || !strings.Contains(err.Error(), "Couldn't Get Assistant") {
		t.Fatalf("refused: %v; want archived with VAPI's reason", err)
	}
	if err := run(&tasks.CallHandler{OptOuts: optouts, Records: records}, "+14155550163"); !errors.Is(err, asynq.SkipRetry) || !strings.Contains(err.Error(), "assistantId") {
		t.Fatalf("no VAPI: %v", err)
	}
}
