// Package fraud is the fraud guard: it keeps an agent that can text and call
// anyone from becoming an SMS-pumping or toll-fraud machine.
//
// Two kinds of check. Static ones need no Redis and run at enqueue (every
// entry point calls [Guard.CheckEnqueue]) and again in the handler
// ([Guard.Refused]): the destination's country against ALLOWED_COUNTRIES and
// BLOCKED_COUNTRIES, and its number type (premium-rate and shared-cost
// numbers are refused unless ALLOW_NUMBER_TYPES allows them). Velocity is
// checked in the handler right before the send, in the same Redis round trip
// as the opt-out check ([Guard.PreSend]): messages per destination prefix
// (the number without its last four digits, PREFIX_RATE) and segments per
// country per UTC day (COUNTRY_DAILY_SEGMENTS), for agent traffic only. Over
// either limit the prefix is blocked for FRAUD_BLOCK_FOR; every message to a
// blocked prefix, whoever sent it, is archived until the block ends or an
// operator lifts it. Safe-listed numbers and prefixes are never blocked.
//
// # Keys
//
// Every key carries the hash tag {fraud}, so the one script touches one
// Redis Cluster slot:
//
//	tw:{fraud}:safe                    set of safe numbers and prefixes (+digits)
//	tw:{fraud}:block:{prefix}          hash: until (Unix ms), reason, kind, country, at; expires at until
//	tw:{fraud}:blocks                  sorted set prefix → until (Unix ms), for listing
//	tw:{fraud}:rate:{prefix}           GCRA state of the prefix's PREFIX_RATE (Unix ms); expires when idle
//	tw:{fraud}:segments:{CC}:{day}     segments sent to country CC on UTC day YYYYMMDD; kept two days
package fraud

import (
	"context"
	"errors"
	"fmt"
	"log/slog"
	"slices"
	"strconv"
	"strings"
	"time"

	"github.com/nyaruka/phonenumbers"
	"github.com/redis/go-redis/v9"

	"github.com/sbagenthub/twilio-worker/commlog"
	"github.com/sbagenthub/twilio-worker/metrics"
	"github.com/sbagenthub/twilio-worker/phone"
	"github.com/sbagenthub/twilio-worker/ratelimit"
	"github.com/sbagenthub/twilio-worker/tasks"
)

// Sources of traffic, recorded on the task payload (tasks.SMSPayload.Source).
const (
	// SourceAgent is what the agent hub asks for: /v1/actions (sendSMS,
	// makeCall, sendBulkSMS), enqueue action and VAPI tool calls. Metered.
	SourceAgent = "agent"
	// SourceOperator is what a person at the controls sends: enqueue sms,
	// call and bulk, and /v1/campaigns. Not metered (blocks still apply).
	SourceOperator = "operator"
)

// Defaults of Config.
const (
	PrefixRateDefault = "20/h"
	BlockForDefault   = 12 * time.Hour
	// CountrySegmentsDefault is COUNTRY_DAILY_SEGMENTS' default.
	CountrySegmentsDefault = "US=100000,GB=5000,*=1000"
	// segmentsKeep is how long a day's country counter is kept.
	segmentsKeep = 48 * time.Hour
)

// BlockedDefault is BLOCKED_COUNTRIES' default: countries Twilio's SMS
// pumping guidance names as high risk for messaging, where inflated traffic
// is most often terminated.
var BlockedDefault = []string{"AZ", "BD", "DZ", "LK", "NG", "OM", "PK", "TJ", "TN"}

// Reasons, the reason label of twilioworker_fraud_blocked_total and the kind
// of a block.
const (
	ReasonCountry         = "country"          // ALLOWED_COUNTRIES / BLOCKED_COUNTRIES
	ReasonNumberType      = "number_type"      // premium-rate, shared-cost
	ReasonPrefixRate      = "prefix_rate"      // PREFIX_RATE exceeded
	ReasonCountrySegments = "country_segments" // COUNTRY_DAILY_SEGMENTS exceeded
	ReasonTwilio          = "twilio"           // Twilio refused for fraud (30450, 21408, 30649)
)

