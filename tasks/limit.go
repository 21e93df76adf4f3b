package tasks

import (
	"context"
	"fmt"
	"log/slog"
	"time"

	"github.com/hibiken/asynq"

	"github.com/sbagenthub/twilio-worker/ratelimit"
	"github.com/sbagenthub/twilio-worker/segment"
)

// Limiter is the rate limiter as the handlers need it. *ratelimit.Limiter is one.
type Limiter interface {
	AdmitSMS(ctx context.Context, m ratelimit.Message) (ratelimit.Decision, error)
	SlowSender(ctx context.Context, from string, until time.Time) error
}

// Booker books a message's send slot before its task is queued.
// *ratelimit.Limiter is one.
type Booker interface {
	BookSMS(ctx context.Context, m ratelimit.Message) (ratelimit.Decision, error)
}

// Releaser gives back a message's rate-limit slots when it does not go.
// *ratelimit.Limiter is one.
type Releaser interface {
	// Release gives back the slot the task holds (not yet sent).
	Release(ctx context.Context, m ratelimit.Message) error
	// Refund gives back what admitting the message charged.
	Refund(ctx context.Context, m ratelimit.Message) error
}

// LimitMessage is p as the limiter sees it, for task taskID on queue.
func LimitMessage(taskID, queue string, p SMSPayload) ratelimit.Message {
	m := ratelimit.Message{TaskID: taskID, From: p.From, To: p.To, Segments: segment.Count(p.Body),
		First: queue == QueueCritical}
	if p.ExpiresAt != nil {
		m.NotAfter = *p.ExpiresAt
	}
	return m
}

// admit waits for the message's moment under the rate limits: it returns
// the limiter's decision time once the message may be sent (after sleeping
// until then, at most the limiter's MaxSleep), or the error that decides the
// task's fate: a *DeferError for its reserved slot, or an archive when the
// slot would come after the message expires.
func (h *SMSHandler) admit(ctx context.Context, log *slog.Logger, p SMSPayload) (time.Time, error) {
	id, _ := asynq.GetTaskID(ctx)
	queue, _ := asynq.GetQueueName(ctx)
	m := LimitMessage(id, queue, p)
	for asked := 0; ; asked++ {
		d, err := h.Limiter.AdmitSMS(ctx, m)
		if err != nil {
			return time.Time{}, fmt.Errorf("check rate limits: %w", err) // Redis trouble: retry
		}
		switch {
		case d.Late:
			h.Metrics.Skipped("expired")
			log.Warn("sms expired: the rate limit has no slot before it expires", "limit", d.Reason(), "slot", d.At)
			return time.Time{}, archive("expired: %s has no slot before %s", d.Reason(), p.ExpiresAt.Format(time.RFC3339))
		case d.Soon && asked == 0:
			// Woken a little before its slot: wait for it, then ask again.
			if err := sleepUntil(ctx, d.At); err != nil {
				return time.Time{}, err
			}
			continue
		case !d.Go:
			if d.Scope != "" {
				h.Metrics.Deferred(d.Scope)
			}
			log.Info("sms deferred by a rate limit", "limit", d.Reason(), "until", d.At)
			return time.Time{}, d.Err()
		}
		return d.At, sleepUntil(ctx, d.At)
	}
}

func sleepUntil(ctx context.Context, at time.Time) error {
	wait := time.Until(at)
	if wait <= 0 {
		return nil
	}
	t := time.NewTimer(wait)
	defer t.Stop()
	select {
	case <-t.C:
		return nil
	case <-ctx.Done():
		return ctx.Err()
	}
}

// slowSender tells the limiter that Twilio asked this message's sender to
// wait until until, so the sender's other tasks wait too.
func (h *SMSHandler) slowSender(ctx context.Context, log *slog.Logger, p SMSPayload, until time.Time) {
	if h.Limiter == nil {
		return
	}
	if err := h.Limiter.SlowSender(ctx, p.From, until); err != nil {
		log.Warn("could not slow the sender down", "err", err)
	}
}
