package main

import (
	"context"
	"errors"

	"github.com/redis/go-redis/v9"

	"github.com/sbagenthub/twilio-worker/pool"
	"github.com/sbagenthub/twilio-worker/ratelimit"
	"github.com/sbagenthub/twilio-worker/tasks"
)

// limits returns the limiter with the limits the workers published and the
// booker built on it, so that a message is booked its send slot and
// scheduled for it (a message without a sender against the sender pool's
// summed rate, when the workers have a pool); nil for both (queue at once,
// the worker applies the limits) when no worker has published any.
func limits(ctx context.Context, rdb redis.UniversalClient) (*ratelimit.Limiter, tasks.Booker, error) {
	l, err := ratelimit.Load(ctx, rdb, ratelimit.Config{})
	if errors.Is(err, ratelimit.ErrNoConfig) {
		return nil, nil, nil
	}
	if err != nil {
		return nil, nil, err
	}
	p, err := pool.Load(ctx, rdb, l)
	if err != nil && !errors.Is(err, pool.ErrNoPool) {
		return nil, nil, err
	}
	return l, pool.WithPool(l, p), nil
}
