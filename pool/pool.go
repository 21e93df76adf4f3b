// Package pool makes several sender numbers act as one sender (SENDER_POOL):
// a message that names no sender gets one of the pool's numbers, chosen once
// when its task first runs and kept for every retry and re-run.
//
// The choice, in order: the recipient's sticky sender (the number it got
// last, kept STICKY_FOR and renewed on each send) while that number is in
// rotation; else a number in the recipient's country (for NANP, one in the
// recipient's area code unless it is much further behind the others) whose
// next free slot under its own rate limit is soonest; a recipient in a
// country the pool has no number for gets the least-loaded number of all.
//
// A number Twilio refuses as a sender leaves rotation: 21212, 21606 and
// 30034 until the workers restart or an operator restores it, 21611 (its
// queue is full) for the cool-down (POOL_COOLDOWN). Messages that chose it
// and have not reached Twilio choose again.
//
// Producers book a pooled message's slot against the summed rate of the
// numbers it may go from ([WithPool]); the handler then admits it on the
// number it chose, so each number's own limit holds in every second.
//
// Keys share the hash tag {pool}: tw:{pool}:sticky:{to}, tw:{pool}:out,
// tw:{pool}:config (see the key functions).
package pool

import (
	"context"
	"encoding/json"
	"errors"
	"fmt"
	"slices"
	"strings"
	"sync"
	"time"

	"github.com/nyaruka/phonenumbers"
	"github.com/redis/go-redis/v9"

	"github.com/sbagenthub/twilio-worker/phone"
	"github.com/sbagenthub/twilio-worker/ratelimit"
)

// Defaults of Config.
const (
	// StickyForDefault is how long a recipient keeps its sender (STICKY_FOR).
	StickyForDefault = 720 * time.Hour
	// CooldownDefault is how long a number whose queue is full (21611) stays
	// out of rotation (POOL_COOLDOWN).
	CooldownDefault = 10 * time.Minute
	// AreaSlackDefault is how much later than the country's soonest number a
	// number in the recipient's own area code may be free and still be
	// preferred; further behind, the country's soonest wins.
	AreaSlackDefault = 5 * time.Second
	// RetryDefault is when a message waits for a number when every number of
	// the pool is out of rotation for good (until one is restored).
	RetryDefault = time.Minute
)

// Key names: every key of the package shares the hash tag {pool}.
func stickyKey(to string) string { return "tw:{pool}:sticky:" + to }

const (
	outKey    = "tw:{pool}:out"
	configKey = "tw:{pool}:config"
)

// Slots is the rate limiter as the pool needs it. *ratelimit.Limiter is one.
type Slots interface {
	NextSlots(ctx context.Context, senders []string) ([]time.Time, error)
	Pick(ctx context.Context, senders []string, preferred []bool, slack time.Duration) (int, time.Time, error)
	SenderRate(from string) ratelimit.Rate
}

var _ Slots = (*ratelimit.Limiter)(nil)

// Config is a pool's settings. Zero durations mean the defaults.
type Config struct {
	Numbers   []string      // SENDER_POOL, E.164
	StickyFor time.Duration // STICKY_FOR
	Cooldown  time.Duration // POOL_COOLDOWN
	AreaSlack time.Duration // AreaSlackDefault
	Now       func() time.Time
}

// WithDefaults fills zero fields.
func (c Config) WithDefaults() Config {
	if c.StickyFor <= 0 {
		c.StickyFor = StickyForDefault
	}
	if c.Cooldown <= 0 {
		c.Cooldown = CooldownDefault
	}
	if c.AreaSlack <= 0 {
		c.AreaSlack = AreaSlackDefault
	}
	if c.Now == nil {
		c.Now = time.Now
	}
	return c
}

// Validate checks the numbers: each a valid E.164 number, none twice.
func (c Config) Validate() error {
	if len(c.Numbers) == 0 {
		return errors.New("SENDER_POOL: no numbers")
	}
	seen := map[string]bool{}
	for _, n := range c.Numbers {
		if p, err := phone.Parse(n, ""); err != nil || p.String() != n {
			return fmt.Errorf("SENDER_POOL: %s is not an E.164 number", phone.Mask(n))
		}
		if seen[n] {
			return fmt.Errorf("SENDER_POOL: %s is listed twice", phone.Number(n).Masked())
		}
		seen[n] = true
	}
	return nil
}

// Parse reads SENDER_POOL: numbers separated by commas, each normalised to
// E.164 (national numbers need region).
func Parse(s, region string) ([]string, error) {
	var out []string
	for i, item := range strings.Split(s, ",") {
		item = strings.TrimSpace(item)
		if item == "" {
			continue
		}
		n, err := phone.Parse(item, region)
		if err != nil {
			return nil, fmt.Errorf("number %d: %w", i+1, err)
		}
		if slices.Contains(out, n.String()) {
			return nil, fmt.Errorf("number %d (%s) is listed twice", i+1, n.Masked())
		}
		out = append(out, n.String())
	}
	if len(out) == 0 {
		return nil, errors.New("no numbers")
	}
	return out, nil
}