// Commlog events of blocks.
const (
	EventBlock   = "fraud-block"
	EventUnblock = "fraud-unblock"
)

// TwilioCodes are Twilio's own fraud refusals: 30450 (SMS pumping
// protection), 21408 (region not enabled: geo permissions) and 30649
// (blocked by Twilio's fraud detection). They archive the message and count
// toward its prefix.
var TwilioCodes = []int{30450, 21408, 30649}

// IsTwilioCode reports whether code is one of TwilioCodes.
func IsTwilioCode(code int) bool { return slices.Contains(TwilioCodes, code) }

// Config configures a Guard. Zero fields mean defaults.
type Config struct {
	// Allowed, when not empty, are the only countries (ISO 3166) that may
	// be contacted (ALLOWED_COUNTRIES). Blocked still refuses.
	Allowed []string
	// Blocked are refused (BLOCKED_COUNTRIES); nil is BlockedDefault, an
	// empty non-nil slice none.
	Blocked []string
	// AllowTypes are number types not refused (ALLOW_NUMBER_TYPES).
	AllowTypes []NumberType
	// PrefixRate meters agent messages per destination prefix (PREFIX_RATE):
	// N per Per in a burst of up to N (or the rate's :B when larger).
	PrefixRate ratelimit.Rate
	// CountrySegments are agent segments per country per UTC day
	// (COUNTRY_DAILY_SEGMENTS); "*" is every other country, 0 no limit;
	// nil is CountrySegmentsDefault.
	CountrySegments map[string]int
	// BlockFor is how long a prefix over a limit is blocked (FRAUD_BLOCK_FOR).
	BlockFor time.Duration

	Comms   *commlog.Log // the communications log: blocks and unblocks
	Metrics *metrics.Metrics
	Logger  *slog.Logger
	Now     func() time.Time
}

// WithDefaults fills zero fields.
func (c Config) WithDefaults() Config {
	if c.Blocked == nil {
		c.Blocked = BlockedDefault
	}
	if c.PrefixRate.N == 0 {
		c.PrefixRate, _ = ratelimit.ParseRate(PrefixRateDefault)
	}
	if c.CountrySegments == nil {
		c.CountrySegments, _ = ParseCountryLimits(CountrySegmentsDefault)
	}
	if c.BlockFor <= 0 {
		c.BlockFor = BlockForDefault
	}
	if c.Now == nil {
		c.Now = time.Now
	}
	if c.Logger == nil {
		c.Logger = slog.New(slog.DiscardHandler)
	}
	return c
}

// Validate reports a configuration the guard cannot use, naming the variable.
func (c Config) Validate() error {
	for _, cc := range c.Allowed {
		if slices.Contains(c.Blocked, cc) {
			return fmt.Errorf("ALLOWED_COUNTRIES: %s is also in BLOCKED_COUNTRIES; remove it there (BLOCKED_COUNTRIES=none blocks none)", cc)
		}
	}
	if c.PrefixRate.N <= 0 || c.PrefixRate.Per <= 0 {
		return errors.New("PREFIX_RATE: must be a rate such as 20/h")
	}
	if c.BlockFor < time.Minute || c.BlockFor > 30*24*time.Hour {
		return errors.New("FRAUD_BLOCK_FOR: must be a duration from 1m to 720h")
	}
	return nil
}

// Guard applies the checks. It is safe for concurrent use. A Guard with a
// nil Redis client makes the static checks only (cmd/enqueue's refusal at
// enqueue needs no Redis).
type Guard struct {
	rdb redis.UniversalClient
	cfg Config
}

var _ tasks.Guard = (*Guard)(nil)

// New returns a Guard on rdb with cfg's defaults filled; cfg must be valid.
func New(rdb redis.UniversalClient, cfg Config) *Guard {
	return &Guard{rdb: rdb, cfg: cfg.WithDefaults()}
}

// Config returns the guard's configuration, defaults filled.
func (g *Guard) Config() Config { return g.cfg }

