package tasks

import (
	"context"
	"errors"
	"log/slog"
	"time"

	"github.com/hibiken/asynq"
	"github.com/redis/go-redis/v9"

	"github.com/sbagenthub/twilio-worker/commlog"
	"github.com/sbagenthub/twilio-worker/ledger"
	"github.com/sbagenthub/twilio-worker/optout"
	"github.com/sbagenthub/twilio-worker/ratelimit"
	"github.com/sbagenthub/twilio-worker/twilioapi"
)

// The lean path of an sms:send (SMSHandler.Redis set): one Redis round trip
// before the Twilio request and one after it. Before: the ledger's entry is
// read and the attempt recorded, the limiter decides, the opt-out list, the
// fraud guard and the campaign's cancellation are asked, all in one
// pipeline (their keys live in different slots: {TO}, {rl}, {optout},
// {fraud}, {ID}; each script stays in one). After: the ledger's commit, the
// delivery record and the log's "sending" and "sent" entries. When the
// answers say the message does not go now, what the pipeline did for a send
// is undone (the attempt abandoned, the limiter's slot given back).
//
// More round trips come only where a guarantee needs them: when the limiter
// says to wait for the slot, the opt-out list (and the guard, the campaign)
// are asked again after the wait, immediately before the send; a guard
// check that counts toward the destination's limits (agent traffic) is made
// only then; with REDIS_WAIT_REPLICAS the attempt's record is its own
// WAIT-confirmed write; a task that already reached Twilio, or must
// reconcile, reads Twilio first.

// SlotLead is how long before its rate-limit slot a message that waits for
// it makes its last checks (opt-out list, guard, campaign), so that their
// round trip is over when the slot comes and the request starts on time.
const SlotLead = 25 * time.Millisecond

// PipelinedLimiter is a limiter whose decision can join another round trip.
// *ratelimit.Limiter is one.
type PipelinedLimiter interface {
	AdmitSMSIn(ctx context.Context, p redis.Pipeliner, m ratelimit.Message) func(context.Context) (ratelimit.Decision, error)
}

// PipelinedCampaigns is a campaign store whose cancel check can join another
// round trip. *campaign.Store is one.
type PipelinedCampaigns interface {
	CanceledIn(ctx context.Context, p redis.Pipeliner, id string) func() (bool, error)
}

// PipelinedGuard is a fraud guard whose pre-send check can join another
// round trip. *fraud.Guard is one.
type PipelinedGuard interface {
	PreSendIn(ctx context.Context, p redis.Pipeliner, c GuardCheck) func(context.Context) (string, error)
	// Counts reports whether the check of c changes the guard's state, so
	// that it may be made only for a send that goes.
	Counts(c GuardCheck) bool
}

// lean reports whether the handler can take the lean path for a message:
// a Redis client to pipeline on, and every store it uses able to join. A
// pooled message chooses its sender first (its own round trips), then
// takes the lean path.
func (h *SMSHandler) lean() bool {
	if h.Redis == nil {
		return false
	}
	if h.Ledger != nil && !h.Ledger.Pipelined() {
		return false
	}
	if _, ok := h.OptOuts.(PipelinedOptOuts); !ok {
		return false
	}
	if _, ok := h.Limiter.(PipelinedLimiter); h.Limiter != nil && !ok {
		return false
	}
	if _, ok := h.Campaigns.(PipelinedCampaigns); h.Campaigns != nil && !ok {
		return false
	}
	if _, ok := h.Guard.(PipelinedGuard); h.Guard != nil && !ok {
		return false
	}
	return true
}

// checks is what one pre-send round trip learned.
type checks struct {
	entry    ledger.Entry
	read     bool // entry was read
	begun    bool // the attempt was recorded (BeginIn)
	decision ratelimit.Decision
	decided  bool // the limiter was asked
	out      bool // opted out
	blocked  string
	canceled bool
}

