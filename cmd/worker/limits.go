package main

import (
	"context"
	"log/slog"

	"github.com/redis/go-redis/v9"

	"github.com/sbagenthub/twilio-worker/ratelimit"
	"github.com/sbagenthub/twilio-worker/twilioapi"
)

// newLimiter builds the shared rate limiter from the configuration and
// publishes its limits to Redis (tw:rl:config), where producers (enqueue,
// the HTTP API) read them to book each message's slot at enqueue time.
func newLimiter(ctx context.Context, rdb redis.UniversalClient, cfg Config, tw twilioapi.Config, log *slog.Logger) (*ratelimit.Limiter, error) {
	defaultFrom := tw.PhoneNumber
	if defaultFrom == "" {
		defaultFrom = tw.MessagingServiceSID
	}
	l := ratelimit.New(rdb, ratelimit.Config{
		Sender: cfg.SenderRate, Senders: cfg.SenderRates, Recipient: cfg.RecipientRate, Call: cfg.CallRate,
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