// Refusal says why a destination is refused outright. It is the Err of the
// *tasks.FieldError CheckEnqueue returns.
type Refusal struct {
	Reason  string // ReasonCountry or ReasonNumberType
	Country string
	Problem string // what the field error says after "to: "
}

func (r *Refusal) Error() string { return r.Problem }

// refusal returns why number may not be contacted at all, or nil. The
// number is parsed once; its exact region (a costly lookup where a country
// code has several, such as +1) is looked up only when the lists make it
// matter, or to name it in a refusal.
func (g *Guard) refusal(number string) *Refusal {
	num, err := phonenumbers.Parse(number, "")
	if err != nil {
		return nil // not a number: the constructor's own check refuses it
	}
	return g.refusalOf(int(num.GetCountryCode()), func() string { return regionOf(num) }, func() NumberType { return typeOf(num) })
}

// refusalOf is refusal for a number of country code cc, whose region and
// refusable type (or "") the functions tell when asked.
func (g *Guard) refusalOf(cc int, regionOf func() string, typeOf func() NumberType) *Refusal {
	country := ""
	region := func() string {
		if country == "" {
			if country = regionOf(); country == "" {
				country = "unknown"
			}
		}
		return country
	}
	if g.regionMatters(cc) {
		c := region()
		if slices.Contains(g.cfg.Blocked, c) {
			return &Refusal{ReasonCountry, c, fmt.Sprintf("country %s is blocked (BLOCKED_COUNTRIES, a high-risk destination for SMS pumping and toll fraud)", c)}
		}
		if len(g.cfg.Allowed) > 0 && !slices.Contains(g.cfg.Allowed, c) {
			return &Refusal{ReasonCountry, c, fmt.Sprintf("country %s is not in ALLOWED_COUNTRIES (%s)", c, strings.Join(g.cfg.Allowed, ","))}
		}
	}
	if t := typeOf(); t != "" && !slices.Contains(g.cfg.AllowTypes, t) {
		c := region()
		return &Refusal{ReasonNumberType, c, fmt.Sprintf("%s number in %s refused (ALLOW_NUMBER_TYPES=%s allows it)", t, c, t)}
	}
	return nil
}

// regionMatters reports whether the country lists can decide differently
// for the regions sharing country code cc: when one of them is blocked, or
// not all of them are allowed.
func (g *Guard) regionMatters(cc int) bool {
	regions := phonenumbers.GetRegionCodesForCountryCode(cc)
	if len(regions) == 0 {
		return len(g.cfg.Allowed) > 0 // a number of no country (+800): only an allow list refuses it
	}
	for _, r := range regions {
		if slices.Contains(g.cfg.Blocked, r) || (len(g.cfg.Allowed) > 0 && !slices.Contains(g.cfg.Allowed, r)) {
			return true
		}
	}
	return false
}

// CheckEnqueue is the pre-enqueue check every entry point makes: nil, or a
// *tasks.FieldError for field "to" naming the country and why (its Err is a
// *Refusal). number is E.164 (an unparsable one is left to the
// constructor's own check); source is SourceAgent or SourceOperator (the
// static checks apply to both). Refusals are counted in
// twilioworker_fraud_blocked_total when the guard has Metrics.
func (g *Guard) CheckEnqueue(_ context.Context, number, source string) error {
	if g == nil || !e164Pattern.MatchString(number) {
		return nil
	}
	if r := g.refusal(number); r != nil {
		g.cfg.Metrics.FraudBlocked(r.Reason, r.Country)
		return &tasks.FieldError{Field: "to", Problem: r.Problem, Err: r}
	}
	return nil
}

// CheckNumber is CheckEnqueue for a number the caller has parsed already
// (phone.ParseInfo): the same checks and answers, without parsing it again
// (a bulk submission checks every recipient).
func (g *Guard) CheckNumber(_ context.Context, n phone.Info, source string) error {
	if g == nil || !e164Pattern.MatchString(n.Number().String()) {
		return nil
	}
	r := g.refusalOf(n.CountryCode(), n.Region, func() NumberType {
		switch n.Type() {
		case phone.TypePremiumRate:
			return PremiumRate
		case phone.TypeSharedCost:
			return SharedCost
		}
		return ""
	})
	if r != nil {
		g.cfg.Metrics.FraudBlocked(r.Reason, r.Country)
		return &tasks.FieldError{Field: "to", Problem: r.Problem, Err: r}
	}
	return nil
}

