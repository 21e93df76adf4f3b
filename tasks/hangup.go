package tasks

import (
	"context"
	"errors"
	"fmt"
	"time"

	"github.com/sbagenthub/twilio-worker/calls"
	"github.com/sbagenthub/twilio-worker/twilioapi"
)

// CallUpdater fetches and changes live Twilio calls. *twilioapi.Client is
// one.
type CallUpdater interface {
	FetchCall(ctx context.Context, sid string) (*twilioapi.Call, error)
	UpdateCall(ctx context.Context, sid string, u twilioapi.CallUpdate) (*twilioapi.Call, error)
}

var _ CallUpdater = (*twilioapi.Client)(nil)

// ErrNoProvider is Hangup's error for a call whose provider is not
// configured on this worker.
var ErrNoProvider = errors.New("this worker does not reach that call's provider")

// Hangup ends a call (the hangupCall action) and returns its state after.
// A Twilio call is canceled while it is queued or ringing and completed
// once answered; a call an assistant conducts is ended through VAPI's live
// call control (or DELETE). A call that has ended already is left as it is.
func Hangup(ctx context.Context, records *calls.Store, tw CallUpdater, agents AgentCaller, id string) (CallState, error) {
	kind, err := calls.CheckID(id)
	if err != nil {
		return CallState{}, &FieldError{Field: "callSid", Problem: err.Error()}
	}
	now := time.Now()
	if kind == calls.KindVAPI {
		if agents == nil {
			return CallState{}, ErrNoProvider
		}
		control := ""
		if rec, err := records.Get(ctx, id); err == nil {
			if rec.Terminal() {
				return StateOf(rec), nil
			}
			control = rec.ControlURL
		}
		if err := agents.EndCall(ctx, id, control); err != nil {
			return CallState{}, fmt.Errorf("end call: %w", err)
		}
		return LookupAgentCall(ctx, records, agents, id)
	}
	if tw == nil {
		return CallState{}, ErrNoProvider
	}
	call, err := tw.FetchCall(ctx, id)
	if err != nil {
		return CallState{}, err
	}
	if !twilioapi.Terminal(call.Status) {
		status := "completed"
		if call.Status == "queued" || call.Status == "ringing" || call.Status == "initiated" {
			status = "canceled"
		}
		if call, err = tw.UpdateCall(ctx, id, twilioapi.CallUpdate{Status: status}); err != nil {
			return CallState{}, err
		}
	}
	if _, err := records.Get(ctx, id); errors.Is(err, calls.ErrNotFound) {
		_ = records.Create(ctx, calls.Record{SID: call.SID, To: call.To, From: call.From, Status: "queued", CreatedAt: call.DateCreated})
	}
	rec, _, err := records.Apply(ctx, id, calls.Update{Status: call.Status, At: now, Source: "hangup",
		Duration: call.Duration, StartTime: call.StartTime, EndTime: call.EndTime})
	if err != nil {
		return CallState{}, err
	}
	return StateOf(rec), nil
}
