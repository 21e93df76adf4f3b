package fraud_test

import (
	"context"
	"errors"
	"fmt"
	"strings"
	"testing"
	"time"

	"github.com/redis/go-redis/v9"

	"github.com/sbagenthub/twilio-worker/commlog"
	"github.com/sbagenthub/twilio-worker/fraud"
	"github.com/sbagenthub/twilio-worker/internal/redistest"
	"github.com/sbagenthub/twilio-worker/phone"
	"github.com/sbagenthub/twilio-worker/ratelimit"
	"github.com/sbagenthub/twilio-worker/tasks"
)

// clock is a settable clock for the guard.
type clock struct{ t time.Time }

func (c *clock) now() time.Time { return c.t }

func newGuard(t *testing.T, cfg fraud.Config) (*fraud.Guard, *redis.Client, *clock) {
	t.Helper()
	rdb := redistest.Start(t).Client(t)
	// The real time, as blocks also expire in Redis (PEXPIREAT): a fixed
	// date would make them expire at once once it has passed.
	c := &clock{t: time.Now().UTC().Truncate(time.Second)}
	cfg.Now = c.now
	cfg.Comms = commlog.New(rdb, commlog.Config{})
	return fraud.New(rdb, cfg), rdb, c
}

func rate(t *testing.T, s string) ratelimit.Rate {
	t.Helper()
	r, err := ratelimit.ParseRate(s)
	if err != nil {
		t.Fatal(err)
	}
	return r
}

func TestCheckEnqueue(t *testing.T) {
	ctx := context.Background()
	def := fraud.New(nil, fraud.Config{})
	only := fraud.New(nil, fraud.Config{Allowed: []string{"US", "GB"}})
	premium := fraud.New(nil, fraud.Config{AllowTypes: []fraud.NumberType{fraud.PremiumRate}})
	for _, c := range []struct {
		name   string
		g      *fraud.Guard
		to     string
		refuse string // what the error says; "" goes
	}{
		{"US goes", def, "+14155551234", ""},
		{"UK goes", def, "+447400123456", ""},
		{"DE goes", def, "+4915123456789", ""},
		{"NG blocked by default", def, "+2348031234567", "country NG is blocked"},
		{"PK blocked by default", def, "+923001234567", "country PK is blocked"},
		{"US premium-rate", def, "+19002345678", "premium-rate number in US refused"},
		{"UK premium-rate", def, "+449012345678", "premium-rate number in GB refused"},
		{"FR shared-cost", def, "+33884012345", "shared-cost number in FR refused"},
		{"DE outside ALLOWED_COUNTRIES", only, "+4915123456789", "country DE is not in ALLOWED_COUNTRIES (US,GB)"},
		{"GB inside ALLOWED_COUNTRIES", only, "+447400123456", ""},
		{"premium-rate allowed", premium, "+19002345678", ""},
		{"shared-cost still refused", premium, "+33884012345", "shared-cost"},
		{"CA outside ALLOWED_COUNTRIES", only, "+16135550123", "country CA is not in ALLOWED_COUNTRIES (US,GB)"},
		{"Twilio test number", only, "+15005550006", ""},
		{"no country outside ALLOWED_COUNTRIES", only, "+80012345678", "country 001 is not in ALLOWED_COUNTRIES"},
		{"no country goes", def, "+80012345678", ""},
	} {
		t.Run(c.name, func(t *testing.T) {
			err := c.g.CheckEnqueue(ctx, c.to, fraud.SourceAgent)
			// CheckNumber, for a number parsed already, answers the same.
			info, perr := phone.ParseInfo(c.to, "")
			if perr != nil {
				t.Fatalf("phone.ParseInfo: %v", perr)
			}
			if nerr := c.g.CheckNumber(ctx, info, fraud.SourceAgent); fmt.Sprint(nerr) != fmt.Sprint(err) {
				t.Fatalf("CheckNumber = %v, CheckEnqueue = %v", nerr, err)
			}
			if c.refuse == "" {
				if err != nil {
					t.Fatalf("refused: %v", err)
				}
				return
			}
			var fe *tasks.FieldError
			var r *fraud.Refusal
			if !errors.As(err, &fe) || fe.Field != "to" || !errors.As(err, &r) {
				t.Fatalf("err = %v, want a field error for to wrapping a *fraud.Refusal", err)
			}
			if !strings.Contains(err.Error(), c.refuse) || !strings.HasPrefix(err.Error(), "to: ") {
				t.Fatalf("err = %q, want it to start with to: and say %q", err, c.refuse)
			}
			if strings.Contains(err.Error(), c.to[1:]) {
				t.Fatalf("err %q shows the number", err)
			}
			if reason := c.g.Refused(c.to); !strings.HasPrefix(reason, "fraud guard: to: ") {
				t.Fatalf("the handler's re-check says %q", reason)
			}
		})
	}
}

