package tasks

import (
	"context"
	"encoding/json"
	"errors"
	"fmt"
	"log/slog"
	"time"

	"github.com/hibiken/asynq"

	"github.com/sbagenthub/twilio-worker/calls"
	"github.com/sbagenthub/twilio-worker/commlog"
	"github.com/sbagenthub/twilio-worker/ledger"
	"github.com/sbagenthub/twilio-worker/metrics"
	"github.com/sbagenthub/twilio-worker/optout"
	"github.com/sbagenthub/twilio-worker/phone"
	"github.com/sbagenthub/twilio-worker/ratelimit"
	"github.com/sbagenthub/twilio-worker/twilioapi"
)

// Caller places, fetches and lists calls. *twilioapi.Client is one.
type Caller interface {
	CreateCall(ctx context.Context, p twilioapi.CallParams) (*twilioapi.Call, error)
	FetchCall(ctx context.Context, sid string) (*twilioapi.Call, error)
	ListCalls(ctx context.Context, p twilioapi.CallListParams) ([]twilioapi.Call, error)
}

// CallLimiter applies CALL_RATE. *ratelimit.Limiter is one.
type CallLimiter interface {
	AdmitCall(ctx context.Context, taskID string, notAfter time.Time) (ratelimit.Decision, error)
}

// FollowUps queues the tasks a handler schedules itself (a message's
// tracking poll and redelivery, a call's poll); *producer.FollowUps is the
// one the worker uses. A task whose id is already queued is no error: the
// follow-up is there.
type FollowUps interface {
	FollowUp(ctx context.Context, t *asynq.Task) error
}

// Polling defaults: a call is fetched after 2 s, 4 s, 8 s … at most every
// 30 s, and given up as unknown after 4 h.
const (
	PollFirstDefault   = 2 * time.Second
	PollMaxDefault     = 30 * time.Second
	FollowMaxDefault   = 4 * time.Hour
	pollFailureWaitMin = time.Second
)

// Polling says how a call is followed. Zero fields mean defaults.
type Polling struct {
	First     time.Duration // first wait, doubled after every poll
	Max       time.Duration // longest wait between polls
	FollowMax time.Duration // after this the call is recorded as unknown
}

// WithDefaults fills zero fields.
func (p Polling) WithDefaults() Polling {
	if p.First <= 0 {
		p.First = PollFirstDefault
	}
	if p.Max <= 0 {
		p.Max = PollMaxDefault
	}
	if p.FollowMax <= 0 {
		p.FollowMax = FollowMaxDefault
	}
	return p
}

// Wait returns the wait after the n-th poll (n ≥ 0): First·2ⁿ, at most Max.
func (p Polling) Wait(n int) time.Duration {
	p = p.WithDefaults()
	if n > 30 {
		return p.Max
	}
	return min(p.First<<n, p.Max)
}

// CallHandler processes call:make tasks.
type CallHandler struct {
	Caller         Caller
	OptOuts        OptOuts
	Records        *calls.Store
	Ledger         *ledger.Ledger // a task that runs twice places one call; nil disables it
	Limiter        CallLimiter    // CALL_RATE; nil places calls without a limit
	FollowUps      FollowUps      // queues the call's poll; nil: none
	Rules          Rules
	Polling        Polling
	StatusCallback string // PUBLIC_URL + "/twilio/status", when set
	Logger         *slog.Logger
	Metrics        *metrics.Metrics
	// Guard, when set, is the fraud guard (as in SMSHandler).
	Guard Guard
	// Agents places the calls an assistant conducts (payload assistantId);
	// nil archives them as not configured.
	Agents AgentCaller
}

// CallStatusEvents are the call events Twilio is asked to report.
var CallStatusEvents = []string{"initiated", "ringing", "answered", "completed"}

// ProcessTask implements asynq.Handler.
func (h *CallHandler) ProcessTask(ctx context.Context, t *asynq.Task) error {
	return giveUp(ctx, h.process(ctx, t))
}

