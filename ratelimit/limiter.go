package ratelimit

import (
	"context"
	"errors"
	"fmt"
	"strconv"
	"strings"
	"time"

	"github.com/redis/go-redis/v9"

	"github.com/sbagenthub/twilio-worker/phone"
)

// Scopes of a limit: the label of twilioworker_ratelimit_deferred_total and
// the first word of a deferral's reason.
const (
	ScopeSender    = "sender"
	ScopeRecipient = "recipient"
	ScopeCall      = "call"
)

// Defaults of Config.
const (
	// PrefixDefault starts every key the limiter writes. The hash tag {rl}
	// puts them all in one Redis Cluster slot: one decision touches the
	// task's hold, its sender and its recipient together.
	PrefixDefault = "tw:{rl}:"
	// MaxSleepDefault is the longest a handler waits in process for its
	// moment; a longer wait is a reservation and a DeferError. It absorbs
	// asynq's wake-up jitter (DelayedTaskCheckInterval, 100 ms in the worker)
	// and the lag of a busy machine without a second handler run.
	MaxSleepDefault = time.Second
	// HoldGrace is how long a task's reservation outlives its slot: a task
	// that wakes later than this (the workers were down) books again.
	HoldGrace = time.Hour
)

// Config is the limits. A Rate with N == 0 leaves that scope unlimited.
type Config struct {
	Sender    Rate            // SENDER_RATE: segments per sender
	Senders   map[string]Rate // SENDER_RATES: per-sender overrides, keyed by E.164
	Recipient Rate            // RECIPIENT_RATE: messages per recipient
	Call      Rate            // CALL_RATE: outbound calls per account
	// DefaultFrom is the sender of messages that name none: TWILIO_PHONE_NUMBER,
	// or the Messaging Service SID when Twilio picks the number.
	DefaultFrom string
	// MaxSleep bounds an in-process wait (MaxSleepDefault when zero).
	MaxSleep time.Duration
	Prefix   string           // PrefixDefault when empty
	Now      func() time.Time // time.Now when nil
}

// WithDefaults fills zero fields.
func (c Config) WithDefaults() Config {
	if c.MaxSleep <= 0 {
		c.MaxSleep = MaxSleepDefault
	}
	if c.Prefix == "" {
		c.Prefix = PrefixDefault
	}
	if c.Now == nil {
		c.Now = time.Now
	}
	return c
}

// Limiter applies per-sender, per-recipient and per-account limits shared by
// every process that uses the same Redis.
//
// Each limited key (tw:{rl}:sender:+1500…, tw:{rl}:recipient:+1415…,
// tw:{rl}:call:account) is a hash with two GCRA theoretical arrival times:
//
//   - plan: the schedule. Booking a slot (at enqueue time, or when a task
//     must wait) moves it on by the cost, so the next booking lands one
//     interval later. A booked slot is kept for its task in tw:{rl}:hold:ID
//     and the task is scheduled for that moment.
//   - gate: actual sends. Every send passes it, so no burst goes out even
//     when tasks wake late and together (asynq wakes scheduled tasks in
//     100 ms batches) or when the workers come back after an outage.
//
// A task that may send within MaxSleep sleeps and sends; otherwise it gets a
// slot and a DeferError for it, and holds no worker slot while it waits.
// All checks and updates of one decision are one Lua script, so the limits
// hold across any number of workers; keys expire once idle.
type Limiter struct {
	rdb redis.Scripter
	cfg Config
}

// New returns a Limiter on rdb.
func New(rdb redis.Scripter, cfg Config) *Limiter {
	return &Limiter{rdb: rdb, cfg: cfg.WithDefaults()}
}

// key names every limiter key: prefix (PrefixDefault, tw:{rl}:) and the
// parts joined by ':', as in tw:{rl}:sender:+15005550006, tw:{rl}:hold:ID,
// tw:{rl}:config.
func key(prefix string, parts ...string) string {
	return prefix + strings.Join(parts, ":")
}

// Config returns the limiter's configuration.
func (l *Limiter) Config() Config { return l.cfg }

