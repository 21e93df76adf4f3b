package tasks_test

import (
	"errors"
	"testing"
	"time"

	"github.com/sbagenthub/twilio-worker/tasks"
	"github.com/sbagenthub/twilio-worker/twiliosim"
)

// An answered call is completed (canceled would leave it up, as on
// Twilio); an ended one is left as it is; a bad id names callSid.
func TestHangupAnsweredCall(t *testing.T) {
	t.Parallel()
	h := newHarness(t, harnessOpt{sim: twiliosim.Config{CallRing: 50 * time.Millisecond, CallDuration: time.Hour}})
	_, sid := h.call(t, tasks.CallPayload{To: "+14155550177", Say: "hi"})
	deadline := time.Now().Add(10 * time.Second)
	for {
		if c, _ := h.sim.Call(sid); c.Status == "in-progress" {
			break
		}
		if time.Now().After(deadline) {
			t.Fatal("the call was never answered")
		}
		time.Sleep(10 * time.Millisecond)
	}
	st, err := tasks.Hangup(bg, h.records, h.tw, nil, sid)
	if err != nil || st.Status != "completed" || st.Duration < 1 {
		t.Fatalf("Hangup = %+v, %v; want completed with a duration", st, err)
	}
	if c, _ := h.sim.Call(sid); c.Status != "completed" || c.Updates != 1 {
		t.Fatalf("simulator's call %+v", c)
	}
	if st, err := tasks.Hangup(bg, h.records, h.tw, nil, sid); err != nil || st.Status != "completed" {
		t.Fatalf("second Hangup = %+v, %v", st, err)
	}
	if c, _ := h.sim.Call(sid); c.Updates != 1 {
		t.Fatalf("an ended call was updated again: %+v", c)
	}
	var fe *tasks.FieldError
	if _, err := tasks.Hangup(bg, h.records, h.tw, nil, "CA123"); !errors.As(err, &fe) || fe.Field != "callSid" {
		t.Fatalf("bad id: %v", err)
	}
	if _, err := tasks.Hangup(bg, h.records, h.tw, nil, "3f1c2a9e-8b7d-4e6f-9a0b-1c2d3e4f5a6b"); !errors.Is(err, tasks.ErrNoProvider) {
		t.Fatalf("VAPI call without VAPI: %v", err)
	}
}