func (h *CallHandler) process(ctx context.Context, t *asynq.Task) error {
	h.Metrics.TaskRun(TypeMakeCall)
	r := h.Rules.WithDefaults()
	id, _ := asynq.GetTaskID(ctx)
	log := logger(h.Logger).With("task", id)

	var p CallPayload
	if err := json.Unmarshal(t.Payload(), &p); err != nil {
		return archive("invalid payload: %v", err)
	}
	p, err := p.Normalize(r)
	if err != nil {
		return archive("invalid payload: %v", err)
	}
	to := phone.Number(p.To)
	log = log.With("to", to)

	if h.Guard != nil {
		if reason := h.Guard.Refused(p.To); reason != "" {
			log.Warn("call refused by the fraud guard", "reason", reason)
			return archive("%s", reason)
		}
	}
	gc := GuardCheck{To: p.To, Source: p.Source, Channel: "voice"}
	out, blocked, err := preSend(ctx, h.Guard, h.OptOuts, optout.Voice, gc)
	if err != nil {
		return fmt.Errorf("check do-not-call: %w", err)
	}
	if out {
		log.Info("call skipped: number is on the do-not-call list")
		return writeResult(t, log, CallResult{Status: "skipped", Reason: "recipient opted out of calls"})
	}
	if blocked != "" {
		log.Warn("call refused by the fraud guard", "reason", blocked)
		return archive("%s", blocked)
	}

	if p.AssistantID != "" {
		return h.placeAgentCall(ctx, t, log, id, p, r)
	}

	params := twilioapi.CallParams{To: p.To, From: p.From, URL: p.URL, Twiml: p.Twiml, Record: p.Record}
	if p.Say != "" {
		params.Twiml = SayTwiml(p.Say)
	}
	if h.StatusCallback != "" {
		params.StatusCallback, params.StatusCallbackEvents = StatusCallbackFor(h.StatusCallback, id), CallStatusEvents
	}
	now := r.Now()
	call, err := h.earlierCall(ctx, log, id, p)
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
		call, err = h.Caller.CreateCall(ctx, params)
		if err != nil {
			if h.Ledger != nil && twilioapi.ClassOf(err) != twilioapi.ClassAmbiguous {
				_ = h.Ledger.Abandon(ctx, id, p.To)
			}
			if te := (*twilioapi.Error)(nil); errors.As(err, &te) && IsFraudCode(te.Code) {
				return strike(ctx, log, h.Guard, gc, te)
			}
			return callFailed(log, err, now)
		}
		if h.Ledger != nil {
			if err := h.Ledger.Commit(ctx, id, p.To, call.SID); err != nil {
				log.Warn("could not record the placed call in the ledger", "sid", call.SID, "err", err)
			}
		}
	}
	created := call.DateCreated
	if created.IsZero() {
		created = now
	}
	log = log.With("sid", call.SID)
	if h.Records != nil {
		if err := recordCall(ctx, h.Records, h.Metrics, call, id, created, now); err != nil {
			// The call is placed: do not place it again; the poll creates the record.
			log.Warn("could not record the call", "err", err)
		}
	}
	if h.FollowUps != nil {
		poll := NewPollCallTask(call.SID, h.Polling.Wait(0), r.ResultTTL)
		if err := h.FollowUps.FollowUp(ctx, poll); err != nil {
			log.Error("could not enqueue the call's follow-up", "err", err)
		}
	}
	log.Info("call placed", "status", call.Status)
	return writeResult(t, log, CallResult{CallSID: call.SID, Status: call.Status, DateCreated: created.UTC().Format(time.RFC3339)})
}