// ask runs one pre-send round trip: the ledger's entry (read), the attempt
// recorded (begin), the limiter's decision (admit), and the last checks:
// opt-out list, campaign, and the guard when guard is set.
func (h *SMSHandler) ask(ctx context.Context, id, queue string, p SMSPayload, now time.Time, read, begin, admit, guard bool) (checks, error) {
	var c checks
	var (
		entry    func() (ledger.Entry, error)
		decision func(context.Context) (ratelimit.Decision, error)
		blocked  func(context.Context) (string, error)
		canceled func() (bool, error)
		out      *redis.BoolCmd
	)
	_, perr := h.Redis.Pipelined(ctx, func(pipe redis.Pipeliner) error {
		if h.Ledger != nil && id != "" {
			if read {
				entry = h.Ledger.GetIn(ctx, pipe, id, p.To)
			}
			if begin {
				c.begun = h.Ledger.BeginIn(ctx, pipe, id, p.To, now)
			}
		}
		if admit && h.Limiter != nil {
			decision = h.Limiter.(PipelinedLimiter).AdmitSMSIn(ctx, pipe, LimitMessage(id, queue, p))
		}
		out = h.OptOuts.(PipelinedOptOuts).OptedOutCmd(ctx, pipe, optout.SMS, p.To)
		if guard && h.Guard != nil {
			blocked = h.Guard.(PipelinedGuard).PreSendIn(ctx, pipe, h.guardCheck(p))
		}
		if h.Campaigns != nil && p.Campaign != "" {
			canceled = h.Campaigns.(PipelinedCampaigns).CanceledIn(ctx, pipe, p.Campaign)
		}
		return nil
	})
	// Each answer is read on its own: a script the server did not know yet
	// fails alone and runs again by itself.
	var errs []error
	if entry != nil {
		var err error
		c.entry, err = entry()
		c.read = err == nil
		errs = append(errs, err)
	}
	if decision != nil {
		var err error
		c.decision, err = decision(ctx)
		c.decided = err == nil
		errs = append(errs, err)
	}
	if blocked != nil {
		var err error
		c.blocked, err = blocked(ctx)
		errs = append(errs, err)
	}
	if canceled != nil {
		var err error
		c.canceled, err = canceled()
		errs = append(errs, err)
	}
	var oerr error
	if c.out, oerr = out.Result(); oerr != nil {
		errs = append(errs, oerr)
	}
	if err := errors.Join(errs...); err != nil {
		return c, err
	}
	if perr != nil && !redis.HasErrorPrefix(perr, "NOSCRIPT") {
		return c, perr
	}
	return c, nil
}