func send(t *testing.T, g *fraud.Guard, to, source string) string {
	t.Helper()
	reason, err := g.PreSend(context.Background(), tasks.GuardCheck{To: to, Source: source, Segments: 1, Channel: "sms"}, nil)
	if err != nil {
		t.Fatal(err)
	}
	return reason
}

func TestPrefixRateBlocksAndUnblock(t *testing.T) {
	ctx := context.Background()
	g, rdb, clk := newGuard(t, fraud.Config{PrefixRate: rate(t, "5/h")})
	went, blocked := 0, 0
	var last string
	for i := range 10 {
		r := send(t, g, fmt.Sprintf("+1415555%04d", 1000+i), fraud.SourceAgent)
		if r == "" {
			went++
		} else {
			blocked++
			last = r
		}
	}
	if went != 5 || blocked != 5 {
		t.Fatalf("went %d, blocked %d; want 5 and 5", went, blocked)
	}
	until := clk.t.Add(fraud.BlockForDefault).UTC().Format(time.RFC3339)
	want := "fraud guard: prefix +1415555 blocked until " + until + " (over PREFIX_RATE 5/h (agent traffic))"
	if last != want {
		t.Fatalf("reason = %q, want %q", last, want)
	}
	// The block holds for operator traffic too, but not for other prefixes.
	if r := send(t, g, "+14155559999", fraud.SourceOperator); r == "" {
		t.Fatal("operator message to a blocked prefix went")
	}
	if r := send(t, g, "+14155561234", fraud.SourceAgent); r != "" {
		t.Fatalf("another prefix was refused: %s", r)
	}
	blocks, err := g.Blocks(ctx)
	if err != nil || len(blocks) != 1 || blocks[0].Prefix != "+1415555" || blocks[0].Kind != fraud.ReasonPrefixRate ||
		!blocks[0].Until.Equal(clk.t.Add(fraud.BlockForDefault)) || blocks[0].Country != "US" {
		t.Fatalf("Blocks = %+v, %v", blocks, err)
	}
	// A safe-listed number in the prefix still goes; the prefix stays blocked.
	if _, added, err := g.SafeAdd(ctx, "+1 415 555 0042"); err != nil || !added {
		t.Fatalf("SafeAdd: %v %v", added, err)
	}
	if r := send(t, g, "+14155550042", fraud.SourceAgent); r != "" {
		t.Fatalf("safe-listed number refused: %s", r)
	}
	if r := send(t, g, "+14155550043", fraud.SourceAgent); r == "" {
		t.Fatal("the blocked prefix let a number not on the safe list through")
	}
	// Unblocking lets the next one go, with a fresh rate.
	if p, err := g.Unblock(ctx, "+1 415 555", "cli"); err != nil || p != "+1415555" {
		t.Fatalf("Unblock = %q, %v", p, err)
	}
	if _, err := g.Unblock(ctx, "+1415555", "cli"); !errors.Is(err, fraud.ErrNotBlocked) {
		t.Fatalf("second Unblock: %v, want ErrNotBlocked", err)
	}
	if r := send(t, g, "+14155550044", fraud.SourceAgent); r != "" {
		t.Fatalf("after unblock: %s", r)
	}
	if blocks, _ := g.Blocks(ctx); len(blocks) != 0 {
		t.Fatalf("Blocks after unblock = %+v", blocks)
	}
	// The block ends by itself after FRAUD_BLOCK_FOR.
	for i := range 6 {
		send(t, g, fmt.Sprintf("+1415555%04d", 2000+i), fraud.SourceAgent)
	}
	if blocks, _ := g.Blocks(ctx); len(blocks) != 1 {
		t.Fatalf("not blocked again: %+v", blocks)
	}
	clk.t = clk.t.Add(fraud.BlockForDefault + time.Minute)
	if r := send(t, g, "+14155553000", fraud.SourceAgent); r != "" {
		t.Fatalf("after the block's end: %s", r)
	}
	// Both changes are in the communications log.
	var events []string
	if _, err := commlog.New(rdb, commlog.Config{}).Read(ctx, commlog.Filter{}, func(e commlog.Entry) error {
		events = append(events, e.Event+" "+e.Reason)
		return nil
	}); err != nil {
		t.Fatal(err)
	}
	want2 := []string{
		"fraud-block prefix +1415555: over PREFIX_RATE 5/h (agent traffic)",
		"fraud-unblock prefix +1415555: unblocked",
		"fraud-block prefix +1415555: over PREFIX_RATE 5/h (agent traffic)",
	}
	if strings.Join(events, "\n") != strings.Join(want2, "\n") {
		t.Fatalf("log:\n%s\nwant:\n%s", strings.Join(events, "\n"), strings.Join(want2, "\n"))
	}
}