// recordCall makes the record of a placed call and merges into it what is
// already known: the call as Twilio gave it (a call recovered after it ended
// keeps its duration, start and end) and the status callbacks that arrived
// before the record (calls.Store.Early). A call that thereby ends is counted
// in calls_total once.
func recordCall(ctx context.Context, records *calls.Store, m *metrics.Metrics, call *twilioapi.Call, taskID string, created, now time.Time) error {
	initial := call.Status
	if initial == "" || calls.Terminal(initial) {
		initial = "queued"
	}
	if err := records.Create(ctx, calls.Record{SID: call.SID, To: call.To, From: call.From,
		Status: initial, CreatedAt: created.UTC(), TaskID: taskID}); err != nil {
		return err
	}
	rec, became, err := records.Apply(ctx, call.SID, calls.Update{Status: call.Status, At: now, Source: "create",
		Duration: call.Duration, AnsweredBy: call.AnsweredBy, StartTime: call.StartTime, EndTime: call.EndTime})
	if err != nil {
		return err
	}
	merged, mergedBecame, err := records.Merge(ctx, call.SID)
	if err != nil {
		return err
	}
	if merged != nil {
		rec = merged
	}
	if became || mergedBecame {
		m.Call(rec.Status)
	}
	return nil
}

// admit waits for the call's slot under CALL_RATE: nil when it may be
// placed now, a *DeferError for a later slot.
func (h *CallHandler) admit(ctx context.Context, log *slog.Logger, id string) error {
	if h.Limiter == nil {
		return nil
	}
	for asked := 0; ; asked++ {
		d, err := h.Limiter.AdmitCall(ctx, id, time.Time{})
		if err != nil {
			return fmt.Errorf("check call rate: %w", err)
		}
		switch {
		case d.Soon && asked == 0:
			if err := sleepUntil(ctx, d.At); err != nil {
				return err
			}
			continue
		case !d.Go:
			h.Metrics.Deferred(ratelimit.ScopeCall)
			log.Info("call deferred by CALL_RATE", "limit", d.Reason(), "until", d.At)
			return d.Err()
		}
		return sleepUntil(ctx, d.At)
	}
}

// earlierCall returns the call an earlier run of the task placed, from the
// ledger or by reconciling a lost answer with Twilio's list; nil when none.
func (h *CallHandler) earlierCall(ctx context.Context, log *slog.Logger, id string, p CallPayload) (*twilioapi.Call, error) {
	if h.Ledger == nil || id == "" {
		return nil, nil
	}
	e, err := h.Ledger.Get(ctx, id, p.To)
	if err != nil {
		return nil, err
	}
	sid := e.SID
	if sid == "" && e.Pending() {
		list, err := h.Caller.ListCalls(ctx, twilioapi.CallListParams{To: p.To, From: p.From, Limit: 200})
		if err != nil {
			return nil, fmt.Errorf("reconcile an earlier attempt: %w", err)
		}
		cands := make([]ledger.Candidate, len(list))
		for i, c := range list {
			cands[i] = ledger.Candidate{SID: c.SID, Created: c.DateCreated, Matches: c.To == p.To && sameSender(c.From, p.From, h.Caller)}
		}
		if sid, err = h.Ledger.Reconcile(ctx, e, cands); err != nil {
			return nil, fmt.Errorf("reconcile an earlier attempt: %w", err)
		}
	}
	if sid == "" {
		return nil, nil
	}
	log.Info("call already placed by an earlier run; not placing it again", "sid", sid)
	call, err := h.Caller.FetchCall(ctx, sid)
	if err != nil {
		return &twilioapi.Call{SID: sid, To: p.To, From: p.From, Status: "queued", DateCreated: e.StartedAt}, nil
	}
	return call, nil
}

// callFailed decides the fate of a call:make whose create failed.
func callFailed(log *slog.Logger, err error, now time.Time) error {
	var te *twilioapi.Error
	if !errors.As(err, &te) {
		return fmt.Errorf("create call: %w", err)
	}
	switch {
	case te.Class == twilioapi.ClassConfig:
		log.Error("call refused: Twilio sender or account configuration", "code", te.Code, "err", te.Message)
		return archive("%s", te.Error())
	case te.Class.Permanent():
		log.Warn("call refused by Twilio", "code", te.Code, "err", te.Message)
		return archive("%s", te.Error())
	case te.Class == twilioapi.ClassRateLimited:
		wait := te.RetryAfter
		if wait <= 0 {
			wait = RateLimitWaitDefault
		}
		return &ratelimit.DeferError{Until: now.Add(wait), Reason: te.Error()}
	}
	log.Warn("call failed; will retry", "class", te.Class.String(), "err", te.Message)
	return fmt.Errorf("create call: %w", te)
}

