package ratelimit_test

import (
	"context"
	"fmt"
	"os"
	"os/exec"
	"slices"
	"strconv"
	"strings"
	"sync"
	"testing"
	"time"

	"github.com/redis/go-redis/v9"

	"github.com/sbagenthub/twilio-worker/internal/redistest"
	"github.com/sbagenthub/twilio-worker/ratelimit"
)

var bg = context.Background()

// clock is an injected clock the test moves by hand.
type clock struct {
	mu sync.Mutex
	t  time.Time
}

func newClock() *clock { return &clock{t: time.Date(2025, 1, 15, 10, 30, 0, 0, time.UTC)} }

func (c *clock) Now() time.Time { c.mu.Lock(); defer c.mu.Unlock(); return c.t }
func (c *clock) Add(d time.Duration) {
	c.mu.Lock()
	c.t = c.t.Add(d)
	c.mu.Unlock()
}

func rate(t *testing.T, s string) ratelimit.Rate {
	t.Helper()
	r, err := ratelimit.ParseRate(s)
	if err != nil {
		t.Fatal(err)
	}
	return r
}

type fixture struct {
	rdb *redis.Client
	clk *clock
	lim *ratelimit.Limiter
}

func newFixture(t *testing.T, cfg ratelimit.Config) *fixture {
	t.Helper()
	f := &fixture{rdb: redistest.Start(t).Client(t), clk: newClock()}
	cfg.Now = f.clk.Now
	f.lim = ratelimit.New(f.rdb, cfg)
	return f
}

const (
	from = "+15005550006"
	to   = "+14155551234"
)

func sms(id string) ratelimit.Message {
	return ratelimit.Message{TaskID: id, From: from, To: to, Segments: 1}
}

func (f *fixture) admit(t *testing.T, m ratelimit.Message) ratelimit.Decision {
	t.Helper()
	d, err := f.lim.AdmitSMS(bg, m)
	if err != nil {
		t.Fatal(err)
	}
	return d
}

func (f *fixture) book(t *testing.T, m ratelimit.Message) ratelimit.Decision {
	t.Helper()
	d, err := f.lim.BookSMS(bg, m)
	if err != nil {
		t.Fatal(err)
	}
	return d
}

// offset is d.At relative to the fixture's start.
func (f *fixture) offset(d ratelimit.Decision) time.Duration {
	return d.At.Sub(newClock().t)
}

func TestAdmitArithmetic(t *testing.T) {
	t.Parallel()
	type step struct {
		advance time.Duration
		msg     ratelimit.Message
		goNow   bool
		at      time.Duration // from the start
		scope   string
	}
	m := func(id string, segs int) ratelimit.Message {
		x := sms(id)
		x.Segments = segs
		return x
	}
	tests := []struct {
		name  string
		cfg   ratelimit.Config
		steps []step
	}{
		{"one a second: the second waits its slot", ratelimit.Config{Sender: rate(t, "1/s")}, []step{
			{0, m("a", 1), true, 0, ""},
			{0, m("b", 1), false, time.Second, "sender"},
			{0, m("c", 1), false, 2 * time.Second, "sender"},
		}},
		{"burst of three, then the rate", ratelimit.Config{Sender: rate(t, "2/s:3")}, []step{
			{0, m("a", 1), true, 0, ""},
			{0, m("b", 1), true, 0, ""},
			{0, m("c", 1), true, 0, ""},
			{0, m("d", 1), false, 500 * time.Millisecond, "sender"},
			{2 * time.Second, m("e", 1), true, 2 * time.Second, ""},
		}},
		{"segments are the sender's cost", ratelimit.Config{Sender: rate(t, "1/s")}, []step{
			{0, m("a", 3), true, 0, ""},
			{0, m("b", 1), false, 3 * time.Second, "sender"},
		}},
		{"dearer than the burst goes when the bucket is full", ratelimit.Config{Sender: rate(t, "1/s:2")}, []step{
			{0, m("a", 5), true, 0, ""},
			{0, m("b", 1), false, 4 * time.Second, "sender"},
		}},
		{"recipient binds; all or nothing", ratelimit.Config{Sender: rate(t, "10/s"), Recipient: rate(t, "1/m")}, []step{
			{0, m("a", 1), true, 0, ""},
			{0, m("b", 1), false, time.Minute, "recipient"},
			// b's booking moved the sender's plan to its slot, not to now:
			// another recipient is not held up by it.
			{0, ratelimit.Message{TaskID: "c", From: from, To: "+14155550000", Segments: 1}, true, 100 * time.Millisecond, ""},
		}},
		{"each sender has its own limit", ratelimit.Config{Sender: rate(t, "1/s"), Senders: map[string]ratelimit.Rate{"+18005550100": rate(t, "3/s:3")}}, []step{
			{0, ratelimit.Message{TaskID: "a", From: "+18005550100", Segments: 1}, true, 0, ""},
			{0, ratelimit.Message{TaskID: "b", From: "+18005550100", Segments: 1}, true, 0, ""},
			{0, ratelimit.Message{TaskID: "c", From: "+18005550100", Segments: 1}, true, 0, ""},
			{0, ratelimit.Message{TaskID: "d", From: "", Segments: 1}, true, 0, ""},
		}},
	}
	for _, tt := range tests {
		t.Run(tt.name, func(t *testing.T) {
			t.Parallel()
			tt.cfg.MaxSleep = 100 * time.Millisecond
			f := newFixture(t, tt.cfg)
			for i, s := range tt.steps {
				f.clk.Add(s.advance)
				d := f.admit(t, s.msg)
				if d.Go != s.goNow || f.offset(d) != s.at || (!d.Go && d.Scope != s.scope) {
					t.Fatalf("step %d (%s): got go=%v at +%v scope %q; want go=%v at +%v scope %q",
						i, s.msg.TaskID, d.Go, f.offset(d), d.Scope, s.goNow, s.at, s.scope)
				}
			}
		})
	}
}