// Message is one SMS as the limiter sees it.
type Message struct {
	TaskID   string
	From     string // "" for the default sender
	To       string
	Segments int // the sender's cost; at least 1
	// NotAfter, when set, is the latest acceptable slot (a code's expiry):
	// when the earliest is later, nothing is booked and Decision.Late is set.
	NotAfter time.Time
	// First lets the message go ahead of booked ones (critical queue) as long
	// as actual sends stay within the limits.
	First bool
	// Rate, when N > 0, is the sender's limit instead of the configured one:
	// a sender pool books a message against its numbers' summed rate.
	Rate Rate
}

// Decision is the limiter's answer for one send.
type Decision struct {
	// At is when to send (Go: sleep until then, at most MaxSleep) or, when
	// not Go, the task's reserved slot, which it should come back for
	// (in process when Soon, else after a DeferError).
	At time.Time
	Go bool
	// Soon: the task's slot is At, within MaxSleep: wait in process and ask
	// again then (nothing was taken yet).
	Soon bool
	Late bool // the earliest slot is after NotAfter: nothing was booked
	// Scope, Key and Rate name the limit that set At, when one did.
	Scope string
	Key   string
	Rate  Rate
}

// Reason says which limit set At, with the number masked:
// "sender +1500***0006 at 20/s".
func (d Decision) Reason() string {
	switch d.Scope {
	case "":
		return "waiting for the slot booked for this task"
	case ScopeCall:
		return fmt.Sprintf("calls for the account at %s", d.Rate)
	}
	return fmt.Sprintf("%s %s at %s", d.Scope, phone.Number(d.Key).Masked(), d.Rate)
}

// Err is the DeferError for a decision that is not Go.
func (d Decision) Err() *DeferError {
	return &DeferError{Until: d.At, Reason: d.Reason()}
}

// limit is one key of a decision and what the send costs it.
type limit struct {
	scope, id string
	rate      Rate
	cost      int
}

func (l *Limiter) senderKey(from string) string {
	if from == "" {
		from = l.cfg.DefaultFrom
	}
	if from == "" {
		from = "default"
	}
	return from
}

// SenderRate is the limit of one sender: its SENDER_RATES override, else
// SENDER_RATE.
func (l *Limiter) SenderRate(from string) Rate {
	from = l.senderKey(from)
	if o, ok := l.cfg.Senders[from]; ok {
		return o
	}
	return l.cfg.Sender
}

// key is the Redis key of one limit (scope sender, recipient, call or hold).
// Every key the limiter writes is named here.
func (l *Limiter) key(scope, id string) string { return key(l.cfg.Prefix, scope, id) }

func (l *Limiter) smsLimits(m Message) []limit {
	from := l.senderKey(m.From)
	var out []limit
	r := l.SenderRate(from)
	if m.Rate.N > 0 {
		r = m.Rate
	}
	if r.N > 0 {
		out = append(out, limit{ScopeSender, from, r, max(m.Segments, 1)})
	}
	if l.cfg.Recipient.N > 0 && m.To != "" {
		out = append(out, limit{ScopeRecipient, m.To, l.cfg.Recipient, 1})
	}
	return out
}

// AdmitSMS decides whether the task may send its message now. It is called by
// the handler just before sending: a task that holds a slot claims it (and
// passes the gate), any other books one.
func (l *Limiter) AdmitSMS(ctx context.Context, m Message) (Decision, error) {
	mode := "admit"
	if m.First {
		mode = "first"
	}
	return l.eval(ctx, mode, m.TaskID, l.smsLimits(m), m.NotAfter)
}

// BookSMS books the message's slot for its task before it is queued, so that
// the task can be scheduled for that moment and run once. A task that
// already holds a slot keeps it. The answer is never Go.
func (l *Limiter) BookSMS(ctx context.Context, m Message) (Decision, error) {
	return l.eval(ctx, "book", m.TaskID, l.smsLimits(m), m.NotAfter)
}

// Release gives back the slot a message's task holds (booked at enqueue, or
// while it waited) when the message will not go at that slot: deferred by
// quiet hours, skipped, expired, canceled. The next message of the same
// sender and recipient may take it. A task that holds nothing changes
// nothing.
func (l *Limiter) Release(ctx context.Context, m Message) error {
	_, err := l.eval(ctx, "release", m.TaskID, l.smsLimits(m), time.Time{})
	return err
}