// PollHandler processes call:poll tasks: it follows a call with growing
// waits until it ends. Waiting is a DeferError, so it neither holds a worker
// slot nor uses up retries; Twilio failures while polling only lengthen the
// wait.
type PollHandler struct {
	Caller  Caller
	Records *calls.Store
	Polling Polling
	Now     func() time.Time
	Logger  *slog.Logger
	Metrics *metrics.Metrics
	// Agents fetches the calls an assistant conducts (VAPI call ids); nil
	// archives their polls.
	Agents AgentCaller
	Comms  *commlog.Log // the communications log: a call's end is recorded here; nil: not
}

// ProcessTask implements asynq.Handler.
func (h *PollHandler) ProcessTask(ctx context.Context, t *asynq.Task) error {
	return giveUp(ctx, h.process(ctx, t))
}

func (h *PollHandler) process(ctx context.Context, t *asynq.Task) error {
	h.Metrics.TaskRun(TypePollCall)
	pol := h.Polling.WithDefaults()
	now := time.Now()
	if h.Now != nil {
		now = h.Now()
	}
	var p PollPayload
	if err := json.Unmarshal(t.Payload(), &p); err != nil || p.CallSID == "" {
		return archive("invalid payload: want {\"callSid\":\"CA…\"}")
	}
	if err := p.Validate(); err != nil {
		return archive("invalid payload: %v", err)
	}
	log := logger(h.Logger).With("sid", p.CallSID)

	rec, err := h.Records.Get(ctx, p.CallSID)
	switch {
	case errors.Is(err, calls.ErrNotFound):
		rec = nil
	case err != nil:
		return &ratelimit.DeferError{Until: now.Add(pollFailureWaitMin), Reason: "call record unreadable: " + err.Error()}
	}
	if rec != nil && rec.Terminal() {
		// A status callback ended it: no fetch needed.
		return writeResult(t, log, StateOf(rec))
	}
	if rec != nil && now.Sub(rec.CreatedAt) > pol.FollowMax {
		rec, became, err := h.Records.Apply(ctx, p.CallSID, calls.Update{Status: calls.StatusUnknown, At: now, Source: "timeout"})
		if err != nil {
			return &ratelimit.DeferError{Until: now.Add(pollFailureWaitMin), Reason: err.Error()}
		}
		if became {
			h.Metrics.Call(calls.StatusUnknown)
		}
		log.Warn("call followed for too long; recorded as unknown", "followed", pol.FollowMax)
		return writeResult(t, log, StateOf(rec))
	}

	switch calls.KindOf(p.CallSID) {
	case calls.KindVAPI:
		return h.pollAgent(ctx, t, log, p.CallSID, rec, now, pol)
	case calls.KindInvalid:
		return archive("invalid payload: callSid %q is neither a Twilio call SID nor a VAPI call id", p.CallSID)
	}
	call, err := h.Caller.FetchCall(ctx, p.CallSID)
	if err != nil {
		if twilioapi.ClassOf(err) == twilioapi.ClassNotFound {
			return archive("call %s: Twilio has no such call", p.CallSID)
		}
		if twilioapi.ClassOf(err).Permanent() {
			// Polling again cannot help (e.g. credentials refused).
			return archive("call %s: %v", p.CallSID, err)
		}
		polls := 0
		if rec != nil {
			polls = rec.Polls
			_, _, _ = h.Records.Apply(ctx, p.CallSID, calls.Update{At: now, Source: "poll"})
		}
		wait := pol.Wait(polls + 1)
		log.Warn("call poll failed; will poll again", "err", err, "wait", wait)
		return &ratelimit.DeferError{Until: now.Add(wait), Reason: "fetch failed: " + err.Error()}
	}
	if rec == nil {
		created := call.DateCreated
		if created.IsZero() {
			created = now
		}
		if err := h.Records.Create(ctx, calls.Record{SID: call.SID, To: call.To, From: call.From, Status: "queued", CreatedAt: created}); err != nil {
			return &ratelimit.DeferError{Until: now.Add(pollFailureWaitMin), Reason: err.Error()}
		}
		if merged, became, err := h.Records.Merge(ctx, p.CallSID); err == nil && became {
			h.Metrics.Call(merged.Status)
		}
	}
	rec, became, err := h.Records.Apply(ctx, p.CallSID, calls.Update{Status: call.Status, At: now, Source: "poll",
		Duration: call.Duration, AnsweredBy: call.AnsweredBy, StartTime: call.StartTime, EndTime: call.EndTime})
	if err != nil {
		return &ratelimit.DeferError{Until: now.Add(pollFailureWaitMin), Reason: err.Error()}
	}
	if rec.Terminal() {
		if became {
			h.Metrics.Call(rec.Status)
			h.logEnded(ctx, log, rec)
		}
		log.Info("call ended", "status", rec.Status, "duration", rec.Duration, "polls", rec.Polls)
		return writeResult(t, log, StateOf(rec))
	}
	wait := pol.Wait(rec.Polls)
	return &ratelimit.DeferError{Until: now.Add(wait), Reason: fmt.Sprintf("call %s is %s; next poll in %s", p.CallSID, rec.Status, wait)}
}