// Pool is a set of sender numbers in Redis.
type Pool struct {
	rdb       redis.UniversalClient
	slots     Slots
	cfg       Config
	countries map[string]string // number → Country, worked out once

	mu       sync.Mutex
	outCache map[string]Out
	outAt    time.Time
}

// New returns the pool of cfg.Numbers, whose rates and slots come from slots.
func New(rdb redis.UniversalClient, slots Slots, cfg Config) *Pool {
	p := &Pool{rdb: rdb, slots: slots, cfg: cfg.WithDefaults(), countries: map[string]string{}}
	for _, n := range p.cfg.Numbers {
		p.countries[n] = Country(n)
	}
	return p
}

// Numbers returns the pool's numbers in their configured order.
func (p *Pool) Numbers() []string { return slices.Clone(p.cfg.Numbers) }

// Has reports whether n is one of the pool's numbers.
func (p *Pool) Has(n string) bool { return slices.Contains(p.cfg.Numbers, n) }

// Config returns the pool's configuration.
func (p *Pool) Config() Config { return p.cfg }

// Out is why a number is out of rotation.
type Out struct {
	Code   int       `json:"code"`
	Reason string    `json:"reason"`
	Since  time.Time `json:"since"`
	// Until is when it comes back by itself; zero: not before the workers
	// restart or an operator restores it.
	Until time.Time `json:"until,omitzero"`
}

// Permanent reports whether the number stays out until restored.
func (o Out) Permanent() bool { return o.Until.IsZero() }

func (o Out) active(now time.Time) bool { return o.Permanent() || now.Before(o.Until) }

// outs reads the numbers out of rotation now.
func (p *Pool) outs(ctx context.Context) (map[string]Out, error) {
	m, err := p.rdb.HGetAll(ctx, outKey).Result()
	if err != nil {
		return nil, fmt.Errorf("read the sender pool's health: %w", err)
	}
	return p.activeOuts(m), nil
}

func (p *Pool) activeOuts(m map[string]string) map[string]Out {
	now := p.cfg.Now()
	out := map[string]Out{}
	for n, v := range m {
		var o Out
		if json.Unmarshal([]byte(v), &o) == nil && o.active(now) {
			out[n] = o
		}
	}
	return out
}

// cachedOuts is outs, at most a second old: producers read it per booking.
func (p *Pool) cachedOuts(ctx context.Context) (map[string]Out, error) {
	p.mu.Lock()
	defer p.mu.Unlock()
	if p.outCache != nil && p.cfg.Now().Sub(p.outAt) < time.Second {
		return p.outCache, nil
	}
	o, err := p.outs(ctx)
	if err != nil {
		return nil, err
	}
	p.outCache, p.outAt = o, p.cfg.Now()
	return o, nil
}

// InRotation reports whether n is a pool number in rotation now.
func (p *Pool) InRotation(ctx context.Context, n string) (bool, error) {
	if !p.Has(n) {
		return false, nil
	}
	v, err := p.rdb.HGet(ctx, outKey, n).Result()
	if errors.Is(err, redis.Nil) {
		return true, nil
	}
	if err != nil {
		return false, fmt.Errorf("read the sender pool's health: %w", err)
	}
	return len(p.activeOuts(map[string]string{n: v})) == 0, nil
}

// NoSenderError is Choose's error when every number is out of rotation. Until
// is when the first comes back by itself (or RetryDefault from now when all
// are out for good).
type NoSenderError struct{ Until time.Time }

func (e *NoSenderError) Error() string {
	return "every number of the sender pool is out of rotation"
}

// Choose returns the sender for a message to to (E.164): its sticky sender
// while in rotation, else the soonest free number of its country (its own
// area code first for NANP), else the soonest free of all.
func (p *Pool) Choose(ctx context.Context, to string) (string, error) {
	var sticky *redis.StringCmd
	var outs *redis.MapStringStringCmd
	_, err := p.rdb.Pipelined(ctx, func(pl redis.Pipeliner) error {
		sticky = pl.Get(ctx, stickyKey(to))
		outs = pl.HGetAll(ctx, outKey)
		return nil
	})
	if err != nil && !errors.Is(err, redis.Nil) {
		return "", fmt.Errorf("choose a sender: %w", err)
	}
	out := p.activeOuts(outs.Val())
	var cands []string
	for _, n := range p.cfg.Numbers {
		if _, gone := out[n]; !gone {
			cands = append(cands, n)
		}
	}
	if len(cands) == 0 {
		return "", p.noSender(out)
	}
	if s := sticky.Val(); s != "" && slices.Contains(cands, s) {
		return s, nil
	}
	region := Country(to)
	var country []string
	for _, n := range cands {
		if p.countries[n] == region {
			country = append(country, n)
		}
	}
	if len(country) == 0 {
		country = cands // least loaded of all
	}
	prefer := make([]bool, len(country))
	if area, ok := nanpArea(to); ok {
		for i, n := range country {
			a, _ := nanpArea(n)
			prefer[i] = a == area
		}
	}
	i, _, err := p.slots.Pick(ctx, country, prefer, p.cfg.AreaSlack)
	if err != nil {
		return "", fmt.Errorf("choose a sender: %w", err)
	}
	return country[i], nil
}