// Refund gives back what AdmitSMS charged a message that then did not go
// (the recipient opted out in the meantime, its campaign was canceled,
// Twilio refused it for good).
func (l *Limiter) Refund(ctx context.Context, m Message) error {
	_, err := l.eval(ctx, "refund", m.TaskID, l.smsLimits(m), time.Time{})
	return err
}

// AdmitCall is AdmitSMS for an outbound call (CALL_RATE per account).
func (l *Limiter) AdmitCall(ctx context.Context, taskID string, notAfter time.Time) (Decision, error) {
	var lims []limit
	if l.cfg.Call.N > 0 {
		lims = append(lims, limit{ScopeCall, "account", l.cfg.Call, 1})
	}
	return l.eval(ctx, "admit", taskID, lims, notAfter)
}

// SlowSender makes every task of the sender wait until at least until: Twilio
// said the sender is over its limit (429/20429, 21611) and when to come back.
func (l *Limiter) SlowSender(ctx context.Context, from string, until time.Time) error {
	from = l.senderKey(from)
	now := l.cfg.Now()
	err := slowScript.Run(ctx, l.rdb, []string{l.key(ScopeSender, from)},
		micros(now), micros(until)).Err()
	if err != nil {
		return fmt.Errorf("slow sender %s: %w", phone.Number(from).Masked(), err)
	}
	return nil
}

func (l *Limiter) eval(ctx context.Context, mode, taskID string, lims []limit, notAfter time.Time) (Decision, error) {
	c, err := l.call(mode, taskID, lims, notAfter)
	if err != nil || c.keys == nil {
		return c.shortcut, err
	}
	return c.decide(gcraScript.Run(ctx, l.rdb, c.keys, c.args...))
}

// AdmitSMSIn queues AdmitSMS in p, so that the decision shares the round
// trip of the handler's other checks; the function it returns gives the
// decision once p has run (running the script by itself when the server
// did not know it yet).
func (l *Limiter) AdmitSMSIn(ctx context.Context, p redis.Pipeliner, m Message) func(context.Context) (Decision, error) {
	mode := "admit"
	if m.First {
		mode = "first"
	}
	c, err := l.call(mode, m.TaskID, l.smsLimits(m), m.NotAfter)
	if err != nil || c.keys == nil {
		return func(context.Context) (Decision, error) { return c.shortcut, err }
	}
	cmd := gcraScript.EvalSha(ctx, p, c.keys, c.args...)
	return func(ctx context.Context) (Decision, error) {
		if redis.HasErrorPrefix(cmd.Err(), "NOSCRIPT") {
			cmd = gcraScript.Run(ctx, l.rdb, c.keys, c.args...)
		}
		return c.decide(cmd)
	}
}

// gcraCall is one run of gcraScript: its keys and arguments, or (keys nil)
// the decision that needs no script.
type gcraCall struct {
	keys     []string
	args     []any
	lims     []limit
	now      time.Time
	shortcut Decision
}

func (l *Limiter) call(mode, taskID string, lims []limit, notAfter time.Time) (gcraCall, error) {
	now := l.cfg.Now()
	if len(lims) == 0 {
		return gcraCall{shortcut: Decision{At: now, Go: mode != "book"}}, nil
	}
	if taskID == "" {
		return gcraCall{}, errors.New("rate limit: the task has no id")
	}
	keys := make([]string, 0, len(lims)+1)
	keys = append(keys, l.key("hold", taskID))
	args := make([]any, 0, 5+3*len(lims))
	var na int64
	if !notAfter.IsZero() {
		na = micros(notAfter)
	}
	args = append(args, mode, micros(now), l.cfg.MaxSleep.Microseconds(), na, HoldGrace.Milliseconds())
	for _, lim := range lims {
		keys = append(keys, l.key(lim.scope, lim.id))
		args = append(args, intervalMicros(lim.rate), lim.rate.Burst, lim.cost)
	}
	return gcraCall{keys: keys, args: args, lims: lims, now: now}, nil
}