func TestHeldSlotIsSentWithoutBookingAgain(t *testing.T) {
	t.Parallel()
	f := newFixture(t, ratelimit.Config{Sender: rate(t, "1/s"), MaxSleep: 100 * time.Millisecond})
	f.admit(t, sms("a"))
	b := f.admit(t, sms("b"))
	if b.Go || f.offset(b) != time.Second {
		t.Fatalf("b: %+v", b)
	}
	if !strings.Contains(b.Err().Error(), "deferred until 2025-01-15T10:30:01Z: sender +1500***0006 at 1/s") {
		t.Fatalf("dashboard text %q", b.Err().Error())
	}
	// asynq wakes it up to a second early (it schedules to the second): it
	// is told to wait in process for its slot, and nothing is taken.
	f.clk.Add(950 * time.Millisecond)
	if soon := f.admit(t, sms("b")); soon.Go || !soon.Soon || f.offset(soon) != time.Second {
		t.Fatalf("b just before its slot: %+v", soon)
	}
	// At its slot it sends, and the next booking is not moved.
	f.clk.Add(50 * time.Millisecond)
	if again := f.admit(t, sms("b")); !again.Go || f.offset(again) != time.Second {
		t.Fatalf("b at its slot: %+v", again)
	}
	if c := f.admit(t, sms("c")); c.Go || f.offset(c) != 2*time.Second {
		t.Fatalf("c: %+v, want a slot at +2s", c)
	}
	// Woken before its slot (a "run now" from the dashboard): it keeps it.
	if early := f.admit(t, sms("c")); early.Go || f.offset(early) != 2*time.Second {
		t.Fatalf("c early: %+v", early)
	}
}

func TestBookedTasksRunOnceAndPassTheGateInTurn(t *testing.T) {
	t.Parallel()
	f := newFixture(t, ratelimit.Config{Sender: rate(t, "20/s"), MaxSleep: 200 * time.Millisecond})
	const n = 40
	for i := range n {
		d := f.book(t, sms(fmt.Sprint("t", i)))
		if d.Go || f.offset(d) != time.Duration(i)*50*time.Millisecond {
			t.Fatalf("booking %d: %+v", i, d)
		}
	}
	if d := f.book(t, sms("t3")); f.offset(d) != 150*time.Millisecond {
		t.Fatalf("booking an id again moved its slot: %+v", d)
	}
	// asynq wakes them in batches 100 ms late: the gate still spaces them.
	var sends []time.Duration
	for i := 0; i < n; i += 2 {
		f.clk.Add(100 * time.Millisecond)
		for _, j := range []int{i, i + 1} {
			d := f.admit(t, sms(fmt.Sprint("t", j)))
			if !d.Go {
				t.Fatalf("t%d at +%v: %+v; a booked task must not need a second run", j, f.offset(ratelimit.Decision{At: f.clk.Now()}), d)
			}
			sends = append(sends, f.offset(d))
		}
	}
	for i := 1; i < len(sends); i++ {
		if sends[i]-sends[i-1] < 50*time.Millisecond {
			t.Fatalf("sends %v closer than the interval at %d", sends, i)
		}
	}
}