// StateOf is the getCallStatus view of a record.
func StateOf(r *calls.Record) CallState {
	s := CallState{CallSID: r.SID, Status: r.Status, Duration: r.Duration, To: r.To, From: r.From,
		EndedReason: r.EndedReason, Cost: r.Cost, Linked: r.Linked}
	if r.Provider == calls.ProviderVAPI {
		s.Provider = r.Provider
	}
	if r.StartTime != nil {
		s.StartTime = r.StartTime.UTC().Format(time.RFC3339)
	}
	if r.EndTime != nil {
		s.EndTime = r.EndTime.UTC().Format(time.RFC3339)
	}
	return s
}

// CallFetcher fetches a call from Twilio.
type CallFetcher interface {
	FetchCall(ctx context.Context, sid string) (*twilioapi.Call, error)
}

// LookupCall answers getCallStatus: from the record, asking Twilio (when
// fetcher is not nil) if the record is missing or the call has not ended.
func LookupCall(ctx context.Context, records *calls.Store, fetcher CallFetcher, sid string) (CallState, error) {
	if err := twilioapi.CheckCallSID("callSid", sid); err != nil {
		return CallState{}, &FieldError{Field: "callSid", Problem: "must be a call SID: CA followed by 32 lowercase hexadecimal digits", Err: err}
	}
	rec, err := records.Get(ctx, sid)
	if err != nil && !errors.Is(err, calls.ErrNotFound) {
		return CallState{}, err
	}
	if (rec == nil || !rec.Terminal()) && fetcher != nil {
		call, ferr := fetcher.FetchCall(ctx, sid)
		if ferr == nil {
			if rec == nil {
				_ = records.Create(ctx, calls.Record{SID: call.SID, To: call.To, From: call.From, Status: "queued", CreatedAt: call.DateCreated})
				_, _, _ = records.Merge(ctx, sid)
			}
			if r, _, aerr := records.Apply(ctx, sid, calls.Update{Status: call.Status, At: time.Now(), Source: "lookup",
				Duration: call.Duration, AnsweredBy: call.AnsweredBy, StartTime: call.StartTime, EndTime: call.EndTime}); aerr == nil {
				rec = r
			}
		} else if rec == nil {
			return CallState{}, ferr
		}
	}
	if rec == nil {
		return CallState{}, calls.ErrNotFound
	}
	return StateOf(rec), nil
}

func writeResult(t *asynq.Task, log *slog.Logger, v any) error {
	if w := t.ResultWriter(); w != nil {
		b, _ := json.Marshal(v)
		if _, err := w.Write(b); err != nil {
			log.Warn("could not store task result", "err", err)
		}
	}
	return nil
}

func logger(l *slog.Logger) *slog.Logger {
	if l == nil {
		return slog.New(slog.DiscardHandler)
	}
	return l
}
