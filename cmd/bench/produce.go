package main

import (
	"context"

	"github.com/hibiken/asynq"
	"github.com/redis/go-redis/v9"

	"github.com/sbagenthub/twilio-worker/producer"
	"github.com/sbagenthub/twilio-worker/tasks"
)

// enqueueSMS queues p through the producer, the path of `enqueue sms` and
// the HTTP API: opts may name the queue and the task id (the key).
func enqueueSMS(ctx context.Context, rdb redis.UniversalClient, client *asynq.Client, b tasks.Booker, p tasks.SMSPayload, r tasks.Rules, opts ...asynq.Option) (producer.Result, error) {
	m := producer.SMS{SMSPayload: p}
	for _, o := range opts {
		switch o.Type() {
		case asynq.QueueOpt:
			m.Queue, _ = o.Value().(string)
		case asynq.TaskIDOpt:
			m.Key, _ = o.Value().(string)
		}
	}
	prod := &producer.Producer{Redis: rdb, Client: client, Booker: b, Rules: r}
	return prod.SendSMS(ctx, m)
}