func (c gcraCall) decide(cmd *redis.Cmd) (Decision, error) {
	res, err := cmd.Slice()
	if err != nil {
		return Decision{}, fmt.Errorf("rate limit: %w", err)
	}
	if len(res) != 3 {
		return Decision{}, fmt.Errorf("rate limit: unexpected answer %v", res)
	}
	code, _ := res[0].(string)
	at, err := strconv.ParseInt(fmt.Sprint(res[1]), 10, 64)
	if err != nil {
		return Decision{}, fmt.Errorf("rate limit: unexpected time %v", res[1])
	}
	d := Decision{At: time.UnixMicro(at), Go: code == "go", Soon: code == "soon", Late: code == "late"}
	if k, _ := res[2].(int64); k > 0 && int(k) <= len(c.lims) {
		lim := c.lims[k-1]
		d.Scope, d.Key, d.Rate = lim.scope, lim.id, lim.rate
	}
	// The clock is the caller's (the same one asynq schedules by); a slot in
	// the past is now.
	if d.At.Before(c.now) {
		d.At = c.now
	}
	return d, nil
}

func micros(t time.Time) int64 { return t.UnixMicro() }

// intervalMicros is the rate's interval in microseconds, rounded up so that
// rounding never lets more through than the rate.
func intervalMicros(r Rate) int64 {
	return int64((r.Interval() + time.Microsecond - 1) / time.Microsecond)
}

