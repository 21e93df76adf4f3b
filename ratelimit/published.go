package ratelimit

import (
	"context"
	"encoding/json"
	"errors"
	"fmt"

	"github.com/redis/go-redis/v9"
)

// ErrNoConfig is returned by Load when no worker has published its limits.
var ErrNoConfig = errors.New("no worker has published its rate limits yet")

// published is the limits as the worker publishes them to tw:{rl}:config, so
// that producers book slots with the worker's own limits and default sender.
type published struct {
	Sender      string            `json:"sender,omitempty"`
	Senders     map[string]string `json:"senders,omitempty"`
	Recipient   string            `json:"recipient,omitempty"`
	Call        string            `json:"call,omitempty"`
	DefaultFrom string            `json:"defaultFrom,omitempty"`
}

func rateText(r Rate) string {
	if r.N == 0 {
		return ""
	}
	return r.String()
}

func parseOptional(s string) (Rate, error) {
	if s == "" {
		return Rate{}, nil
	}
	return ParseRate(s)
}

// Publish writes the limiter's limits to tw:{rl}:config. Every worker does this
// at start; they should share one configuration, since they share the limits.
func (l *Limiter) Publish(ctx context.Context, rdb redis.Cmdable) error {
	p := published{Sender: rateText(l.cfg.Sender), Recipient: rateText(l.cfg.Recipient),
		Call: rateText(l.cfg.Call), DefaultFrom: l.cfg.DefaultFrom}
	if len(l.cfg.Senders) > 0 {
		p.Senders = map[string]string{}
		for k, r := range l.cfg.Senders {
			p.Senders[k] = rateText(r)
		}
	}
	b, _ := json.Marshal(p)
	if err := rdb.Set(ctx, key(l.cfg.Prefix, "config"), b, 0).Err(); err != nil {
		return fmt.Errorf("publish rate limits: %w", err)
	}
	return nil
}

// Load returns a Limiter with the limits a worker published (ErrNoConfig
// when none has). base supplies what is not published (Prefix, Now,
// MaxSleep).
func Load(ctx context.Context, rdb redis.UniversalClient, base Config) (*Limiter, error) {
	base = base.WithDefaults()
	b, err := rdb.Get(ctx, key(base.Prefix, "config")).Bytes()
	if errors.Is(err, redis.Nil) {
		return nil, ErrNoConfig
	}
	if err != nil {
		return nil, fmt.Errorf("read rate limits: %w", err)
	}
	var p published
	if err := json.Unmarshal(b, &p); err != nil {
		return nil, fmt.Errorf("read rate limits: %w", err)
	}
	cfg := base
	cfg.DefaultFrom = p.DefaultFrom
	var errs []error
	for _, f := range []struct {
		dst *Rate
		s   string
	}{{&cfg.Sender, p.Sender}, {&cfg.Recipient, p.Recipient}, {&cfg.Call, p.Call}} {
		r, err := parseOptional(f.s)
		errs = append(errs, err)
		*f.dst = r
	}
	cfg.Senders = map[string]Rate{}
	for k, s := range p.Senders {
		r, err := parseOptional(s)
		errs = append(errs, err)
		cfg.Senders[k] = r
	}
	if err := errors.Join(errs...); err != nil {
		return nil, fmt.Errorf("published rate limits: %w", err)
	}
	return New(rdb, cfg), nil
}