// Refused is the handler's re-check of the static rules: the reason to
// archive, or "".
func (g *Guard) Refused(number string) string {
	if r := g.refusal(number); r != nil {
		g.cfg.Metrics.FraudBlocked(r.Reason, r.Country)
		return "fraud guard: to: " + r.Problem
	}
	return ""
}

// Block is a blocked prefix.
type Block struct {
	Prefix    string    `json:"prefix"`
	Until     time.Time `json:"until"`
	Reason    string    `json:"reason"`
	Kind      string    `json:"kind"` // prefix_rate, country_segments, twilio
	Country   string    `json:"country,omitempty"`
	BlockedAt time.Time `json:"blockedAt"`
}

// Keys: every one carries the hash tag {fraud} (see the package comment).
const keyBase = "tw:{fraud}:"

// SafeKey is the safe list.
const SafeKey = keyBase + "safe"

// BlocksKey indexes the blocks by their end.
const BlocksKey = keyBase + "blocks"

// BlockKey is a prefix's block.
func BlockKey(prefix string) string { return keyBase + "block:" + prefix }

// RateKey is a prefix's PREFIX_RATE state.
func RateKey(prefix string) string { return keyBase + "rate:" + prefix }

// SegmentsKey is a country's segment count on day t (UTC).
func SegmentsKey(country string, t time.Time) string {
	return keyBase + "segments:" + country + ":" + t.UTC().Format("20060102")
}

// checkScript decides one send (or counts one Twilio refusal). KEYS: safe,
// block, blocks, rate, segments. ARGV: now (Unix ms), number, mode (check or
// strike), metered (1/0), interval (ms), burst, segments, country limit
// (0: none), block for (ms), rate reason, segments reason, prefix, country.
// Returns {0} go, {1} safe, {2, until, reason, kind} already blocked,
// {3, until, reason, kind} blocked now.
var checkScript = redis.NewScript(`
local now = tonumber(ARGV[1])
local number = ARGV[2]
local prefixes = {}
for i = #number, 2, -1 do prefixes[#prefixes + 1] = string.sub(number, 1, i) end
if #prefixes > 0 then
  for _, v in ipairs(redis.call('SMISMEMBER', KEYS[1], unpack(prefixes))) do
    if v == 1 then return {1} end
  end
end
local mode = ARGV[3]
if mode == 'check' then
  local b = redis.call('HMGET', KEYS[2], 'until', 'reason', 'kind')
  if b[1] and tonumber(b[1]) > now then return {2, b[1], b[2], b[3]} end
end
local function block(kind, reason)
  local untl = now + tonumber(ARGV[9])
  redis.call('HSET', KEYS[2], 'until', untl, 'reason', reason, 'kind', kind, 'at', now, 'country', ARGV[13])
  redis.call('PEXPIREAT', KEYS[2], untl)
  redis.call('ZREMRANGEBYSCORE', KEYS[3], '-inf', now)
  redis.call('ZADD', KEYS[3], untl, ARGV[12])
  return {3, tostring(untl), reason, kind}
end
if ARGV[4] ~= '1' then return {0} end
local interval, burst = tonumber(ARGV[5]), tonumber(ARGV[6])
local tat = tonumber(redis.call('GET', KEYS[4]) or '0')
if tat < now then tat = now end
local new = tat + interval
if new - now > interval * burst then
  if mode == 'strike' then return block('twilio', ARGV[10]) end
  return block('prefix_rate', ARGV[10])
end
redis.call('SET', KEYS[4], tostring(new), 'PX', math.ceil(new - now))
local limit, seg = tonumber(ARGV[8]), tonumber(ARGV[7])
if limit > 0 and seg > 0 then
  local used = tonumber(redis.call('GET', KEYS[5]) or '0')
  if used + seg > limit then return block('country_segments', ARGV[11]) end
  redis.call('INCRBY', KEYS[5], seg)
  redis.call('PEXPIRE', KEYS[5], ARGV[14])
end
return {0}
`)

