package tasks

import (
	"context"
	"encoding/json"
	"errors"
	"fmt"
	"log/slog"
	"time"

	"github.com/hibiken/asynq"
	"github.com/redis/go-redis/v9"

	"github.com/sbagenthub/twilio-worker/commlog"
	"github.com/sbagenthub/twilio-worker/ledger"
	"github.com/sbagenthub/twilio-worker/metrics"
	"github.com/sbagenthub/twilio-worker/optout"
	"github.com/sbagenthub/twilio-worker/phone"
	"github.com/sbagenthub/twilio-worker/ratelimit"
	"github.com/sbagenthub/twilio-worker/segment"
	"github.com/sbagenthub/twilio-worker/twilioapi"
)

// Messenger sends SMS and lists what was sent (for reconciliation).
// *twilioapi.Client is one.
type Messenger interface {
	SendSMS(ctx context.Context, p twilioapi.SendParams) (*twilioapi.Message, error)
	ListMessages(ctx context.Context, p twilioapi.ListParams) ([]twilioapi.Message, error)
}

// OptOuts is the opt-out store as the handlers need it. *optout.Store is one.
type OptOuts interface {
	OptedOut(ctx context.Context, ch optout.Channel, number string) (bool, error)
	Add(ctx context.Context, ch optout.Channel, number string, src optout.Source) (bool, error)
}

// RateLimitWaitDefault is how long to wait after a 429 without Retry-After.
const RateLimitWaitDefault = time.Second

// SMSHandler processes sms:send tasks.
type SMSHandler struct {
	Messenger Messenger
	OptOuts   OptOuts
	Rules     Rules
	// Ledger makes a task that runs twice send once; nil disables it.
	Ledger *ledger.Ledger
	// Tracker follows accepted messages to delivery; nil disables it.
	Tracker *Tracker
	// Comms is the communications log (tw:log); nil records nothing.
	// Logger is the process's own log.
	Comms          *commlog.Log
	StatusCallback string // PUBLIC_URL + "/twilio/status", when set
	Logger         *slog.Logger
	Metrics        *metrics.Metrics

	// Marketing: quiet hours and consent for class marketing (marketing.go).
	Marketing Marketing

	// Limiter, when set, applies the sender and recipient rate limits just
	// before the opt-out check and the send (limit.go).
	Limiter Limiter

	// Campaigns, when set, stops messages of canceled campaigns and counts
	// each campaign message's final outcome (campaign.go).
	Campaigns Campaigns

	// Pool, when set, chooses the sender of messages that name none
	// (SENDER_POOL; pool.go).
	Pool SenderPool
	// PoolBooker books a pooled message that was queued without a booking
	// (a campaign's) against the pool's summed rate before its sender is
	// chosen: pool.WithPool(limiter, pool).
	PoolBooker Booker

	// Guard, when set, is the fraud guard: its static rules are re-checked
	// first, its velocity check joins the opt-out check's round trip.
	Guard Guard

	// ScheduleMin is TWILIO_SCHEDULE_MIN: a message with SendAt at least
	// this far ahead is handed to Twilio to schedule (schedule.go); 0 never.
	// The worker sets it only with a Messaging Service.
	ScheduleMin time.Duration

	// Redis, when set, is the client the handler's checks and records share
	// round trips on: one before the Twilio request, one after it
	// (roundtrips.go). Nil: each store makes its own.
	Redis redis.UniversalClient
}

// ProcessTask implements asynq.Handler. Every outcome (sent, skipped,
// deferred, failed) is appended to the communications log.
func (h *SMSHandler) ProcessTask(ctx context.Context, t *asynq.Task) error {
	j := &journal{log: h.Comms}
	j.entry.TaskID, _ = asynq.GetTaskID(ctx)
	err := giveUp(ctx, h.process(withJournal(ctx, j), t))
	j.outcome(ctx, h.logger(), err)
	h.countFailure(ctx, t, err) // campaign messages: completions count in writeResult
	return err
}

