package pool

import (
	"context"
	"encoding/json"
	"errors"
	"fmt"
	"time"

	"github.com/redis/go-redis/v9"

	"github.com/sbagenthub/twilio-worker/ratelimit"
)

// ErrNoPool is returned by Load when no worker has published a pool.
var ErrNoPool = errors.New("no worker has published a sender pool")

// published is the pool as workers publish it to tw:{pool}:config.
type published struct {
	Numbers   []string `json:"numbers"`
	StickyFor string   `json:"stickyFor"`
	Cooldown  string   `json:"cooldown"`
}

// Publish writes the pool's numbers to tw:{pool}:config for producers and
// the enqueue command; a worker without a pool clears it (Unpublish).
func (p *Pool) Publish(ctx context.Context) error {
	b, _ := json.Marshal(published{Numbers: p.cfg.Numbers, StickyFor: p.cfg.StickyFor.String(), Cooldown: p.cfg.Cooldown.String()})
	if err := p.rdb.Set(ctx, configKey, b, 0).Err(); err != nil {
		return fmt.Errorf("publish the sender pool: %w", err)
	}
	return nil
}

// Unpublish removes a published pool: a worker started without SENDER_POOL
// says so, and producers stop booking against one.
func Unpublish(ctx context.Context, rdb redis.UniversalClient) error {
	if err := rdb.Del(ctx, configKey).Err(); err != nil {
		return fmt.Errorf("clear the sender pool: %w", err)
	}
	return nil
}

// Load returns the pool a worker published (ErrNoPool when none did), with
// rates and slots from slots.
func Load(ctx context.Context, rdb redis.UniversalClient, slots Slots) (*Pool, error) {
	b, err := rdb.Get(ctx, configKey).Bytes()
	if errors.Is(err, redis.Nil) {
		return nil, ErrNoPool
	}
	if err != nil {
		return nil, fmt.Errorf("read the sender pool: %w", err)
	}
	var pub published
	if err := json.Unmarshal(b, &pub); err != nil {
		return nil, fmt.Errorf("read the sender pool: %w", err)
	}
	cfg := Config{Numbers: pub.Numbers}
	cfg.StickyFor, _ = time.ParseDuration(pub.StickyFor)
	cfg.Cooldown, _ = time.ParseDuration(pub.Cooldown)
	if err := cfg.Validate(); err != nil {
		return nil, fmt.Errorf("published sender pool: %w", err)
	}
	return New(rdb, slots, cfg), nil
}

// Booker books a message's send slot before its task is queued; the shape
// of tasks.Booker (*ratelimit.Limiter is one).
type Booker interface {
	BookSMS(ctx context.Context, m ratelimit.Message) (ratelimit.Decision, error)
}

// WithPool is the pool's part of enqueueing: it returns b so that a message
// that names no sender (it will go from the pool) is booked against the
// summed rate of the numbers it may go from, the numbers in rotation in the
// recipient's country (or all in rotation when the pool has none there),
// under the key "pool:{country}". Messages that name their sender are
// booked as before. p nil or b nil: b unchanged.
func WithPool(b Booker, p *Pool) Booker {
	if p == nil || b == nil {
		return b
	}
	return &booker{next: b, pool: p}
}

type booker struct {
	next Booker
	pool *Pool
}

func (b *booker) BookSMS(ctx context.Context, m ratelimit.Message) (ratelimit.Decision, error) {
	if m.From != "" {
		return b.next.BookSMS(ctx, m)
	}
	g, err := b.pool.Group(ctx, m.To)
	if err != nil {
		return ratelimit.Decision{}, err
	}
	if g.Rate.N == 0 {
		// Every number is out of rotation: nothing to book against; the
		// handler waits for one.
		return ratelimit.Decision{At: b.pool.cfg.Now(), Late: false}, nil
	}
	m.From, m.Rate = g.Key, g.Rate
	return b.next.BookSMS(ctx, m)
}

// Group is the numbers a message to a recipient may go from and their
// summed rate.
type Group struct {
	Key     string // "pool:US", or "pool:*" for the whole pool
	Numbers []string
	Rate    ratelimit.Rate // the sum, per hour; N == 0 when no number is in rotation
}

// Group returns the numbers in rotation that a message to to may go from.
func (p *Pool) Group(ctx context.Context, to string) (Group, error) {
	out, err := p.cachedOuts(ctx)
	if err != nil {
		return Group{}, err
	}
	region := Country(to)
	var all, country []string
	for _, n := range p.cfg.Numbers {
		if _, gone := out[n]; gone {
			continue
		}
		all = append(all, n)
		if p.countries[n] == region {
			country = append(country, n)
		}
	}
	g := Group{Key: "pool:" + region, Numbers: country}
	if len(country) == 0 {
		g = Group{Key: "pool:*", Numbers: all}
	}
	g.Rate = p.sum(g.Numbers)
	return g, nil
}

// sum is the numbers' summed rate, as events per hour (exact for rates per
// second, minute or hour). An unlimited number makes the sum unlimited
// (N == 0 with numbers), which books nothing.
func (p *Pool) sum(ns []string) ratelimit.Rate {
	var perHour int
	for _, n := range ns {
		r := p.slots.SenderRate(n)
		if r.N == 0 {
			return ratelimit.Rate{}
		}
		perHour += r.N * int(time.Hour/r.Per)
	}
	if perHour == 0 {
		return ratelimit.Rate{}
	}
	return ratelimit.Rate{N: perHour, Per: time.Hour, Burst: 1}
}