func TestOperatorCampaignInOneBlockGoes(t *testing.T) {
	g, _, _ := newGuard(t, fraud.Config{})
	for i := range 1000 {
		if r := send(t, g, fmt.Sprintf("+1415555%04d", i), fraud.SourceOperator); r != "" {
			t.Fatalf("recipient %d: %s", i, r)
		}
	}
	// An agent's burst to the same block is metered: the default 20/h.
	went := 0
	for i := range 30 {
		if send(t, g, fmt.Sprintf("+1415555%04d", i), fraud.SourceAgent) == "" {
			went++
		}
	}
	if went != 20 {
		t.Fatalf("agent messages that went: %d, want 20 (PREFIX_RATE 20/h)", went)
	}
}

func TestCountryDailySegments(t *testing.T) {
	ctx := context.Background()
	g, _, clk := newGuard(t, fraud.Config{CountrySegments: map[string]int{"GB": 10, "*": 0}})
	check := func(to string) string {
		r, err := g.PreSend(ctx, tasks.GuardCheck{To: to, Source: fraud.SourceAgent, Segments: 3, Channel: "sms"}, nil)
		if err != nil {
			t.Fatal(err)
		}
		return r
	}
	for i := range 3 { // 9 segments, each to its own prefix
		if r := check(fmt.Sprintf("+4474001%d3456", i)); r != "" {
			t.Fatalf("message %d: %s", i, r)
		}
	}
	r := check("+447400193456")
	if !strings.Contains(r, "prefix +44740019 blocked until") || !strings.Contains(r, "country GB over COUNTRY_DAILY_SEGMENTS 10 today") {
		t.Fatalf("4th message: %q", r)
	}
	if r := check("+4915123456789"); r != "" { // * is 0: no limit
		t.Fatalf("DE: %s", r)
	}
	clk.t = clk.t.Add(24 * time.Hour) // a new UTC day, another prefix
	if r := check("+447400183456"); r != "" {
		t.Fatalf("next day: %s", r)
	}
}

func TestTwilioStrikesBlock(t *testing.T) {
	ctx := context.Background()
	g, _, _ := newGuard(t, fraud.Config{PrefixRate: rate(t, "2/h")})
	c := tasks.GuardCheck{To: "+15005550003", Source: fraud.SourceOperator, Channel: "sms"}
	var reason string
	for range 3 {
		var err error
		if reason, err = g.Strike(ctx, c, 21408); err != nil {
			t.Fatal(err)
		}
	}
	if !strings.HasPrefix(reason, "fraud guard: Twilio refused the message to prefix +1500555 (21408); prefix +1500555 blocked until") {
		t.Fatalf("reason = %q", reason)
	}
	blocks, err := g.Blocks(ctx)
	if err != nil || len(blocks) != 1 || blocks[0].Kind != fraud.ReasonTwilio {
		t.Fatalf("Blocks = %+v, %v", blocks, err)
	}
	if r := send(t, g, "+15005550006", fraud.SourceOperator); r == "" {
		t.Fatal("a message to the struck prefix went")
	}
}

func TestSafeListEntries(t *testing.T) {
	ctx := context.Background()
	g, _, _ := newGuard(t, fraud.Config{PrefixRate: rate(t, "1/h")})
	if _, _, err := g.SafeAdd(ctx, "1415"); err == nil {
		t.Fatal("SafeAdd without + accepted")
	}
	if _, _, err := g.SafeAdd(ctx, "+1 (212)"); err != nil {
		t.Fatal(err)
	}
	for i := range 5 {
		if r := send(t, g, fmt.Sprintf("+1212555%04d", i), fraud.SourceAgent); r != "" {
			t.Fatalf("safe prefix: %s", r)
		}
	}
	l, err := g.SafeList(ctx)
	if err != nil || len(l) != 1 || l[0] != "+1212" {
		t.Fatalf("SafeList = %v, %v", l, err)
	}
	if _, removed, err := g.SafeRemove(ctx, "+1212"); err != nil || !removed {
		t.Fatalf("SafeRemove: %v %v", removed, err)
	}
	if send(t, g, "+12125550100", fraud.SourceAgent) != "" || send(t, g, "+12125550101", fraud.SourceAgent) == "" {
		t.Fatal("after removal the prefix is not metered")
	}
}

// TestKeysShareOneSlot: every key the script touches has the {fraud} tag.
func TestKeysShareOneSlot(t *testing.T) {
	for _, k := range []string{fraud.SafeKey, fraud.BlocksKey, fraud.BlockKey("+1415555"), fraud.RateKey("+1415555"),
		fraud.SegmentsKey("GB", time.Now())} {
		if !strings.HasPrefix(k, "tw:{fraud}:") {
			t.Errorf("key %s lacks the {fraud} hash tag", k)
		}
	}
}

// BenchmarkCheckEnqueue is the cost per recipient of the refusals at
// enqueue (libphonenumber's parse, region and type).
func BenchmarkCheckEnqueue(b *testing.B) {
	g := fraud.New(nil, fraud.Config{})
	ctx := context.Background()
	for i := 0; b.Loop(); i++ {
		if err := g.CheckEnqueue(ctx, fmt.Sprintf("+1415555%04d", i%10000), fraud.SourceOperator); err != nil {
			b.Fatal(err)
		}
	}
}