// Country is the country a number belongs to for choosing a sender: for
// NANP numbers the region (US, CA, …: one calling code, many countries),
// for the others the main region of the calling code (GB for +44, Guernsey
// and Jersey mobiles too); "" when n does not parse.
func Country(n string) string {
	num, err := phonenumbers.Parse(n, "")
	if err != nil {
		return ""
	}
	if num.GetCountryCode() == 1 {
		return phone.Number(n).Region()
	}
	if r := phonenumbers.GetRegionCodeForCountryCode(int(num.GetCountryCode())); r != phonenumbers.UNKNOWN_REGION {
		return r
	}
	return ""
}

// nanpArea is the area code of a +1 number.
func nanpArea(n string) (string, bool) {
	if len(n) == 12 && strings.HasPrefix(n, "+1") {
		return n[2:5], true
	}
	return "", false
}

func (p *Pool) noSender(out map[string]Out) error {
	var until time.Time
	for _, o := range out {
		if !o.Permanent() && (until.IsZero() || o.Until.Before(until)) {
			until = o.Until
		}
	}
	if until.IsZero() {
		until = p.cfg.Now().Add(RetryDefault)
	}
	return &NoSenderError{Until: until}
}

// Stick makes from the recipient's sender for StickyFor from now: called on
// each send.
func (p *Pool) Stick(ctx context.Context, to, from string) error {
	if err := p.rdb.Set(ctx, stickyKey(to), from, p.cfg.StickyFor).Err(); err != nil {
		return fmt.Errorf("record the sticky sender: %w", err)
	}
	return nil
}

// Refusal is what taking a number out of rotation does for a Twilio code:
// whether it leaves rotation, and for good (until restored) or for the
// cool-down.
func Refusal(code int) (out, permanent bool) {
	switch code {
	case 21212, 21606, 30034:
		return true, true
	case 21611:
		return true, false
	}
	return false, false
}

// TakeOut takes n out of rotation for Twilio's code: for good when permanent,
// else for the cool-down. An existing permanent entry is kept.
func (p *Pool) TakeOut(ctx context.Context, n string, code int, reason string, permanent bool) (Out, error) {
	now := p.cfg.Now()
	o := Out{Code: code, Reason: reason, Since: now.UTC()}
	if !permanent {
		o.Until = now.Add(p.cfg.Cooldown).UTC()
	}
	b, _ := json.Marshal(o)
	err := takeOutScript.Run(ctx, p.rdb, []string{outKey}, n, b).Err()
	if err != nil {
		return o, fmt.Errorf("take %s out of rotation: %w", phone.Number(n).Masked(), err)
	}
	p.mu.Lock()
	p.outCache = nil
	p.mu.Unlock()
	return o, nil
}

// takeOutScript sets the number's entry unless a permanent one is there.
var takeOutScript = redis.NewScript(`
local cur = redis.call('HGET', KEYS[1], ARGV[1])
if cur and not string.find(cur, '"until"', 1, true) then return 0 end
redis.call('HSET', KEYS[1], ARGV[1], ARGV[2])
return 1`)

// Restore puts n back in rotation; it reports whether n was out.
func (p *Pool) Restore(ctx context.Context, n string) (bool, error) {
	k, err := p.rdb.HDel(ctx, outKey, n).Result()
	if err != nil {
		return false, fmt.Errorf("restore %s: %w", phone.Number(n).Masked(), err)
	}
	p.mu.Lock()
	p.outCache = nil
	p.mu.Unlock()
	return k > 0, nil
}

// Start is called when a worker starts: numbers out for good come back (a
// restart is how an operator says the refusal is fixed) and entries of
// numbers no longer in the pool are dropped. It also publishes the pool for
// producers.
func (p *Pool) Start(ctx context.Context) error {
	m, err := p.rdb.HGetAll(ctx, outKey).Result()
	if err != nil {
		return fmt.Errorf("read the sender pool's health: %w", err)
	}
	for n, v := range m {
		var o Out
		if json.Unmarshal([]byte(v), &o) != nil || o.Permanent() || !p.Has(n) || !o.active(p.cfg.Now()) {
			if err := p.rdb.HDel(ctx, outKey, n).Err(); err != nil {
				return fmt.Errorf("reset the sender pool's health: %w", err)
			}
		}
	}
	return p.Publish(ctx)
}
