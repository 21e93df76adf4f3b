package tasks

import (
	"context"
	"errors"
	"fmt"
	"log/slog"
	"time"

	"github.com/hibiken/asynq"

	"github.com/sbagenthub/twilio-worker/phone"
	"github.com/sbagenthub/twilio-worker/pool"
	"github.com/sbagenthub/twilio-worker/ratelimit"
	"github.com/sbagenthub/twilio-worker/twilioapi"
)

// SenderPool chooses the sender of a message that names none
// (SENDER_POOL). *pool.Pool is one.
type SenderPool interface {
	Choose(ctx context.Context, to string) (string, error)
	InRotation(ctx context.Context, n string) (bool, error)
	Stick(ctx context.Context, to, from string) error
	TakeOut(ctx context.Context, n string, code int, reason string, permanent bool) (pool.Out, error)
}

var _ SenderPool = (*pool.Pool)(nil)

// holder is the part of the limiter that tells a task's booked slot.
// *ratelimit.Limiter is one.
type holder interface {
	HoldAt(ctx context.Context, taskID string) (time.Time, bool, error)
}

// recordedSender returns the pool number an earlier run of the task chose
// and must keep (when it reached Twilio, may have, or is still in rotation),
// and the sender recorded at all, which a new choice replaces.
func (h *SMSHandler) recordedSender(ctx context.Context, id, to string) (keep, recorded string, err error) {
	if h.Ledger == nil || id == "" {
		return "", "", nil
	}
	e, err := h.Ledger.Get(ctx, id, to)
	if err != nil {
		return "", "", err
	}
	if e.From == "" {
		return "", "", nil
	}
	if e.Sent() || e.Pending() {
		return e.From, e.From, nil // reconciliation matches this sender
	}
	ok, err := h.Pool.InRotation(ctx, e.From)
	if err != nil {
		return "", "", err
	}
	if ok {
		return e.From, e.From, nil
	}
	return "", e.From, nil // its number left rotation before the send: choose again
}

// chooseSender chooses the pool number for the task once its slot under
// the pool's summed rate has come, so that choices are spaced out in time
// and each sees the numbers as the ones before it left them, and records it
// in the ledger, so a retry or a re-run keeps it. A task that was queued
// without a booking books its slot here first (PoolBooker); a critical
// message chooses at once.
func (h *SMSHandler) chooseSender(ctx context.Context, log *slog.Logger, id, recorded string, p SMSPayload) (string, error) {
	at, held := time.Time{}, false
	if hl, ok := h.Limiter.(holder); ok {
		var err error
		if at, held, err = hl.HoldAt(ctx, id); err != nil {
			return "", fmt.Errorf("check rate limits: %w", err)
		}
	}
	queue, _ := asynq.GetQueueName(ctx)
	if !held && h.PoolBooker != nil && queue != QueueCritical && id != "" {
		d, err := h.PoolBooker.BookSMS(ctx, limitMessage(id, queue, p))
		if err != nil {
			return "", fmt.Errorf("check rate limits: %w", err)
		}
		if d.Late {
			h.Metrics.Skipped("expired")
			return "", archive("expired: %s has no slot before %s", d.Reason(), p.ExpiresAt.Format(time.RFC3339))
		}
		at, held = d.At, true
	}
	if held {
		if wait := time.Until(at); wait > ratelimit.MaxSleepDefault {
			return "", &ratelimit.DeferError{Until: at, Reason: "waiting for the slot booked for this task under the sender pool's rate"}
		}
		if err := sleepUntil(ctx, at); err != nil {
			return "", err
		}
	}
	from, err := h.Pool.Choose(ctx, p.To)
	var none *pool.NoSenderError
	if errors.As(err, &none) {
		h.Metrics.Deferred("pool")
		log.Warn("sms deferred: every number of the sender pool is out of rotation", "until", none.Until)
		return "", &ratelimit.DeferError{Until: none.Until, Reason: none.Error()}
	}
	if err != nil {
		return "", err
	}
	if h.Ledger != nil && id != "" {
		if from, err = h.Ledger.SetFrom(ctx, id, p.To, recorded, from); err != nil {
			return "", err
		}
	}
	log.Debug("sender chosen from the pool", "from", phone.Number(from))
	return from, nil
}

// refusalReason says in words why Twilio refused a pool number.
var refusalReason = map[int]string{
	21212: "not a valid sender number",
	21606: "not an SMS-capable number of the account",
	21611: "its queue of messages is full",
	30034: "not registered for A2P 10DLC",
}

// poolRefused handles Twilio refusing a pool number as the sender: the
// number leaves rotation and the task is deferred to choose another. ok is
// false when err is no such refusal.
func (h *SMSHandler) poolRefused(ctx context.Context, log *slog.Logger, p SMSPayload, now time.Time, err error) (error, bool) {
	var te *twilioapi.Error
	if !errors.As(err, &te) {
		return nil, false
	}
	out, permanent := pool.Refusal(te.Code)
	if !out {
		return nil, false
	}
	from := phone.Number(p.From)
	reason := fmt.Sprintf("Twilio %d: %s", te.Code, refusalReason[te.Code])
	o, terr := h.Pool.TakeOut(ctx, p.From, te.Code, reason, permanent)
	if terr != nil {
		log.Error("could not take the refused sender out of rotation", "from", from, "err", terr)
		return fmt.Errorf("%w (after %w)", terr, te), true // retry: nothing was sent
	}
	if permanent {
		log.Error("sender pool: number out of rotation until restored or the workers restart", "from", from, "code", te.Code)
	} else {
		log.Warn("sender pool: number out of rotation for the cool-down", "from", from, "code", te.Code, "until", o.Until)
	}
	h.Metrics.Deferred("pool")
	return &ratelimit.DeferError{Until: now,
		Reason: fmt.Sprintf("sender %s out of rotation (%s); another number of the pool sends it", from.Masked(), reason)}, true
}

// stick renews the recipient's sticky sender after a send from the pool.
func (h *SMSHandler) stick(ctx context.Context, log *slog.Logger, p SMSPayload) {
	if err := h.Pool.Stick(ctx, p.To, p.From); err != nil {
		log.Warn("sticky sender not recorded", "err", err)
	}
}

// pooled reports whether the message goes from the pool: it names no sender
// and the handler has one.
func (h *SMSHandler) pooled(p SMSPayload) bool { return h.Pool != nil && p.From == "" }
