package producer

import (
	"context"
	"encoding/json"
	"errors"
	"fmt"
	"time"

	"github.com/hibiken/asynq"
	"github.com/redis/go-redis/v9"

	"github.com/sbagenthub/twilio-worker/commlog"
	"github.com/sbagenthub/twilio-worker/tasks"
)

// SchedulingKey holds what the workers publish for producers about
// Twilio-side scheduling: JSON {"min": "15m0s"}, the TWILIO_SCHEDULE_MIN of
// workers that send through a Messaging Service. Absent: sendAt tasks wait
// in the queue.
const SchedulingKey = "tw:{sched}:config"

type scheduling struct {
	Min string `json:"min"`
}

// PublishScheduling writes min to SchedulingKey (0 deletes it). Every
// worker does this at start; they should share one configuration.
func PublishScheduling(ctx context.Context, rdb redis.Cmdable, min time.Duration) error {
	if min <= 0 {
		if err := rdb.Del(ctx, SchedulingKey).Err(); err != nil {
			return fmt.Errorf("publish scheduling: %w", err)
		}
		return nil
	}
	b, _ := json.Marshal(scheduling{Min: min.String()})
	if err := rdb.Set(ctx, SchedulingKey, b, 0).Err(); err != nil {
		return fmt.Errorf("publish scheduling: %w", err)
	}
	return nil
}

// LoadScheduling reads what PublishScheduling wrote: 0 when no worker
// schedules at Twilio.
func LoadScheduling(ctx context.Context, rdb redis.Cmdable) (time.Duration, error) {
	b, err := rdb.Get(ctx, SchedulingKey).Bytes()
	if errors.Is(err, redis.Nil) {
		return 0, nil
	}
	if err != nil {
		return 0, fmt.Errorf("read scheduling: %w", err)
	}
	var s scheduling
	if err := json.Unmarshal(b, &s); err != nil {
		return 0, fmt.Errorf("read scheduling: %w", err)
	}
	d, err := time.ParseDuration(s.Min)
	if err != nil {
		return 0, fmt.Errorf("read scheduling: min %q: %w", s.Min, err)
	}
	return d, nil
}

// handOff prepares an sms:send whose sendAt Twilio is to schedule: the
// payload carries sendAt, the task runs now, and its result (the SID a
// cancel needs) is kept until RESULT_TTL after sendAt.
func (p *Producer) handOff(req *Request) (opts []asynq.Option, ok bool) {
	if req.Type != tasks.TypeSendSMS || req.SendAt.IsZero() || !tasks.HandsOff(*req.SMS, req.SendAt, time.Now(), p.ScheduleMin) {
		return nil, false
	}
	at := req.SendAt.UTC()
	req.SMS.SendAt = &at
	r := p.Rules.WithDefaults()
	return []asynq.Option{asynq.Retention(r.ResultTTL + time.Until(at))}, true
}

// cancelScheduled cancels at Twilio the message of a task that handed it
// over (its result says "scheduled"); ok is false for any other task.
func (p *Producer) cancelScheduled(ctx context.Context, info *asynq.TaskInfo) (st tasks.Status, ok bool, err error) {
	st = tasks.StatusOf(info)
	if info.Type != tasks.TypeSendSMS || info.State != asynq.TaskStateCompleted {
		return st, false, nil
	}
	var res tasks.SMSResult
	if json.Unmarshal(info.Result, &res) != nil || res.Status != tasks.StatusScheduled {
		return st, false, nil
	}
	if p.Canceler == nil {
		return st, true, fmt.Errorf("%w: task %s is scheduled at Twilio (%s); canceling it needs Twilio's credentials (TWILIO_ACCOUNT_SID and TWILIO_AUTH_TOKEN, or cancel through the worker's DELETE /v1/tasks/{id})",
			ErrUnavailable, info.ID, res.MessageSID)
	}
	if err := tasks.CancelScheduled(ctx, p.Canceler, res); err != nil {
		if errors.Is(err, tasks.ErrNotScheduled) {
			st.State = "no longer scheduled at Twilio"
			return st, true, fmt.Errorf("%w: Twilio has sent it (%v)", ErrStarted, err)
		}
		return st, true, err
	}
	// Canceled at Twilio: the task goes as a canceled one does.
	if err := p.inspector().DeleteTask(info.Queue, info.ID); err != nil && !errors.Is(err, asynq.ErrTaskNotFound) {
		p.logger().Warn("could not delete the canceled task", "task", info.ID, "err", err)
	}
	if tasks.ValidKey(info.ID) {
		if err := p.markCanceled(ctx, info.ID); err != nil {
			p.logger().Warn("could not mark the key canceled", "task", info.ID, "err", err)
		}
	}
	var payload tasks.SMSPayload
	_ = json.Unmarshal(info.Payload, &payload)
	if p.Comms != nil {
		e := commlog.Entry{Event: commlog.Skipped, Channel: "sms", TaskID: info.ID, To: payload.To, SID: res.MessageSID,
			Reason: "canceled at Twilio before its sendAt"}
		if err := p.Comms.Append(ctx, e); err != nil {
			p.logger().Warn("communications log append failed", "err", err)
		}
	}
	st.State, st.NextRunAt = "canceled", ""
	return st, true, nil
}
