package tasks

import (
	"context"
	"errors"
	"fmt"
	"log/slog"
	"time"

	"github.com/hibiken/asynq"

	"github.com/sbagenthub/twilio-worker/calls"
	"github.com/sbagenthub/twilio-worker/commlog"
	"github.com/sbagenthub/twilio-worker/ledger"
	"github.com/sbagenthub/twilio-worker/ratelimit"
	"github.com/sbagenthub/twilio-worker/vapi"
)

// AgentCaller places, fetches, lists and ends the calls a VAPI assistant
// conducts. *vapi.Client is one.
type AgentCaller interface {
	CreateCall(ctx context.Context, p vapi.CreateCall) (*vapi.Call, error)
	GetCall(ctx context.Context, id string) (*vapi.Call, error)
	ListCalls(ctx context.Context, p vapi.ListParams) ([]vapi.Call, error)
	EndCall(ctx context.Context, id, controlURL string) error
}

var _ AgentCaller = (*vapi.Client)(nil)

// placeAgentCall places a call an assistant conducts through VAPI, with the
// same guarantees as a Twilio call: CALL_RATE, and the ledger so that a task
// that runs twice (or whose create lost its answer) places one call.
func (h *CallHandler) placeAgentCall(ctx context.Context, t *asynq.Task, log *slog.Logger, id string, p CallPayload, r Rules) error {
	if h.Agents == nil {
		return archive("assistantId: VAPI is not configured on this worker (VAPI_API_KEY, VAPI_PHONE_NUMBER_ID)")
	}
	log = log.With("assistant", p.AssistantID)
	now := r.Now()
	call, err := h.earlierAgentCall(ctx, log, id, p)
	if err != nil {
		return err
	}
	if call == nil {
		if err := h.admit(ctx, log, id); err != nil {
			return err
		}
		if h.Ledger != nil {
			if err := h.Ledger.Begin(ctx, id, p.To, now); err != nil {
				return err
			}
		}
		call, err = h.Agents.CreateCall(ctx, vapi.CreateCall{AssistantID: p.AssistantID, Customer: vapi.Customer{Number: p.To}})
		if err != nil {
			refused := vapi.IsRefused(err)
			if h.Ledger != nil && refused {
				_ = h.Ledger.Abandon(ctx, id, p.To)
			}
			if refused {
				log.Warn("call refused by VAPI", "err", err)
				return archive("%v", err)
			}
			// A lost answer or VAPI's own failure: the call may exist; the
			// next run reconciles before placing it again.
			log.Warn("VAPI call create failed; will retry", "err", err)
			return fmt.Errorf("create call: %w", err)
		}
		if h.Ledger != nil {
			if err := h.Ledger.Commit(ctx, id, p.To, call.ID); err != nil {
				log.Warn("could not record the placed call in the ledger", "id", call.ID, "err", err)
			}
		}
	}
	created := vapi.Time(call.CreatedAt)
	if created.IsZero() {
		created = now
	}
	log = log.With("vapiCall", call.ID)
	control := ""
	if call.Monitor != nil {
		control = call.Monitor.ControlURL
	}
	status := call.Status
	if status == "" {
		status = "queued"
	}
	if h.Records != nil {
		if err := h.Records.Create(ctx, calls.Record{SID: call.ID, To: p.To, Status: status, CreatedAt: created.UTC(), TaskID: id,
			Provider: calls.ProviderVAPI, Linked: call.PhoneCallProviderID, AssistantID: p.AssistantID, ControlURL: control}); err != nil {
			log.Warn("could not record the call", "err", err)
		}
		// VAPI's first status update may have made the record already.
		if _, _, err := h.Records.Apply(ctx, call.ID, calls.Update{Status: status, At: now, Source: "create", TaskID: id,
			Linked: call.PhoneCallProviderID, ControlURL: control}); err != nil {
			log.Warn("could not update the call's record", "err", err)
		}
	}
	if h.FollowUps != nil {
		poll := NewPollCallTask(call.ID, h.Polling.Wait(0), r.ResultTTL)
		if err := h.FollowUps.FollowUp(ctx, poll); err != nil {
			log.Error("could not enqueue the call's follow-up", "err", err)
		}
	}
	log.Info("assistant call placed through VAPI", "status", status)
	return writeResult(t, log, CallResult{CallSID: call.ID, Status: status, DateCreated: created.UTC().Format(time.RFC3339), Provider: calls.ProviderVAPI})
}

// earlierAgentCall returns the call an earlier run placed: from the ledger,
// or, after a lost answer, from VAPI's list of calls since the attempt to
// the same customer with the same assistant.
func (h *CallHandler) earlierAgentCall(ctx context.Context, log *slog.Logger, id string, p CallPayload) (*vapi.Call, error) {
	if h.Ledger == nil || id == "" {
		return nil, nil
	}
	e, err := h.Ledger.Get(ctx, id, p.To)
	if err != nil {
		return nil, err
	}
	callID := e.SID
	if callID == "" && e.Pending() {
		list, err := h.Agents.ListCalls(ctx, vapi.ListParams{CreatedAfter: e.StartedAt.Add(-ledger.Skew), AssistantID: p.AssistantID, Limit: 100})
		if err != nil {
			return nil, fmt.Errorf("reconcile an earlier attempt: %w", err)
		}
		cands := make([]ledger.Candidate, len(list))
		for i, c := range list {
			num := ""
			if c.Customer != nil {
				num = c.Customer.Number
			}
			cands[i] = ledger.Candidate{SID: c.ID, Created: vapi.Time(c.CreatedAt), Matches: num == p.To && c.AssistantID == p.AssistantID}
		}
		if callID, err = h.Ledger.Reconcile(ctx, e, cands); err != nil {
			return nil, fmt.Errorf("reconcile an earlier attempt: %w", err)
		}
	}
	if callID == "" {
		return nil, nil
	}
	log.Info("call already placed by an earlier run; not placing it again", "vapiCall", callID)
	call, err := h.Agents.GetCall(ctx, callID)
	if err != nil {
		return &vapi.Call{ID: callID, Status: "queued", AssistantID: p.AssistantID, CreatedAt: e.StartedAt.Format(time.RFC3339Nano)}, nil
	}
	return call, nil
}