// processLean is process from the ledger check on, for the lean path.
// pooled says the sender was chosen from the pool (SENDER_POOL).
func (h *SMSHandler) processLean(ctx context.Context, log *slog.Logger, t *asynq.Task, id string, p SMSPayload, now time.Time, pooled bool) error {
	r := h.Rules.WithDefaults()
	queue, _ := asynq.GetQueueName(ctx)
	guardFirst := h.Guard != nil && !h.Guard.(PipelinedGuard).Counts(h.guardCheck(p))

	c, err := h.ask(ctx, id, queue, p, now, true, true, true, guardFirst)
	askedAt := time.Now() // when the last checks were answered
	begun := c.begun
	// undo takes back what the round trip did for a send that does not go
	// now: the attempt's record, and (given) the limiter's slot.
	undo := func(d ratelimit.Decision, decided bool) {
		if begun {
			if aerr := h.Ledger.Abandon(ctx, id, p.To); aerr != nil {
				log.Warn("could not clear the send attempt; the next run will reconcile", "err", aerr)
			}
			begun = false
		}
		if decided {
			h.release(ctx, log, id, p, d.Go)
		}
	}
	if err != nil {
		// Redis trouble: retry. What was recorded stays: an open attempt
		// makes the next run reconcile, which is safe.
		if c.decided {
			h.release(ctx, log, id, p, c.decision.Go)
		}
		return err
	}

	// A task that already reached Twilio never sends again.
	if c.read && (c.entry.Sent() || c.entry.Pending()) {
		done, err := h.settled(ctx, log, id, p, c.entry)
		if err != nil || done != nil {
			undo(c.decision, c.decided)
			if err != nil {
				return err
			}
			return h.writeResult(ctx, t, *done)
		}
	}

	// A canceled campaign's message takes no slot from the limits.
	if c.canceled {
		undo(c.decision, c.decided)
		return h.skipCanceled(ctx, log, t, p)
	}

	d, slot := c.decision, time.Time{}
admitted:
	for asked := 0; h.Limiter != nil; asked++ {
		switch {
		case d.Late:
			undo(d, false)
			h.Metrics.Skipped("expired")
			log.Warn("sms expired: the rate limit has no slot before it expires", "limit", d.Reason(), "slot", d.At)
			return archive("expired: %s has no slot before %s", d.Reason(), p.ExpiresAt.Format(time.RFC3339))
		case d.Soon && asked == 0:
			// Woken a little before its slot: wait for it, then ask again
			// (with the last checks: they must come after the wait).
			if err := sleepUntil(ctx, d.At); err != nil {
				undo(d, false)
				return err
			}
			now = r.Now()
			if c, err = h.ask(ctx, id, queue, p, now, false, false, true, guardFirst); err != nil {
				undo(c.decision, c.decided)
				return err
			}
			askedAt, d = time.Now(), c.decision
		case !d.Go:
			undo(d, false)
			if d.Scope != "" {
				h.Metrics.Deferred(d.Scope)
			}
			log.Info("sms deferred by a rate limit", "limit", d.Reason(), "until", d.At)
			return d.Err()
		default:
			slot = d.At
			break admitted
		}
	}
	if h.Limiter != nil && expired(p, slot) {
		undo(d, true)
		h.Metrics.Skipped("expired")
		return archive("expired: its rate-limit slot came at %s, after it expired", slot.UTC().Format(time.RFC3339))
	}
	// The last checks come immediately before the send: asked again, at
	// SlotLead before the slot, when they were made longer than that before
	// it, or when the guard's check counts toward its limits (made only for
	// a send that goes). The request then starts at its slot exactly: the
	// checks' round trip does not delay it, so requests keep the limiter's
	// spacing at Twilio's side.
	if slot.Sub(askedAt) > SlotLead || (h.Guard != nil && !guardFirst) {
		if err := sleepUntil(ctx, slot.Add(-SlotLead)); err != nil {
			undo(d, true)
			return err
		}
		last, err := h.ask(ctx, id, queue, p, r.Now(), false, false, false, true)
		if err != nil {
			undo(d, true)
			return err
		}
		c.out, c.blocked, c.canceled = last.out, last.blocked, last.canceled
	}
	if !c.out && c.blocked == "" && !c.canceled {
		if err := sleepUntil(ctx, slot); err != nil {
			undo(d, true)
			return err
		}
	}
	if h.Limiter != nil {
		now = r.Now() // the message's moment
	}
	if c.out {
		undo(d, true)
		h.Metrics.Skipped("optout")
		log.Info("sms skipped: recipient opted out")
		return h.writeResult(ctx, t, SMSResult{Status: "skipped", Reason: optout.ErrOptedOut.Error()})
	}
	if c.blocked != "" {
		undo(d, false)
		log.Warn("sms refused by the fraud guard", "reason", c.blocked)
		return archive("%s", c.blocked)
	}
	if c.canceled {
		undo(d, true)
		return h.skipCanceled(ctx, log, t, p)
	}
	if h.Ledger != nil && id != "" && !begun {
		// REDIS_WAIT_REPLICAS: the attempt's record is confirmed by the
		// replicas before the request, in a round trip of its own.
		if err := h.Ledger.Begin(ctx, id, p.To, now); err != nil {
			h.release(ctx, log, id, p, h.Limiter != nil)
			return err // without the record a crash could send twice: retry
		}
	}

	params := twilioapi.SendParams{To: p.To, From: p.From, Body: p.Body, StatusCallback: StatusCallbackFor(h.StatusCallback, id)}
	if p.ExpiresAt != nil {
		params.ValidityPeriod = p.ExpiresAt.Sub(now)
	}
	sendCtx := ctx
	if queue == QueueCritical {
		sendCtx = ratelimit.Urgent(ctx) // ahead of this worker's paced bulk requests
	}
	j := journalOf(ctx)
	sending := commlog.Entry{Event: commlog.Sending, Body: p.Body, Slot: slot, At: time.Now()}
	msg, err := h.Messenger.SendSMS(sendCtx, params)
	if err != nil {
		j.append(ctx, log, sending)
		if h.Ledger != nil && twilioapi.ClassOf(err) != twilioapi.ClassAmbiguous {
			// Twilio answered: nothing was created.
			if aerr := h.Ledger.Abandon(ctx, id, p.To); aerr != nil {
				log.Warn("could not clear the send attempt; the next run will reconcile", "err", aerr)
			}
		}
		if pooled {
			if err, ok := h.poolRefused(ctx, log, p, now, err); ok {
				return err
			}
		}
		err = h.failed(ctx, log, p, now, err)
		if errors.Is(err, asynq.SkipRetry) {
			h.release(ctx, log, id, p, h.Limiter != nil) // refused for good: it never goes
		}
		return err
	}
	h.Metrics.Sent()
	log.Info("sms sent", "sid", msg.SID, "status", msg.Status, "segments", msg.NumSegments)
	created := msg.DateCreated
	if created.IsZero() {
		created = now
	}
	res := SMSResult{MessageSID: msg.SID, Status: msg.Status, DateCreated: created.UTC().Format(time.RFC3339)}

	// One round trip after the send: the ledger's commit, the delivery
	// record, the log's entries.
	// The message went: what records it is written even when the run's
	// context is over (the lease expired, the worker is shutting down).
	ctx, cancel := context.WithTimeout(context.WithoutCancel(ctx), LogAppendTimeout)
	defer cancel()
	var commit func(context.Context) error
	var track func(context.Context, error) error
	_, perr := h.Redis.Pipelined(ctx, func(pipe redis.Pipeliner) error {
		if h.Ledger != nil && id != "" {
			commit = h.Ledger.CommitIn(ctx, pipe, id, p.To, msg.SID)
		}
		track = h.Tracker.StartIn(ctx, pipe, id, queue, p, msg)
		j.appendIn(ctx, pipe, sending)
		j.appendIn(ctx, pipe, commlog.Entry{Event: commlog.Sent, SID: res.MessageSID, Status: res.Status})
		return nil
	})
	if commit != nil {
		if err := commit(ctx); err != nil {
			// The message went. A re-run reconciles and finds it.
			log.Warn("could not record the sent message in the ledger", "sid", msg.SID, "err", err)
		}
	}
	if perr != nil && !redis.HasErrorPrefix(perr, "NOSCRIPT") {
		log.Warn("communications log append failed", "err", perr)
	}
	if err := track(ctx, perr); err != nil {
		log.Warn("delivery tracking not started", "err", err)
	}
	if pooled {
		h.stick(ctx, log, p)
	}
	j.settled = true
	return h.finish(ctx, t, res)
}
