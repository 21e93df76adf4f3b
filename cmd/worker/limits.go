package main

import (
	"context"
	"log/slog"
	"maps"

	"github.com/redis/go-redis/v9"

	"github.com/sbagenthub/twilio-worker/pool"
	"github.com/sbagenthub/twilio-worker/ratelimit"
	"github.com/sbagenthub/twilio-worker/twilioapi"
)

// newLimiter builds the shared rate limiter from the configuration and
// publishes its limits to Redis (tw:{rl}:config), where producers (enqueue,
// the HTTP API) read them to book each message's slot at enqueue time.
func newLimiter(ctx context.Context, rdb redis.UniversalClient, cfg Config, tw twilioapi.Config, log *slog.Logger) (*ratelimit.Limiter, error) {
	defaultFrom := tw.PhoneNumber
	if defaultFrom == "" {
		defaultFrom = tw.MessagingServiceSID
	}
	senders := cfg.SenderRates
	if cfg.ServiceRate.N > 0 && tw.MessagingServiceSID != "" {
		// The Messaging Service is the sender of messages that name none.
		senders = maps.Clone(senders)
		if senders == nil {
			senders = map[string]ratelimit.Rate{}
		}
		senders[tw.MessagingServiceSID] = cfg.ServiceRate
	}
	l := ratelimit.New(rdb, ratelimit.Config{
		Sender: cfg.SenderRate, Senders: senders, Recipient: cfg.RecipientRate, Call: cfg.CallRate,
		DefaultFrom: defaultFrom,
	})
	if err := l.Publish(ctx, rdb); err != nil {
		return nil, err
	}
	log.Info("rate limits", "sender", cfg.SenderRate.String(), "senderOverrides", len(cfg.SenderRates),
		"recipient", cfg.RecipientRate.String(), "call", cfg.CallRate.String(),
		"twilioMaxRPS", cfg.TwilioMaxRPS, "twilioMaxConcurrent", cfg.TwilioMaxConc)
	return l, nil
}

// newPool builds the sender pool (nil without SENDER_POOL): numbers out of
// rotation for good come back, and the pool is published for producers. A
// worker without a pool withdraws a published one.
func newPool(ctx context.Context, rdb redis.UniversalClient, cfg Config, l *ratelimit.Limiter, log *slog.Logger) (*pool.Pool, error) {
	if len(cfg.Pool.Numbers) == 0 {
		return nil, pool.Unpublish(ctx, rdb)
	}
	p := pool.New(rdb, l, cfg.Pool)
	if err := p.Start(ctx); err != nil {
		return nil, err
	}
	log.Info("sender pool", "numbers", len(cfg.Pool.Numbers), "stickyFor", p.Config().StickyFor.String(),
		"cooldown", p.Config().Cooldown.String())
	return p, nil
}