func (h *SMSHandler) process(ctx context.Context, t *asynq.Task) error {
	h.Metrics.TaskRun(TypeSendSMS)
	r := h.Rules.WithDefaults()
	log := h.logger()
	id, _ := asynq.GetTaskID(ctx)
	log = log.With("task", id)

	var p SMSPayload
	if err := json.Unmarshal(t.Payload(), &p); err != nil {
		h.Metrics.Skipped("invalid")
		log.Error("sms payload undecodable", "err", err)
		return archive("invalid payload: %v", err)
	}
	p, err := p.Normalize(r)
	if err != nil {
		h.Metrics.Skipped("invalid")
		log.Error("sms payload invalid", "err", err)
		return archive("invalid payload: %v", err)
	}
	to := phone.Number(p.To)
	log = log.With("to", to)
	journalOf(ctx).entry.To, journalOf(ctx).entry.From = p.To, p.From

	// From the pool: an earlier run's choice is kept (and is what
	// reconciliation matches); a first choice is made at the slot, below.
	pooled, recorded := h.pooled(p), ""
	if pooled {
		if p.From, recorded, err = h.recordedSender(ctx, id, p.To); err != nil {
			return err
		}
		journalOf(ctx).entry.From = p.From
	}

	lean := h.lean()
	// A task that already reached Twilio never sends again (the lean path
	// reads the ledger in its round trip).
	var done *SMSResult
	if !lean {
		done, err = h.alreadySent(ctx, log, id, p)
	}
	if err != nil {
		return err
	}
	if done != nil {
		return h.writeResult(ctx, t, *done)
	}

	if h.Guard != nil {
		if reason := h.Guard.Refused(p.To); reason != "" {
			log.Warn("sms refused by the fraud guard", "reason", reason)
			return archive("%s", reason)
		}
	}

	now := r.Now()
	if expired(p, now) {
		h.release(ctx, log, id, p, false)
		h.Metrics.Skipped("expired")
		log.Warn("sms expired before it could be sent", "expiresAt", p.ExpiresAt)
		return archive("expired: not sent before %s (validFor %s)", p.ExpiresAt.Format(time.RFC3339), p.ValidFor)
	}

	// A sendAt still ahead: scheduled at Twilio, or left to wait for it.
	if p.SendAt != nil {
		if done, err := h.handOff(ctx, log, t, id, p, now, lean); done {
			return err
		}
	}

	// Quiet hours and consent first: a marketing message that must wait
	// for the morning takes no slot from the sender's limit.
	if done, err := h.checkMarketing(ctx, log, t, p, now); done {
		h.release(ctx, log, id, p, false)
		return err
	}

	if lean {
		if pooled {
			// A canceled campaign's message takes no pool slot either.
			if stop, err := h.campaignCanceled(ctx, log, t, p); stop {
				h.release(ctx, log, id, p, false)
				return err
			}
			if p.From == "" {
				if p.From, err = h.chooseSender(ctx, log, id, recorded, p); err != nil {
					return err
				}
				journalOf(ctx).entry.From = p.From
			}
		}
		return h.processLean(ctx, log, t, id, p, now, pooled)
	}

	// A canceled campaign's message takes no slot from the limits either.
	if stop, err := h.campaignCanceled(ctx, log, t, p); stop {
		h.release(ctx, log, id, p, false)
		return err
	}
	if pooled && p.From == "" {
		if p.From, err = h.chooseSender(ctx, log, id, recorded, p); err != nil {
			return err
		}
		journalOf(ctx).entry.From = p.From
	}
	var slot time.Time // the limiter's decision, recorded with "sending"
	if h.Limiter != nil {
		if slot, err = h.admit(ctx, log, p); err != nil {
			return err
		}
		now = r.Now() // admit may have slept until the message's moment
		if expired(p, now) {
			h.release(ctx, log, id, p, true)
			h.Metrics.Skipped("expired")
			return archive("expired: its rate-limit slot came at %s, after it expired", now.UTC().Format(time.RFC3339))
		}
	}

	// The opt-out check comes immediately before the send, so a STOP that
	// arrived while the task waited is honoured; the fraud guard's velocity
	// check shares its round trip.
	out, blocked, err := preSend(ctx, h.Guard, h.OptOuts, optout.SMS, h.guardCheck(p))
	if err != nil {
		return err // Redis trouble: retry
	}
	if out {
		h.release(ctx, log, id, p, h.Limiter != nil)
		h.Metrics.Skipped("optout")
		log.Info("sms skipped: recipient opted out")
		return h.writeResult(ctx, t, SMSResult{Status: "skipped", Reason: optout.ErrOptedOut.Error()})
	}
	if blocked != "" {
		log.Warn("sms refused by the fraud guard", "reason", blocked)
		return archive("%s", blocked)
	}

	// Campaign canceled? Checked last, right before the send.
	if stop, err := h.campaignCanceled(ctx, log, t, p); stop {
		h.release(ctx, log, id, p, h.Limiter != nil)
		return err
	}

	params := twilioapi.SendParams{To: p.To, From: p.From, Body: p.Body, StatusCallback: StatusCallbackFor(h.StatusCallback, id)}
	if p.ExpiresAt != nil {
		params.ValidityPeriod = p.ExpiresAt.Sub(now)
	}
	if h.Ledger != nil {
		if err := h.Ledger.Begin(ctx, id, p.To, now); err != nil {
			return err // without the record a crash could send twice: retry
		}
	}
	journalOf(ctx).append(ctx, log, commlog.Entry{Event: commlog.Sending, Body: p.Body, Slot: slot})
	sendCtx := ctx
	if q, _ := asynq.GetQueueName(ctx); q == QueueCritical {
		sendCtx = ratelimit.Urgent(ctx) // ahead of this worker's paced bulk requests
	}
	msg, err := h.Messenger.SendSMS(sendCtx, params)
	if err != nil {
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
	if h.Ledger != nil {
		if err := h.Ledger.Commit(ctx, id, p.To, msg.SID); err != nil {
			// The message went. A re-run reconciles and finds it.
			log.Warn("could not record the sent message in the ledger", "sid", msg.SID, "err", err)
		}
	}
	h.Metrics.Sent()
	if pooled {
		h.stick(ctx, log, p)
	}
	log.Info("sms sent", "sid", msg.SID, "status", msg.Status, "segments", msg.NumSegments)
	h.track(ctx, log, id, p, msg)
	created := msg.DateCreated
	if created.IsZero() {
		created = now
	}
	return h.writeResult(ctx, t, SMSResult{MessageSID: msg.SID, Status: msg.Status, DateCreated: created.UTC().Format(time.RFC3339)})
}

// failed decides the fate of a task whose send failed (DESIGN.md's policy).
func (h *SMSHandler) failed(ctx context.Context, log *slog.Logger, p SMSPayload, now time.Time, err error) error {
	var te *twilioapi.Error
	if !errors.As(err, &te) {
		log.Warn("sms send failed; will retry", "err", err)
		return fmt.Errorf("send sms: %w", err)
	}
	if IsFraudCode(te.Code) {
		return h.fraudRefused(ctx, log, p, te)
	}
	switch te.Class {
	case twilioapi.ClassOptedOut:
		if _, aerr := h.OptOuts.Add(ctx, optout.SMS, p.To, optout.SourceTwilio); aerr != nil {
			log.Error("could not record Twilio's opt-out", "err", aerr)
			return fmt.Errorf("record opt-out after %w", te) // retry: the set must learn it
		}
		h.Metrics.Skipped("optout")
		log.Info("sms refused: recipient unsubscribed (21610); added to the opt-out set")
		return archive("recipient opted out (Twilio %d)", te.Code)
	case twilioapi.ClassConfig:
		log.Error("sms refused: Twilio sender or account configuration", "code", te.Code, "err", te.Message)
		return archive("%s", te.Error())
	case twilioapi.ClassBadRecipient, twilioapi.ClassInvalid, twilioapi.ClassNotFound:
		log.Warn("sms refused by Twilio", "code", te.Code, "class", te.Class.String(), "err", te.Message)
		return archive("%s", te.Error())
	case twilioapi.ClassRateLimited:
		wait := te.RetryAfter
		if wait <= 0 {
			wait = RateLimitWaitDefault
		}
		until := now.Add(wait)
		if p.ExpiresAt != nil && until.After(*p.ExpiresAt) {
			h.Metrics.Skipped("expired")
			return archive("expired: Twilio rate limit (%d) would delay it past %s", te.Code, p.ExpiresAt.Format(time.RFC3339))
		}
		h.Metrics.Deferred("twilio")
		h.slowSender(ctx, log, p, until) // the sender's other tasks wait too
		log.Info("sms deferred: Twilio rate limit", "code", te.Code, "wait", wait)
		return &ratelimit.DeferError{Until: until, Reason: te.Error()}
	default: // transient, ambiguous
		log.Warn("sms send failed; will retry", "class", te.Class.String(), "err", te.Message)
		return fmt.Errorf("send sms: %w", te)
	}
}

func (h *SMSHandler) guardCheck(p SMSPayload) GuardCheck {
	return GuardCheck{To: p.To, Source: p.Source, Segments: segment.Analyze(p.Body).Segments, Channel: "sms"}
}

// fraudRefused archives a message Twilio refused as fraud, counting the
// refusal toward its prefix.
func (h *SMSHandler) fraudRefused(ctx context.Context, log *slog.Logger, p SMSPayload, te *twilioapi.Error) error {
	return strike(ctx, log, h.Guard, h.guardCheck(p), te)
}

// alreadySent returns the task's result when the ledger shows that an
// earlier run reached Twilio: with a SID recorded, or found by reconciling an
// attempt whose outcome was lost.
func (h *SMSHandler) alreadySent(ctx context.Context, log *slog.Logger, id string, p SMSPayload) (*SMSResult, error) {
	if h.Ledger == nil || id == "" {
		return nil, nil
	}
	e, err := h.Ledger.Get(ctx, id, p.To)
	if err != nil {
		return nil, err
	}
	return h.settled(ctx, log, id, p, e)
}

// settled is alreadySent for the task's ledger entry e.
func (h *SMSHandler) settled(ctx context.Context, log *slog.Logger, id string, p SMSPayload, e ledger.Entry) (*SMSResult, error) {
	if e.Sent() {
		if res, ok := scheduledResult(p, e); ok {
			log.Info("sms already scheduled at Twilio by an earlier run; not sending again", "sid", e.SID)
			return &res, nil
		}
		log.Info("sms already sent by an earlier run; not sending again", "sid", e.SID)
		// The earlier run may have ended (crash, lease expired) before it
		// started tracking; starting again is harmless.
		h.track(ctx, log, id, p, &twilioapi.Message{SID: e.SID, Status: "sent", DateCreated: e.StartedAt})
		return &SMSResult{MessageSID: e.SID, Status: "sent", DateCreated: e.StartedAt.Format(time.RFC3339)}, nil
	}
	if !e.Pending() {
		return nil, nil
	}
	list, err := h.Messenger.ListMessages(ctx, twilioapi.ListParams{To: p.To, From: p.From, Limit: 200})
	if err != nil {
		return nil, fmt.Errorf("reconcile an earlier attempt: %w", err)
	}
	cands := make([]ledger.Candidate, len(list))
	for i, m := range list {
		cands[i] = ledger.Candidate{SID: m.SID, Created: m.DateCreated,
			Matches: m.Body == p.Body && m.To == p.To && sameSender(m.From, p.From, h.Messenger)}
	}
	sid, err := h.Ledger.Reconcile(ctx, e, cands)
	if err != nil {
		return nil, fmt.Errorf("reconcile an earlier attempt: %w", err)
	}
	if sid == "" {
		log.Info("earlier attempt did not reach Twilio; sending", "attempts", e.Attempts)
		return nil, nil
	}
	h.Metrics.Sent()
	for _, m := range list {
		if m.SID == sid {
			log.Info("earlier attempt reached Twilio; recorded instead of sending again", "sid", sid)
			// A recovered message is followed like any other: delivery
			// record, sms:track, its outcome in the log, redelivery.
			h.track(ctx, log, id, p, &m)
			return &SMSResult{MessageSID: sid, Status: m.Status, DateCreated: m.DateCreated.UTC().Format(time.RFC3339)}, nil
		}
	}
	return nil, nil
}

// release gives the message's rate-limit slots back when it does not go:
// the slot it holds, or (admitted) what admitting it charged, so that the
// sender's and recipient's next message need not wait for it.
func (h *SMSHandler) release(ctx context.Context, log *slog.Logger, id string, p SMSPayload, admitted bool) {
	rel, ok := h.Limiter.(Releaser)
	if !ok || id == "" {
		return
	}
	queue, _ := asynq.GetQueueName(ctx)
	m := LimitMessage(id, queue, p)
	var err error
	if admitted {
		err = rel.Refund(ctx, m)
	} else {
		err = rel.Release(ctx, m)
	}
	if err != nil {
		log.Warn("could not give the rate-limit slot back", "err", err)
	}
}

// track starts following msg to delivery; a failure is logged (the message
// went; a re-run of the task starts it again).
func (h *SMSHandler) track(ctx context.Context, log *slog.Logger, id string, p SMSPayload, msg *twilioapi.Message) {
	queue, _ := asynq.GetQueueName(ctx)
	if err := h.Tracker.Start(ctx, id, queue, p, msg); err != nil {
		log.Warn("delivery tracking not started", "err", err)
	}
}

func expired(p SMSPayload, now time.Time) bool {
	return p.ExpiresAt != nil && !now.Before(*p.ExpiresAt)
}

func (h *SMSHandler) writeResult(ctx context.Context, t *asynq.Task, res SMSResult) error {
	journalOf(ctx).result(ctx, h.logger(), res)
	return h.finish(ctx, t, res)
}

// finish is writeResult once the result's log entry is written.
func (h *SMSHandler) finish(ctx context.Context, t *asynq.Task, res SMSResult) error {
	h.countCompleted(t, res) // campaign messages (campaign.go)
	if w := t.ResultWriter(); w != nil {
		b, _ := json.Marshal(res)
		if _, err := w.Write(b); err != nil {
			// The message went out; losing the result must not send it again.
			h.logger().Warn("could not store task result", "err", err)
		}
	}
	return nil
}

func (h *SMSHandler) logger() *slog.Logger {
	if h.Logger == nil {
		return slog.New(slog.DiscardHandler)
	}
	return h.Logger
}

// sameSender reports whether a message Twilio lists came from the sender this
// task sends from: its own From, or the client's default number. With a
// Messaging Service choosing the number, any sender matches.
func sameSender(listed, from string, client any) bool {
	if from == "" {
		if d, ok := client.(interface{ DefaultFrom() string }); ok {
			from = d.DefaultFrom()
		}
	}
	return from == "" || listed == from
}
