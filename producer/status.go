package producer

import (
	"context"
	"encoding/json"
	"errors"
	"fmt"

	"github.com/hibiken/asynq"

	"github.com/sbagenthub/twilio-worker/commlog"
	"github.com/sbagenthub/twilio-worker/ledger"
	"github.com/sbagenthub/twilio-worker/tasks"
)

// ErrUnavailable: the producer lacks what the request needs (no call store).
var ErrUnavailable = errors.New("not available in this process")

// Status is a task's state (tasks.ErrTaskNotFound when no queue holds it).
// A scheduled task's NextRunAt says when it runs.
func (p *Producer) Status(ctx context.Context, id string) (tasks.Status, error) {
	info, err := tasks.Find(p.inspector(), id)
	if err != nil {
		return tasks.Status{}, err
	}
	return tasks.StatusOf(info), nil
}

// Cancel deletes a task that has not started: pending, scheduled (a
// sendAt still ahead), or waiting to retry after a deferral (a rate limit,
// quiet hours) before any attempt, as long as the send ledger shows no
// attempt to reach Twilio. It will not run, its booked rate-limit slots are
// given back, and the log records it as skipped. A task that handed its
// message to Twilio to schedule has it canceled there (Canceler) and goes
// the same way; once Twilio has sent it, ErrStarted. A task that is running,
// done, or whose ledger shows an attempt (it may have been sent) is
// ErrStarted; an unknown one tasks.ErrTaskNotFound.
func (p *Producer) Cancel(ctx context.Context, id string) (tasks.Status, error) {
	info, err := tasks.Find(p.inspector(), id)
	if err != nil {
		return tasks.Status{}, err
	}
	switch info.State {
	case asynq.TaskStatePending, asynq.TaskStateScheduled, asynq.TaskStateRetry:
	default:
		if st, ok, err := p.cancelScheduled(ctx, info); ok {
			return st, err
		}
		return tasks.StatusOf(info), fmt.Errorf("%w: it is %s", ErrStarted, info.State)
	}
	// A task waiting to retry, or one re-queued by a worker's shutdown, may
	// have tried already: only one whose ledger line is empty is unstarted.
	if attempted, err := p.attempted(ctx, info); err != nil {
		return tasks.StatusOf(info), err
	} else if attempted {
		return tasks.StatusOf(info), fmt.Errorf("%w: it is %s after an attempt to send", ErrStarted, info.State)
	}
	if err := p.inspector().DeleteTask(info.Queue, info.ID); err != nil {
		if errors.Is(err, asynq.ErrTaskNotFound) {
			return tasks.Status{}, fmt.Errorf("%w: %s ended meanwhile", tasks.ErrTaskNotFound, id)
		}
		return tasks.StatusOf(info), fmt.Errorf("%w: %v", ErrStarted, err) // it became active meanwhile
	}
	if tasks.ValidKey(id) {
		if err := p.markCanceled(ctx, id); err != nil {
			p.logger().Warn("could not mark the key canceled", "task", id, "err", err)
		}
	}
	st := tasks.StatusOf(info)
	st.State, st.NextRunAt = "canceled", ""
	var payload struct{ To, From, Body string }
	_ = json.Unmarshal(info.Payload, &payload)
	channel := "voice"
	if info.Type == tasks.TypeSendSMS {
		channel = "sms"
		if p.Releaser != nil {
			var sms tasks.SMSPayload
			if json.Unmarshal(info.Payload, &sms) == nil {
				if err := p.Releaser.Release(ctx, tasks.LimitMessage(info.ID, info.Queue, sms)); err != nil {
					p.logger().Warn("could not give a canceled task's slot back", "task", id, "err", err)
				}
			}
		}
	}
	if p.Comms != nil {
		e := commlog.Entry{Event: commlog.Skipped, Channel: channel, TaskID: info.ID, To: payload.To, Reason: "canceled before it ran"}
		if err := p.Comms.Append(ctx, e); err != nil {
			p.logger().Warn("communications log append failed", "err", err)
		}
	}
	return st, nil
}

// attempted reports whether the send ledger shows an attempt of the task
// (sms:send, call:make) to reach Twilio.
func (p *Producer) attempted(ctx context.Context, info *asynq.TaskInfo) (bool, error) {
	if info.Type != tasks.TypeSendSMS && info.Type != tasks.TypeMakeCall {
		return false, nil
	}
	var payload struct{ To string }
	if err := json.Unmarshal(info.Payload, &payload); err != nil || payload.To == "" {
		return true, nil // unreadable: do not guess it is unstarted
	}
	e, err := ledger.New(p.Redis).Get(ctx, info.ID, payload.To)
	if err != nil {
		return false, err
	}
	return e.Attempts > 0 || e.Sent() || e.Pending(), nil
}