// agentUpdate is what a fetch of a VAPI call tells the call's record.
func agentUpdate(c *vapi.Call, at time.Time, source string) calls.Update {
	u := calls.Update{Status: c.Status, At: at, Source: source, EndedReason: c.EndedReason, Cost: c.Cost,
		Duration: c.Duration(), StartTime: vapi.Time(c.StartedAt), EndTime: vapi.Time(c.EndedAt), Linked: c.PhoneCallProviderID}
	if c.Monitor != nil {
		u.ControlURL = c.Monitor.ControlURL
	}
	return u
}

// LookupAgentCall answers getCallStatus for a call an assistant conducts:
// from the record, asking VAPI (when agents is not nil) if the record is
// missing or the call has not ended.
func LookupAgentCall(ctx context.Context, records *calls.Store, agents AgentCaller, id string) (CallState, error) {
	rec, err := records.Get(ctx, id)
	if err != nil && !errors.Is(err, calls.ErrNotFound) {
		return CallState{}, err
	}
	if (rec == nil || !rec.Terminal()) && agents != nil {
		c, ferr := agents.GetCall(ctx, id)
		if ferr == nil {
			if rec == nil {
				to := ""
				if c.Customer != nil {
					to = c.Customer.Number
				}
				_ = records.Create(ctx, calls.Record{SID: c.ID, To: to, Status: "queued", CreatedAt: vapi.Time(c.CreatedAt),
					Provider: calls.ProviderVAPI, AssistantID: c.AssistantID})
			}
			if r, _, aerr := records.Apply(ctx, id, agentUpdate(c, time.Now(), "lookup")); aerr == nil {
				rec = r
			}
		} else if rec == nil {
			if vapi.IsNotFound(ferr) {
				return CallState{}, calls.ErrNotFound
			}
			return CallState{}, ferr
		}
	}
	if rec == nil {
		return CallState{}, calls.ErrNotFound
	}
	return StateOf(rec), nil
}

// pollAgent is one poll of a call an assistant conducts.
func (h *PollHandler) pollAgent(ctx context.Context, t *asynq.Task, log *slog.Logger, id string, rec *calls.Record, now time.Time, pol Polling) error {
	if h.Agents == nil {
		return archive("call %s: VAPI is not configured on this worker", id)
	}
	c, err := h.Agents.GetCall(ctx, id)
	if err != nil {
		if vapi.IsNotFound(err) {
			return archive("call %s: VAPI has no such call", id)
		}
		if vapi.IsRefused(err) {
			return archive("call %s: %v", id, err)
		}
		polls := 0
		if rec != nil {
			polls = rec.Polls
			_, _, _ = h.Records.Apply(ctx, id, calls.Update{At: now, Source: "poll"})
		}
		wait := pol.Wait(polls + 1)
		log.Warn("call poll failed; will poll again", "err", err, "wait", wait)
		return &ratelimit.DeferError{Until: now.Add(wait), Reason: "fetch failed: " + err.Error()}
	}
	if rec == nil {
		to := ""
		if c.Customer != nil {
			to = c.Customer.Number
		}
		if err := h.Records.Create(ctx, calls.Record{SID: c.ID, To: to, Status: "queued", CreatedAt: vapi.Time(c.CreatedAt),
			Provider: calls.ProviderVAPI, AssistantID: c.AssistantID}); err != nil {
			return &ratelimit.DeferError{Until: now.Add(pollFailureWaitMin), Reason: err.Error()}
		}
	}
	rec, became, err := h.Records.Apply(ctx, id, agentUpdate(c, now, "poll"))
	if err != nil {
		return &ratelimit.DeferError{Until: now.Add(pollFailureWaitMin), Reason: err.Error()}
	}
	if rec.Terminal() {
		if became {
			h.Metrics.Call(rec.Status)
			h.logEnded(ctx, log, rec)
		}
		log.Info("call ended", "status", rec.Status, "endedReason", rec.EndedReason, "duration", rec.Duration, "polls", rec.Polls)
		return writeResult(t, log, StateOf(rec))
	}
	wait := pol.Wait(rec.Polls)
	return &ratelimit.DeferError{Until: now.Add(wait), Reason: fmt.Sprintf("call %s is %s; next poll in %s", id, rec.Status, wait)}
}

// logEnded records a call's end in the communications log.
// A record store with a communications log has written it already.
func (h *PollHandler) logEnded(ctx context.Context, log *slog.Logger, rec *calls.Record) {
	if h.Records != nil && h.Records.Comms != nil {
		return
	}
	e := commlog.Entry{Event: commlog.CallEnded, Channel: "voice", TaskID: rec.TaskID, SID: rec.SID, To: rec.To, From: rec.From,
		Status: rec.Status, Reason: rec.EndedReason, Source: "poll"}
	if err := h.Comms.Append(ctx, e); err != nil {
		log.Warn("communications log append failed", "err", err)
	}
}