// unblockScript lifts a block and forgets the prefix's rate. KEYS: block,
// blocks, rate. ARGV: prefix. Returns 1 when there was a block.
var unblockScript = redis.NewScript(`
local had = redis.call('DEL', KEYS[1])
redis.call('ZREM', KEYS[2], ARGV[1])
redis.call('DEL', KEYS[3])
return had
`)

// burst is how many messages a prefix may get at once: N of "N/h", or the
// rate's own burst when larger.
func (g *Guard) burst() int { return max(g.cfg.PrefixRate.N, g.cfg.PrefixRate.Burst) }

func (g *Guard) countryLimit(country string) int {
	if n, ok := g.cfg.CountrySegments[country]; ok {
		return n
	}
	return g.cfg.CountrySegments["*"]
}

// metered reports whether traffic from source counts toward the limits:
// everything but the operator's own.
func metered(source string) bool { return source != SourceOperator && source != "" }

// PreSend decides whether c may go now, running also's commands (the
// opt-out check) in the same pipeline: one round trip. It returns the
// reason to archive the task with, "" to send. A new block is logged, put
// in the communications log and counted.
func (g *Guard) PreSend(ctx context.Context, c tasks.GuardCheck, also func(redis.Pipeliner)) (string, error) {
	return g.run(ctx, c, "check", 0, also)
}

// Strike counts Twilio's fraud refusal (code) of a send toward the
// prefix, whatever its source, and returns the reason to archive it with.
func (g *Guard) Strike(ctx context.Context, c tasks.GuardCheck, code int) (string, error) {
	reason, err := g.run(ctx, c, "strike", code, nil)
	msg := fmt.Sprintf("fraud guard: Twilio refused the %s to prefix %s (%d)", kindOf(c), Prefix(c.To), code)
	if reason != "" {
		msg += "; " + strings.TrimPrefix(reason, "fraud guard: ")
	}
	g.cfg.Metrics.FraudBlocked(ReasonTwilio, CountryOf(c.To))
	return msg, err
}

func kindOf(c tasks.GuardCheck) string {
	if c.Channel == "voice" {
		return "call"
	}
	return "message"
}

func (g *Guard) run(ctx context.Context, c tasks.GuardCheck, mode string, code int, also func(redis.Pipeliner)) (string, error) {
	gc, ok := g.call(c, mode, code)
	if !ok {
		if also != nil {
			_, err := g.rdb.Pipelined(ctx, func(p redis.Pipeliner) error { also(p); return nil })
			return "", err
		}
		return "", nil
	}
	var cmd *redis.Cmd
	pipe := func(eval bool) error {
		_, err := g.rdb.Pipelined(ctx, func(p redis.Pipeliner) error {
			if also != nil {
				also(p)
			}
			if eval {
				cmd = checkScript.Eval(ctx, p, gc.keys, gc.args...)
			} else {
				cmd = checkScript.EvalSha(ctx, p, gc.keys, gc.args...)
			}
			return nil
		})
		return err
	}
	err := pipe(false)
	if err != nil && redis.HasErrorPrefix(cmd.Err(), "NOSCRIPT") {
		err = pipe(true) // first use on this server: the whole script, once
	}
	if err != nil {
		return "", fmt.Errorf("fraud guard: %w", err)
	}
	return g.answer(ctx, c, gc, mode, cmd)
}

// PreSendIn queues PreSend's check in p, which the caller runs with its own
// commands (the handler's one round trip before a send); the function it
// returns gives PreSend's answer once p has run (running the script by
// itself when the server did not know it yet).
func (g *Guard) PreSendIn(ctx context.Context, p redis.Pipeliner, c tasks.GuardCheck) func(context.Context) (string, error) {
	gc, ok := g.call(c, "check", 0)
	if !ok {
		return func(context.Context) (string, error) { return "", nil }
	}
	cmd := checkScript.EvalSha(ctx, p, gc.keys, gc.args...)
	return func(ctx context.Context) (string, error) {
		if redis.HasErrorPrefix(cmd.Err(), "NOSCRIPT") {
			cmd = checkScript.Run(ctx, g.rdb, gc.keys, gc.args...)
		}
		if err := cmd.Err(); err != nil {
			return "", fmt.Errorf("fraud guard: %w", err)
		}
		return g.answer(ctx, c, gc, "check", cmd)
	}
}