// gcraScript makes one decision. Times are Unix microseconds (exact in Lua's
// doubles). KEYS[1] is the task's hold, KEYS[2..] the limits.
// ARGV: mode (admit, first, book, release, refund), now, maxSleep, notAfter (0: none),
// hold grace in ms, then per limit: interval, burst, cost.
// Answer: {code, time, index of the limit that set the time (0: none)};
// codes: go (send at time), wait (a slot is held at time), held (booked),
// late (the earliest slot is after notAfter; nothing changed).
var gcraScript = redis.NewScript(`
local mode = ARGV[1]
local now, maxSleep, notAfter, grace = tonumber(ARGV[2]), tonumber(ARGV[3]), tonumber(ARGV[4]), tonumber(ARGV[5])
local n = #KEYS - 1
local I, B, C, plan, gate = {}, {}, {}, {}, {}
for i = 1, n do
  local a = 5 + (i - 1) * 3
  I[i], B[i], C[i] = tonumber(ARGV[a + 1]), tonumber(ARGV[a + 2]), tonumber(ARGV[a + 3])
  local v = redis.call('HMGET', KEYS[i + 1], 'plan', 'gate')
  plan[i], gate[i] = tonumber(v[1]) or 0, tonumber(v[2]) or 0
end
local function fmt(x) return string.format('%.0f', x) end
-- GCRA: a cost c fits at t when max(tat, t) + c*I - t <= max(B, c)*I, so the
-- earliest t >= from is max(from, tat - max(B - c, 0)*I). A message dearer
-- than the burst goes when the bucket is full and pushes the next ones out.
local function fit(tat, from)
  local t, k = from, 0
  for i = 1, n do
    local e = math.max(from, tat[i] - math.max(B[i] - C[i], 0) * I[i])
    if e > t then t, k = e, i end
  end
  return t, k
end
local function take(tat, t)
  for i = 1, n do tat[i] = math.max(tat[i], t) + C[i] * I[i] end
end
-- Booking a slot at t: a key whose plan ends a whole message before a future
-- t (the recipient's limit set t, the sender is free until then) keeps it, or one slow
-- recipient would hold up its sender's other messages. The send is still
-- charged to every key's gate when it happens.
local function book(t)
  for i = 1, n do
    if plan[i] >= t - C[i] * I[i] or t - C[i] * I[i] <= now then plan[i] = math.max(plan[i], t) + C[i] * I[i] end
  end
end
local function save()
  for i = 1, n do
    redis.call('HSET', KEYS[i + 1], 'plan', fmt(plan[i]), 'gate', fmt(gate[i]))
    -- idle once both times are past: then the state equals no state
    local last = math.max(plan[i], gate[i])
    redis.call('PEXPIRE', KEYS[i + 1], math.max(math.ceil((last - now) / 1000), 0) + 1000)
  end
end
local function hold(t)
  redis.call('SET', KEYS[1], fmt(t), 'PX', math.max(math.ceil((t - now) / 1000), 0) + grace)
end
-- the earliest slot for a new booking: after the plan and the gate
local function earliest()
  local tp, kp = fit(plan, now)
  local tg, kg = fit(gate, now)
  if tg > tp then return tg, kg end
  return tp, kp
end

-- A hold is the slot's time; "g:" before it marks a slot whose gate was
-- already charged when it was given (a critical message's).
local function readHold()
  local v = redis.call('GET', KEYS[1])
  if not v then return nil, false end
  if string.sub(v, 1, 2) == 'g:' then return tonumber(string.sub(v, 3)), true end
  return tonumber(v), false
end

-- Giving back: a slot not used is the next message's. A plan before now
-- is now, so the floor keeps the state valid.
local function giveBack(times)
  for i = 1, n do times[i] = math.max(now, times[i] - C[i] * I[i]) end
end
if mode == 'release' then
  local h, gated = readHold()
  if not h then return {'none', fmt(now), 0} end
  redis.call('DEL', KEYS[1])
  giveBack(plan)
  if gated then giveBack(gate) end
  save()
  return {'released', fmt(h), 0}
end
if mode == 'refund' then
  giveBack(plan); giveBack(gate); save()
  return {'released', fmt(now), 0}
end

if mode == 'book' then
  local h = readHold()
  if h then return {'held', fmt(h), 0} end
  local t, k = earliest()
  if notAfter > 0 and t > notAfter then return {'late', fmt(t), k} end
  book(t); save(); hold(t)
  return {'held', fmt(t), k}
end

local h, gated = readHold()
if h then
  -- Woken before the slot (asynq schedules to the whole second, so up to a
  -- second early): come back at the slot, in process when that is soon. The
  -- gate is asked only at the slot, so tasks pass it in the order of their
  -- slots whatever order they were woken in.
  if h > now then
    if h - now <= maxSleep then return {'soon', fmt(h), 0} end
    return {'wait', fmt(h), 0}
  end
  if gated then
    -- Its gate slot was taken when it was given: go.
    redis.call('DEL', KEYS[1])
    return {'go', fmt(now), 0}
  end
  local t, k = fit(gate, now)
  if t - now <= maxSleep then
    take(gate, t); save(); redis.call('DEL', KEYS[1])
    return {'go', fmt(t), k}
  end
  -- Overtaken (late wake after an outage, a sender slowed by Twilio, many
  -- critical messages ahead): give the slot up and book again.
  redis.call('DEL', KEYS[1])
end
if mode == 'first' then
  -- Ahead of the booked and held tasks: the next free place at the gate
  -- (they pass it one interval later, or book again when overtaken), held
  -- with the gate already charged when it is more than maxSleep away.
  local t, k = fit(gate, now)
  if notAfter > 0 and t > notAfter then return {'late', fmt(t), k} end
  take(gate, t); book(t); save()
  if t - now <= maxSleep then return {'go', fmt(t), k} end
  redis.call('SET', KEYS[1], 'g:' .. fmt(t), 'PX', math.max(math.ceil((t - now) / 1000), 0) + grace)
  return {'wait', fmt(t), k}
end
local t, k = earliest()
if notAfter > 0 and t > notAfter then return {'late', fmt(t), k} end
if t - now <= maxSleep then
  book(t); take(gate, t); save()
  return {'go', fmt(t), k}
end
book(t); save(); hold(t)
return {'wait', fmt(t), k}
`)

// slowScript pushes a sender's plan and gate to at least ARGV[2].
var slowScript = redis.NewScript(`
local now, untilT = tonumber(ARGV[1]), tonumber(ARGV[2])
local v = redis.call('HMGET', KEYS[1], 'plan', 'gate')
local plan, gate = math.max(tonumber(v[1]) or 0, untilT), math.max(tonumber(v[2]) or 0, untilT)
redis.call('HSET', KEYS[1], 'plan', string.format('%.0f', plan), 'gate', string.format('%.0f', gate))
redis.call('PEXPIRE', KEYS[1], math.max(math.ceil((math.max(plan, gate) - now) / 1000), 0) + 1000)
return 1
`)