func TestStaleHoldsDoNotBurst(t *testing.T) {
	t.Parallel()
	f := newFixture(t, ratelimit.Config{Sender: rate(t, "10/s"), MaxSleep: 250 * time.Millisecond})
	for i := range 10 {
		f.book(t, sms(fmt.Sprint("t", i)))
	}
	f.clk.Add(10 * time.Minute) // the workers were down; every slot is past
	var goes, waits int
	var last time.Time
	for i := range 10 {
		d := f.admit(t, sms(fmt.Sprint("t", i)))
		if d.Go {
			goes++
			if !last.IsZero() && d.At.Sub(last) < 100*time.Millisecond {
				t.Fatalf("stale tasks sent %v apart", d.At.Sub(last))
			}
			last = d.At
		} else {
			waits++
			if d.At.Before(last.Add(100 * time.Millisecond)) {
				t.Fatalf("rebooked slot %v is not after the sends", d.At)
			}
		}
	}
	if goes != 3 || waits != 7 { // now, +100, +200 ms fit in MaxSleep
		t.Fatalf("%d sent, %d rebooked; want 3 and 7", goes, waits)
	}
}

func TestFirstGoesAheadOfBookings(t *testing.T) {
	t.Parallel()
	f := newFixture(t, ratelimit.Config{Sender: rate(t, "10/s"), MaxSleep: 150 * time.Millisecond})
	for i := range 100 {
		f.book(t, sms(fmt.Sprint("bulk", i)))
	}
	for i := range 10 { // bulk0..bulk9 go out on time
		if d := f.admit(t, sms(fmt.Sprint("bulk", i))); !d.Go || f.offset(d) != time.Duration(i)*100*time.Millisecond {
			t.Fatalf("bulk%d: %+v", i, d)
		}
		f.clk.Add(100 * time.Millisecond)
	}
	f.clk.Add(-50 * time.Millisecond)
	code := sms("2fa")
	code.To, code.First = "+14155550000", true
	d := f.admit(t, code)
	if !d.Go || f.offset(d) != time.Second {
		t.Fatalf("a critical message behind 90 booked ones: %+v (at +%v)", d, f.offset(d))
	}
	// The next booked task passes the gate one interval later, still at once.
	f.clk.Add(50 * time.Millisecond)
	if d := f.admit(t, sms("bulk10")); !d.Go || f.offset(d) != 1100*time.Millisecond {
		t.Fatalf("bulk10 after the critical message: %+v at +%v", d, f.offset(d))
	}
	// And the plan knows: a new booking lands after the last one plus one.
	if d := f.book(t, sms("late")); f.offset(d) != 10100*time.Millisecond {
		t.Fatalf("new booking at +%v, want +10.1s", f.offset(d))
	}
}

func TestNotAfterBooksNothing(t *testing.T) {
	t.Parallel()
	f := newFixture(t, ratelimit.Config{Sender: rate(t, "1/m"), MaxSleep: 100 * time.Millisecond})
	f.admit(t, sms("a"))
	m := sms("code")
	m.NotAfter = f.clk.Now().Add(30 * time.Second)
	if d := f.admit(t, m); !d.Late || d.Go {
		t.Fatalf("%+v: want late", d)
	}
	if d := f.admit(t, sms("b")); f.offset(d) != time.Minute {
		t.Fatalf("the late message booked a slot: b at +%v", f.offset(d))
	}
}

func TestSlowSender(t *testing.T) {
	t.Parallel()
	f := newFixture(t, ratelimit.Config{Sender: rate(t, "10/s"), MaxSleep: 100 * time.Millisecond})
	if err := f.lim.SlowSender(bg, "", f.clk.Now().Add(5*time.Second)); err != nil {
		t.Fatal(err)
	}
	// "" is the default sender; with DefaultFrom unset, "default".
	m := sms("a")
	m.From = ""
	if d := f.admit(t, m); d.Go || f.offset(d) != 5*time.Second {
		t.Fatalf("%+v", d)
	}
	if d := f.admit(t, sms("b")); !d.Go {
		t.Fatalf("another sender was slowed: %+v", d)
	}
}

