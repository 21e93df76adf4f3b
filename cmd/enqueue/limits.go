package main

import (
	"context"
	"errors"

	"github.com/redis/go-redis/v9"

	"github.com/sbagenthub/twilio-worker/ratelimit"
)

// limiter returns the limiter with the limits the workers published, so that
// a message is booked its send slot and scheduled for it; nil (queue at
// once, the worker applies the limits) when no worker has published any.
func limiter(ctx context.Context, rdb redis.UniversalClient) (*ratelimit.Limiter, error) {
	l, err := ratelimit.Load(ctx, rdb, ratelimit.Config{})
	if errors.Is(err, ratelimit.ErrNoConfig) {
		return nil, nil
	}
	if err != nil {
		return nil, err
	}
	return l, nil
}
