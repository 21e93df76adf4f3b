package main

import (
	"context"
	"errors"

	"github.com/redis/go-redis/v9"

	"github.com/sbagenthub/twilio-worker/pool"
	"github.com/sbagenthub/twilio-worker/ratelimit"
	"github.com/sbagenthub/twilio-worker/tasks"
)

// booker returns the limiter with the limits the workers published, so that
// a message is booked its send slot and scheduled for it (a message without
// a sender against the sender pool's summed rate, when the workers have a
// pool); nil (queue at once, the worker applies the limits) when no worker
// has published any.
func booker(ctx context.Context, rdb redis.UniversalClient) (tasks.Booker, error) {
	l, err := ratelimit.Load(ctx, rdb, ratelimit.Config{})
	if errors.Is(err, ratelimit.ErrNoConfig) {
		return nil, nil
	}
	if err != nil {
		return nil, err
	}
	p, err := pool.Load(ctx, rdb, l)
	if err != nil && !errors.Is(err, pool.ErrNoPool) {
		return nil, err
	}
	return pool.WithPool(l, p), nil
}
