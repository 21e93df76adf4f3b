package ratelimit

import (
	"context"
	"time"

	"golang.org/x/time/rate"
)

type urgentKey struct{}

// Urgent marks ctx's requests (a critical-queue message: a 2FA code, an
// alert) as going ahead of the paced ones: a busy worker's bulk requests
// queue for their turn, and a code must not wait behind them.
func Urgent(ctx context.Context) context.Context { return context.WithValue(ctx, urgentKey{}, true) }

func urgent(ctx context.Context) bool { v, _ := ctx.Value(urgentKey{}).(bool); return v }

// Pacer paces one process's requests to Twilio: at most RPS requests a
// second (token bucket, golang.org/x/time/rate, bursts of up to RPS) and at
// most Concurrent in flight. It keeps a worker from overrunning Twilio's
// per-account concurrency (429/20429) however many handler slots it has.
// A nil *Pacer does not pace.
type Pacer struct {
	lim *rate.Limiter
	sem chan struct{}
}

// NewPacer returns a Pacer; rps or concurrent <= 0 leave that bound off.
func NewPacer(rps, concurrent int) *Pacer {
	p := &Pacer{}
	if rps > 0 {
		p.lim = rate.NewLimiter(rate.Limit(rps), rps)
	}
	if concurrent > 0 {
		p.sem = make(chan struct{}, concurrent)
	}
	return p
}

// Acquire waits for a turn to send one request and returns the function that
// ends it; it fails only when ctx ends first.
func (p *Pacer) Acquire(ctx context.Context) (release func(), err error) {
	if p == nil {
		return func() {}, nil
	}
	if urgent(ctx) {
		// Charged to the rate (the paced requests wait the longer for it)
		// but not queued, and not held to the concurrency cap: one urgent
		// request in flight more than the cap is the price of no waiting.
		if p.lim != nil {
			p.lim.ReserveN(time.Now(), 1)
		}
		return func() {}, nil
	}
	if p.sem != nil {
		select {
		case p.sem <- struct{}{}:
		case <-ctx.Done():
			return nil, ctx.Err()
		}
	}
	done := func() {
		if p.sem != nil {
			<-p.sem
		}
	}
	if p.lim != nil {
		if err := p.lim.Wait(ctx); err != nil {
			done()
			return nil, err
		}
	}
	return done, nil
}
