package tasks

import (
	"context"
	"encoding/json"
	"fmt"
	"log/slog"
	"time"

	"github.com/google/uuid"
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

// limitMessage is p as the limiter sees it.
func limitMessage(taskID, queue string, p SMSPayload) ratelimit.Message {
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
	m := limitMessage(id, queue, p)
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

// EnqueueSMS validates p and queues it: the producer path of the enqueue
// command, the HTTP API and Go producers.
//
// With a Booker, a message for the default or bulk queue is booked its send
// slot under the worker's limits first and scheduled for that moment, so
// that its handler runs once however long the sender's backlog is (booking
// in the handler instead would run every backlogged task twice: once to
// book, once to send). Messages for the critical queue are not booked: their
// handler sends them ahead of the booked ones, within the limits. Neither are
// tasks the caller schedules itself (ProcessAt, ProcessIn).
//
// Booking is first come, first served per sender: a default-queue message
// queued behind a large campaign on the same sender waits its turn, so
// campaigns should have their own sender (or be queued in chunks), and
// urgent messages go to the critical queue.
func EnqueueSMS(ctx context.Context, c *asynq.Client, b Booker, p SMSPayload, r Rules, opts ...asynq.Option) (*asynq.TaskInfo, error) {
	queue, id, scheduled := QueueDefault, "", false
	for _, o := range opts {
		switch o.Type() {
		case asynq.QueueOpt:
			queue, _ = o.Value().(string)
		case asynq.TaskIDOpt:
			id, _ = o.Value().(string)
		case asynq.ProcessAtOpt, asynq.ProcessInOpt:
			scheduled = true
		}
	}
	book := b != nil && queue != QueueCritical && !scheduled
	if book && id == "" {
		id = uuid.NewString() // the booking is kept under the task's id
		opts = append(opts, asynq.TaskID(id))
	}
	task, err := NewSendSMSTask(p, r, opts...)
	if err != nil {
		return nil, err
	}
	if !book {
		return c.EnqueueContext(ctx, task)
	}
	var norm SMSPayload
	if err := json.Unmarshal(task.Payload(), &norm); err != nil {
		return nil, fmt.Errorf("decode sms payload: %w", err)
	}
	d, err := b.BookSMS(ctx, limitMessage(id, queue, norm))
	if err != nil {
		return nil, err
	}
	// A slot after the message expires is not booked: the task is queued
	// now and its handler archives it as expired, or sends it if the
	// sender's backlog has cleared by then.
	var at []asynq.Option
	if !d.Late && d.At.After(time.Now()) {
		at = append(at, asynq.ProcessAt(d.At))
	}
	return c.EnqueueContext(ctx, task, at...)
}