func TestIdleKeysExpire(t *testing.T) {
	t.Parallel()
	f := newFixture(t, ratelimit.Config{Sender: rate(t, "1/s"), Recipient: rate(t, "10/m"), MaxSleep: 100 * time.Millisecond})
	f.admit(t, sms("a"))
	f.admit(t, sms("b")) // recipient slot +6s, held
	for key, most := range map[string]time.Duration{
		"tw:{rl}:sender:" + from:  8 * time.Second,
		"tw:{rl}:recipient:" + to: 13 * time.Second,
		"tw:{rl}:hold:b":          ratelimit.HoldGrace + 7*time.Second,
	} {
		ttl := f.rdb.PTTL(bg, key).Val()
		if ttl <= 0 || ttl > most {
			t.Errorf("%s: TTL %v, want (0, %v]", key, ttl, most)
		}
	}
}

// TestAtomicAcrossGoroutines books from many goroutines at one instant: every
// slot is distinct and they are exactly one interval apart.
func TestAtomicAcrossGoroutines(t *testing.T) {
	t.Parallel()
	f := newFixture(t, ratelimit.Config{Sender: rate(t, "100/s")})
	const workers, each = 8, 25
	var mu sync.Mutex
	var got []time.Duration
	var wg sync.WaitGroup
	for w := range workers {
		wg.Add(1)
		go func() {
			defer wg.Done()
			for i := range each {
				d, err := f.lim.BookSMS(bg, ratelimit.Message{TaskID: fmt.Sprintf("w%d-%d", w, i), From: from, Segments: 1})
				if err != nil {
					t.Error(err)
					return
				}
				mu.Lock()
				got = append(got, f.offset(d))
				mu.Unlock()
			}
		}()
	}
	wg.Wait()
	checkSlots(t, got, workers*each, 10*time.Millisecond)
}

func checkSlots(t *testing.T, got []time.Duration, n int, interval time.Duration) {
	t.Helper()
	slices.Sort(got)
	if len(got) != n {
		t.Fatalf("%d slots, want %d", len(got), n)
	}
	for i, d := range got {
		if d != time.Duration(i)*interval {
			t.Fatalf("slot %d at +%v, want +%v (slots %v)", i, d, time.Duration(i)*interval, got)
		}
	}
}

// TestAtomicAcrossProcesses runs this test binary as several helper
// processes booking slots on one Redis at the same instant.
func TestAtomicAcrossProcesses(t *testing.T) {
	t.Parallel()
	srv := redistest.Start(t)
	const procs, each = 4, 30
	start := newClock().t
	var wg sync.WaitGroup
	outs := make([][]byte, procs)
	errs := make([]error, procs)
	for p := range procs {
		cmd := exec.Command(os.Args[0], "-test.run=^TestHelperProcess$")
		cmd.Env = append(os.Environ(), "RATELIMIT_HELPER=1", "RATELIMIT_HELPER_ADDR="+srv.Addr,
			"RATELIMIT_HELPER_NAME=p"+strconv.Itoa(p), "RATELIMIT_HELPER_N="+strconv.Itoa(each),
			"RATELIMIT_HELPER_NOW="+strconv.FormatInt(start.UnixMicro(), 10))
		wg.Add(1)
		go func() {
			defer wg.Done()
			outs[p], errs[p] = cmd.Output()
		}()
	}
	wg.Wait()
	var got []time.Duration
	for p := range procs {
		if errs[p] != nil {
			t.Fatalf("helper %d: %v\n%s", p, errs[p], outs[p])
		}
		for _, line := range strings.Fields(string(outs[p])) {
			us, err := strconv.ParseInt(strings.TrimPrefix(line, "slot="), 10, 64)
			if err != nil || !strings.HasPrefix(line, "slot=") {
				continue
			}
			got = append(got, time.UnixMicro(us).Sub(start))
		}
	}
	checkSlots(t, got, procs*each, 20*time.Millisecond)
}

