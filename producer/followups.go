package producer

import (
	"context"
	"errors"
	"fmt"
	"sync"

	"github.com/hibiken/asynq"
	"github.com/redis/go-redis/v9"

	"github.com/sbagenthub/twilio-worker/tasks"
)

// FollowUps queues the tasks the worker's handlers schedule themselves: a
// message's delivery poll (sms:track) and its redelivery (an sms:send under
// an internal id), a call's poll (call:poll). They come from a task already
// queued through the Producer, not from a client: no key is claimed and
// nothing is booked or logged as queued here. Each carries its own task id;
// one already taken is the follow-up already queued, and no error.
type FollowUps struct {
	Redis redis.UniversalClient
	// Client is made on Redis when nil.
	Client *asynq.Client

	once sync.Once
}

var _ tasks.FollowUps = (*FollowUps)(nil)

// followUpTypes are the task types a handler may queue itself.
var followUpTypes = map[string]bool{tasks.TypeTrackSMS: true, tasks.TypePollCall: true, tasks.TypeSendSMS: true}

// FollowUp queues t (with the options it was made with).
func (f *FollowUps) FollowUp(ctx context.Context, t *asynq.Task) error {
	if !followUpTypes[t.Type()] {
		return fmt.Errorf("producer: %s is not a follow-up task", t.Type())
	}
	f.once.Do(func() {
		if f.Client == nil {
			f.Client = asynq.NewClientFromRedisClient(f.Redis)
		}
	})
	if f.Client == nil {
		return errors.New("producer: follow-ups need Redis")
	}
	_, err := f.Client.EnqueueContext(ctx, t)
	if err != nil && !errors.Is(err, asynq.ErrTaskIDConflict) {
		return fmt.Errorf("enqueue %s: %w", t.Type(), err)
	}
	return nil
}
