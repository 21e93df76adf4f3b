package main

import (
	"context"
	"fmt"

	"github.com/hibiken/asynq"
	"github.com/redis/go-redis/v9"

	"github.com/sbagenthub/twilio-worker/tasks"
)

// memory: Redis bytes per pending task, from INFO used_memory before and
// after queuing N: sms:send through the producer (producer.SendSMS) (with the slot booking
// a worker's published limits ask for) against bare asynq tasks with the
// payload {} and no options.
func memory(ctx context.Context, e *env) (result, error) {
	n := 10000
	if e.short {
		n = 2000
	}
	tg, err := e.redis(ctx)
	if err != nil {
		return result{}, err
	}
	defer tg.close()
	rdb := tg.rdb
	client := asynq.NewClientFromRedisClient(rdb)

	bare, err := bytesPerTask(ctx, rdb, n, func(int) error {
		_, err := client.EnqueueContext(ctx, asynq.NewTask(typeNoop, []byte("{}")))
		return err
	})
	if err != nil {
		return result{}, fmt.Errorf("bare asynq: %w", err)
	}
	if err := flush(ctx, rdb); err != nil {
		return result{}, err
	}
	booker, err := publishUnbound(ctx, rdb)
	if err != nil {
		return result{}, err
	}
	client = asynq.NewClientFromRedisClient(rdb)
	ours, err := bytesPerTask(ctx, rdb, n, func(i int) error {
		_, err := enqueueSMS(ctx, rdb, client, booker, smsPayload(i, ""), tasks.Rules{})
		return err
	})
	if err != nil {
		return result{}, err
	}
	size, err := payloadSize("")
	if err != nil {
		return result{}, err
	}
	return result{Figures: []figure{
		{Name: "tasks", Value: float64(n)},
		{Name: "sms:send payload", Value: float64(size), Unit: "B"},
		versus(figure{Name: "Redis per pending sms:send vs bare asynq task", Value: ours, Unit: "B"}, bare),
	}}, nil
}

// bytesPerTask is the growth of used_memory per task over n calls of
// enqueue from 16 goroutines.
func bytesPerTask(ctx context.Context, rdb redis.UniversalClient, n int, enqueue func(i int) error) (float64, error) {
	before, err := usedMemory(ctx, rdb)
	if err != nil {
		return 0, err
	}
	if err := parallel(ctx, n, producers, enqueue); err != nil {
		return 0, err
	}
	after, err := usedMemory(ctx, rdb)
	if err != nil {
		return 0, err
	}
	return float64(after-before) / float64(n), nil
}