// TestHelperProcess is not a test: TestAtomicAcrossProcesses runs it.
func TestHelperProcess(t *testing.T) {
	if os.Getenv("RATELIMIT_HELPER") != "1" {
		t.Skip("helper process")
	}
	rdb := redis.NewClient(&redis.Options{Addr: os.Getenv("RATELIMIT_HELPER_ADDR")})
	defer rdb.Close()
	us, _ := strconv.ParseInt(os.Getenv("RATELIMIT_HELPER_NOW"), 10, 64)
	now := time.UnixMicro(us)
	lim := ratelimit.New(rdb, ratelimit.Config{Sender: ratelimit.Rate{N: 50, Per: time.Second, Burst: 1},
		Now: func() time.Time { return now }})
	n, _ := strconv.Atoi(os.Getenv("RATELIMIT_HELPER_N"))
	name := os.Getenv("RATELIMIT_HELPER_NAME")
	for i := range n {
		d, err := lim.BookSMS(bg, ratelimit.Message{TaskID: fmt.Sprintf("%s-%d", name, i), From: from, Segments: 1})
		if err != nil {
			t.Fatal(err)
		}
		fmt.Printf("slot=%d\n", d.At.UnixMicro())
	}
}

func TestPublishAndLoad(t *testing.T) {
	t.Parallel()
	f := newFixture(t, ratelimit.Config{Sender: rate(t, "20/s:2"), Recipient: rate(t, "10/m"), Call: rate(t, "1/s"),
		Senders: map[string]ratelimit.Rate{"+18005550100": rate(t, "3/s")}, DefaultFrom: from})
	if _, err := ratelimit.Load(bg, f.rdb, ratelimit.Config{}); err != ratelimit.ErrNoConfig {
		t.Fatalf("Load before Publish: %v", err)
	}
	if err := f.lim.Publish(bg, f.rdb); err != nil {
		t.Fatal(err)
	}
	got, err := ratelimit.Load(bg, f.rdb, ratelimit.Config{})
	if err != nil {
		t.Fatal(err)
	}
	c, want := got.Config(), f.lim.Config()
	if c.Sender != want.Sender || c.Recipient != want.Recipient || c.Call != want.Call ||
		c.DefaultFrom != from || c.Senders["+18005550100"] != want.Senders["+18005550100"] {
		t.Fatalf("loaded %+v, want %+v", c, want)
	}
}

func TestAdmitCall(t *testing.T) {
	t.Parallel()
	f := newFixture(t, ratelimit.Config{Call: rate(t, "1/s"), MaxSleep: 100 * time.Millisecond})
	if d, err := f.lim.AdmitCall(bg, "c1", time.Time{}); err != nil || !d.Go {
		t.Fatalf("%+v %v", d, err)
	}
	d, err := f.lim.AdmitCall(bg, "c2", time.Time{})
	if err != nil || d.Go || d.Scope != ratelimit.ScopeCall || d.Reason() != "calls for the account at 1/s" {
		t.Fatalf("%+v %v", d, err)
	}
}

// A slow sender's gate may be further ahead than MaxSleep when a critical
// message comes (at 1/s, the held task that just passed it put it a second
// or more ahead): the critical message still gets the next place at the
// gate, held for it, not a slot after every held and booked one.
func TestFirstHoldsTheNextGateSlotWhenItIsFar(t *testing.T) {
	t.Parallel()
	f := newFixture(t, ratelimit.Config{Sender: rate(t, "1/s"), MaxSleep: 500 * time.Millisecond})
	// 50 bulk tasks ran once each: the first went, the others hold slots 1 s apart.
	for i := range 50 {
		d := f.admit(t, sms(fmt.Sprint("bulk", i)))
		if (i == 0) != d.Go {
			t.Fatalf("bulk%d: %+v", i, d)
		}
	}
	// The held task of +1 s passes the gate at +1 s, which moves to +2 s.
	f.clk.Add(time.Second)
	if d := f.admit(t, sms("bulk1")); !d.Go {
		t.Fatalf("bulk1 at its slot: %+v", d)
	}
	code := sms("2fa") // at +1 s the gate is a second away, more than MaxSleep
	code.To, code.First, code.NotAfter = "+14155550000", true, f.clk.Now().Add(5*time.Minute)
	d := f.admit(t, code)
	if d.Go || d.Late || f.offset(d) != 2*time.Second {
		t.Fatalf("critical message: %+v at +%v, want a held slot at +2s", d, f.offset(d))
	}
	// At its slot it goes without asking the gate again.
	f.clk.Add(time.Second)
	if d := f.admit(t, code); !d.Go {
		t.Fatalf("critical message at its slot: %+v", d)
	}
	// The held task whose slot it took is overtaken and books again.
	if d := f.admit(t, sms("bulk2")); d.Go {
		t.Fatalf("bulk2 passed the gate in the same second as the critical message: %+v", d)
	}
}