// Counts reports whether PreSend of c changes the guard's state (metered
// traffic moves its prefix's rate and its country's count): such a check
// must run only for a send that then goes.
func (g *Guard) Counts(c tasks.GuardCheck) bool { return metered(c.Source) && Prefix(c.To) != "" }

// guardCall is one run of checkScript.
type guardCall struct {
	keys            []string
	args            []any
	prefix, country string
}

// call builds the script's run for c; ok is false when c has no prefix to
// check.
func (g *Guard) call(c tasks.GuardCheck, mode string, code int) (guardCall, bool) {
	prefix := Prefix(c.To)
	if prefix == "" {
		return guardCall{}, false
	}
	now := g.cfg.Now()
	country := CountryOf(c.To)
	isMetered := metered(c.Source)
	rateReason := fmt.Sprintf("over PREFIX_RATE %s (%s traffic)", g.cfg.PrefixRate, sourceName(c.Source))
	if mode == "strike" {
		isMetered = true
		rateReason = fmt.Sprintf("Twilio refused sends to it (%d) more than PREFIX_RATE %s allows", code, g.cfg.PrefixRate)
	}
	limit := g.countryLimit(country)
	keys := []string{SafeKey, BlockKey(prefix), BlocksKey, RateKey(prefix), SegmentsKey(country, now)}
	args := []any{now.UnixMilli(), c.To, mode, b2i(isMetered), max(g.cfg.PrefixRate.Interval().Milliseconds(), 1), g.burst(),
		c.Segments, limit, g.cfg.BlockFor.Milliseconds(), rateReason,
		fmt.Sprintf("country %s over COUNTRY_DAILY_SEGMENTS %d today (UTC)", country, limit), prefix, country,
		segmentsKeep.Milliseconds()}
	return guardCall{keys: keys, args: args, prefix: prefix, country: country}, true
}

// answer reads the script's answer: the reason to archive with, or "".
func (g *Guard) answer(ctx context.Context, c tasks.GuardCheck, gc guardCall, mode string, cmd *redis.Cmd) (string, error) {
	prefix, country := gc.prefix, gc.country
	res, err := cmd.Slice()
	if err != nil || len(res) == 0 {
		return "", fmt.Errorf("fraud guard: unexpected answer %v: %v", res, err)
	}
	code0, _ := res[0].(int64)
	if code0 < 2 {
		return "", nil
	}
	if len(res) < 4 {
		return "", fmt.Errorf("fraud guard: unexpected answer %v", res)
	}
	untilMS, _ := strconv.ParseInt(fmt.Sprint(res[1]), 10, 64)
	until := time.UnixMilli(untilMS).UTC()
	reason, _ := res[2].(string)
	kind, _ := res[3].(string)
	msg := fmt.Sprintf("fraud guard: prefix %s blocked until %s (%s)", prefix, until.Format(time.RFC3339), reason)
	if code0 == 3 {
		g.cfg.Logger.Warn("fraud guard: prefix blocked", "prefix", prefix, "country", country, "until", until, "reason", reason)
		if err := g.cfg.Comms.Append(ctx, commlog.Entry{Event: EventBlock, Channel: c.Channel, Reason: fmt.Sprintf("prefix %s: %s", prefix, reason),
			Until: until.Format(time.RFC3339), Source: sourceName(c.Source)}); err != nil {
			g.cfg.Logger.Warn("fraud guard: communications log", "err", err)
		}
	}
	if mode == "check" {
		g.cfg.Metrics.FraudBlocked(kind, country)
	}
	return msg, nil
}

func sourceName(s string) string {
	if s == "" {
		return SourceOperator
	}
	return s
}

func b2i(b bool) int {
	if b {
		return 1
	}
	return 0
}
