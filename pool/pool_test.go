package pool_test

import (
	"context"
	"errors"
	"fmt"
	"sync"
	"testing"
	"time"

	"github.com/redis/go-redis/v9"

	"github.com/sbagenthub/twilio-worker/internal/redistest"
	"github.com/sbagenthub/twilio-worker/pool"
	"github.com/sbagenthub/twilio-worker/ratelimit"
)

var bg = context.Background()

// clock is an injected clock the test moves by hand.
type clock struct {
	mu sync.Mutex
	t  time.Time
}

func (c *clock) Now() time.Time { c.mu.Lock(); defer c.mu.Unlock(); return c.t }
func (c *clock) Add(d time.Duration) {
	c.mu.Lock()
	c.t = c.t.Add(d)
	c.mu.Unlock()
}

const (
	dc     = "+12025550101" // US, area 202
	sf     = "+14155550102" // US, area 415
	ny     = "+12125550103" // US, area 212
	london = "+442071234567"
)

type fixture struct {
	rdb   *redis.Client
	clock *clock
	lim   *ratelimit.Limiter
	pool  *pool.Pool
}

// newFixture is a pool of numbers at 2/s each (sf at 1/s) on a private
// Redis, with an injected clock.
func newFixture(t *testing.T, numbers ...string) *fixture {
	t.Helper()
	rdb := redistest.Start(t).Client(t)
	c := &clock{t: time.Date(2025, 1, 15, 10, 30, 0, 0, time.UTC)}
	two := ratelimit.Rate{N: 2, Per: time.Second, Burst: 1}
	lim := ratelimit.New(rdb, ratelimit.Config{Sender: two, Senders: map[string]ratelimit.Rate{sf: {N: 1, Per: time.Second, Burst: 1}},
		Now: c.Now})
	return &fixture{rdb: rdb, clock: c, lim: lim,
		pool: pool.New(rdb, lim, pool.Config{Numbers: numbers, Cooldown: 10 * time.Minute, Now: c.Now})}
}

func (f *fixture) choose(t *testing.T, to string) string {
	t.Helper()
	from, err := f.pool.Choose(bg, to)
	if err != nil {
		t.Fatalf("choose for %s: %v", to, err)
	}
	return from
}

// send admits one message from from on the limiter, as the handler does.
func (f *fixture) send(t *testing.T, id, from string) {
	t.Helper()
	if _, err := f.lim.AdmitSMS(bg, ratelimit.Message{TaskID: id, From: from, To: "+14155559999", Segments: 1}); err != nil {
		t.Fatal(err)
	}
}

func TestChooseCountryAreaAndElsewhere(t *testing.T) {
	t.Parallel()
	f := newFixture(t, dc, sf, london)
	for _, tc := range []struct{ name, to, want string }{
		{"same area code", "+14155551234", sf},
		{"other area code: the country's soonest", "+13125551234", dc}, // sf is slower, so dc is free first after picks
		{"UK recipient, Guernsey mobile", "+447911123456", london},
		{"UK recipient", "+442079460000", london},
	} {
		t.Run(tc.name, func(t *testing.T) {
			if got := f.choose(t, tc.to); got != tc.want {
				t.Errorf("Choose(%s) = %s; want %s", tc.to, got, tc.want)
			}
		})
	}
	// A country the pool has no number for: the least loaded of all. Load
	// dc and london; sf is then the soonest free.
	for _, id := range []string{"a", "b", "c"} {
		f.send(t, id+"-dc", dc)
		f.send(t, id+"-london", london)
	}
	f.send(t, "d", sf) // sf at 1/s is now a second out, the others 1.5 s
	if got := f.choose(t, "+33612345678"); got != sf {
		t.Errorf("a French recipient got %s; want the least loaded number %s", got, sf)
	}
}

func TestChooseAreaCodeUnlessMuchFurtherBehind(t *testing.T) {
	t.Parallel()
	f := newFixture(t, dc, sf)
	// sf is behind by more than the area slack (5 s): Twilio slowed it.
	if err := f.lim.SlowSender(bg, sf, f.clock.Now().Add(time.Minute)); err != nil {
		t.Fatal(err)
	}
	if got := f.choose(t, "+14155551234"); got != dc {
		t.Errorf("a 415 recipient got %s while %s is a minute behind; want %s", got, sf, dc)
	}
	// A little behind (within the slack), the area code still wins.
	if err := f.lim.SlowSender(bg, dc, f.clock.Now().Add(2*time.Minute)); err != nil {
		t.Fatal(err)
	}
	f.clock.Add(58 * time.Second) // sf free in 2 s, dc in 62 s
	if got := f.choose(t, "+14155551234"); got != sf {
		t.Errorf("a 415 recipient got %s; want its area code's %s", got, sf)
	}
}

// Choosers at the same moment spread over the numbers: each choice reserves
// the chosen number's next slot.
func TestChooseSpreadsConcurrentChoices(t *testing.T) {
	t.Parallel()
	nums := []string{dc, ny, "+13125550104", "+16175550105"}
	f := newFixture(t, nums...)
	const n = 40
	var mu sync.Mutex
	got := map[string]int{}
	var wg sync.WaitGroup
	for range n {
		wg.Go(func() {
			from, err := f.pool.Choose(bg, "+13035551234")
			if err != nil {
				t.Error(err)
				return
			}
			mu.Lock()
			got[from]++
			mu.Unlock()
		})
	}
	wg.Wait()
	for _, num := range nums {
		if got[num] != n/len(nums) {
			t.Errorf("%s chosen %d times of %d; want %d each: %v", num, got[num], n, n/len(nums), got)
		}
	}
	st, err := f.pool.Status(bg)
	if err != nil {
		t.Fatal(err)
	}
	for _, ns := range st.Numbers {
		// ten picks at 2/s reserve five seconds of each number
		if want := f.clock.Now().Add(5 * time.Second); !ns.NextSlot.Equal(want) {
			t.Errorf("%s next slot %v; want %v", ns.Number, ns.NextSlot, want)
		}
	}
}

func TestStickySender(t *testing.T) {
	t.Parallel()
	f := newFixture(t, dc, ny)
	const to = "+13035551234"
	if err := f.pool.Stick(bg, to, ny); err != nil {
		t.Fatal(err)
	}
	f.send(t, "a", ny) // ny is busier, but the recipient sticks to it
	f.send(t, "b", ny)
	if got := f.choose(t, to); got != ny {
		t.Errorf("sticky recipient got %s; want %s", got, ny)
	}
	if ttl := f.rdb.TTL(bg, "tw:{pool}:sticky:"+to).Val(); ttl < 719*time.Hour || ttl > 720*time.Hour {
		t.Errorf("sticky sender kept %v; want STICKY_FOR (720h)", ttl)
	}
	// Its number out of rotation: another, and the stickiness is not a trap.
	if _, err := f.pool.TakeOut(bg, ny, 21611, "Twilio 21611", false); err != nil {
		t.Fatal(err)
	}
	if got := f.choose(t, to); got != dc {
		t.Errorf("recipient whose sticky number is out of rotation got %s; want %s", got, dc)
	}
}

func TestHealth(t *testing.T) {
	t.Parallel()
	f := newFixture(t, dc, ny)
	inRotation := func(n string) bool {
		t.Helper()
		ok, err := f.pool.InRotation(bg, n)
		if err != nil {
			t.Fatal(err)
		}
		return ok
	}
	if _, err := f.pool.TakeOut(bg, dc, 21611, "Twilio 21611: queue full", false); err != nil {
		t.Fatal(err)
	}
	if inRotation(dc) || !inRotation(ny) {
		t.Fatalf("after 21611: dc in rotation %v, ny %v", inRotation(dc), inRotation(ny))
	}
	for range 5 {
		if got := f.choose(t, "+13035551234"); got != ny {
			t.Fatalf("chose %s while it is out of rotation", got)
		}
	}
	// All out: the error says when the first comes back.
	if _, err := f.pool.TakeOut(bg, ny, 21212, "Twilio 21212", true); err != nil {
		t.Fatal(err)
	}
	_, err := f.pool.Choose(bg, "+13035551234")
	var none *pool.NoSenderError
	if !errors.As(err, &none) || !none.Until.Equal(f.clock.Now().Add(10*time.Minute)) {
		t.Fatalf("choose with every number out: %v; want a NoSenderError until the cool-down ends", err)
	}
	// A cool-down does not shorten a permanent refusal.
	if _, err := f.pool.TakeOut(bg, ny, 21611, "Twilio 21611", false); err != nil {
		t.Fatal(err)
	}
	st, err := f.pool.Status(bg)
	if err != nil {
		t.Fatal(err)
	}
	if st.InRotation != 0 || st.Numbers[1].Out == nil || !st.Numbers[1].Out.Permanent() || st.Numbers[1].Out.Code != 21212 {
		t.Fatalf("status %+v; want ny out for good (21212)", st)
	}
	// After the cool-down dc is back by itself; ny stays out until restored.
	f.clock.Add(10 * time.Minute)
	if !inRotation(dc) || inRotation(ny) {
		t.Fatalf("after the cool-down: dc %v, ny %v", inRotation(dc), inRotation(ny))
	}
	if was, err := f.pool.Restore(bg, ny); err != nil || !was {
		t.Fatalf("restore: %v %v", was, err)
	}
	if !inRotation(ny) {
		t.Fatal("restored number not in rotation")
	}
	// A worker's start brings back numbers out for good, not those cooling down.
	if _, err := f.pool.TakeOut(bg, ny, 30034, "Twilio 30034", true); err != nil {
		t.Fatal(err)
	}
	if _, err := f.pool.TakeOut(bg, dc, 21611, "Twilio 21611", false); err != nil {
		t.Fatal(err)
	}
	if err := f.pool.Start(bg); err != nil {
		t.Fatal(err)
	}
	if inRotation(dc) || !inRotation(ny) {
		t.Fatalf("after a start: dc %v (cooling down), ny %v (was out for good)", inRotation(dc), inRotation(ny))
	}
}

func TestRefusal(t *testing.T) {
	t.Parallel()
	for code, want := range map[int][2]bool{21212: {true, true}, 21606: {true, true}, 30034: {true, true},
		21611: {true, false}, 20429: {false, false}, 21610: {false, false}, 30003: {false, false}} {
		if out, perm := pool.Refusal(code); out != want[0] || perm != want[1] {
			t.Errorf("Refusal(%d) = %v, %v; want %v, %v", code, out, perm, want[0], want[1])
		}
	}
}

// Producers book a pooled message against the summed rate of its country's
// numbers in rotation; a message that names its sender books on it alone.
func TestWithPoolBooksAgainstTheSummedRate(t *testing.T) {
	t.Parallel()
	nums := []string{dc, ny, "+13125550104", "+16175550105", london}
	f := newFixture(t, nums...)
	if err := f.pool.Publish(bg); err != nil {
		t.Fatal(err)
	}
	loaded, err := pool.Load(bg, f.rdb, f.lim)
	if err != nil {
		t.Fatal(err)
	}
	b := pool.WithPool(f.lim, loaded)
	book := func(id, to, from string) time.Time {
		t.Helper()
		d, err := b.BookSMS(bg, ratelimit.Message{TaskID: id, To: to, From: from, Segments: 1})
		if err != nil {
			t.Fatal(err)
		}
		return d.At
	}
	start := f.clock.Now()
	// four US numbers at 2/s: 8/s, a slot every 125 ms
	for i := range 8 {
		at := book(fmt.Sprint("us-", i), fmt.Sprintf("+130355510%02d", i), "")
		if want := start.Add(time.Duration(i) * 125 * time.Millisecond); !at.Equal(want) {
			t.Errorf("US message %d booked at +%v; want +%v", i, at.Sub(start), want.Sub(start))
		}
	}
	// the UK group is one number at 2/s
	for i := range 2 {
		at := book(fmt.Sprint("uk-", i), fmt.Sprintf("+4479111234%02d", i), "")
		if want := start.Add(time.Duration(i) * 500 * time.Millisecond); !at.Equal(want) {
			t.Errorf("UK message %d booked at +%v; want +%v", i, at.Sub(start), want.Sub(start))
		}
	}
	// a named sender books on its own limit, 2/s
	book("own-a", "+13035552000", "+15005550006")
	if at := book("own-b", "+13035552001", "+15005550006"); !at.Equal(start.Add(500 * time.Millisecond)) {
		t.Errorf("a message with its own sender booked at +%v; want +500ms", at.Sub(start))
	}
	// With one US number out the group sums to 6/s. The producer's view of
	// rotation is at most a second old.
	if _, err := loaded.TakeOut(bg, dc, 21611, "Twilio 21611", false); err != nil {
		t.Fatal(err)
	}
	g, err := loaded.Group(bg, "+13035559999")
	if err != nil {
		t.Fatal(err)
	}
	if g.Key != "pool:US" || len(g.Numbers) != 3 || g.Rate.Interval() != time.Second/6 {
		t.Errorf("group %+v; want pool:US, 3 numbers, 6/s", g)
	}
	if g, _ := loaded.Group(bg, "+33612345678"); g.Key != "pool:*" || len(g.Numbers) != 4 {
		t.Errorf("group for a country the pool lacks %+v; want the whole pool in rotation", g)
	}
}

func TestParse(t *testing.T) {
	t.Parallel()
	got, err := pool.Parse(" +1 202 555 0101, +44 20 7123 4567 ,", "")
	if err != nil || len(got) != 2 || got[0] != dc || got[1] != london {
		t.Fatalf("Parse = %v, %v", got, err)
	}
	for _, bad := range []string{"", "+12025550101,+12025550101", "+1202555010", "12025550101"} {
		if _, err := pool.Parse(bad, ""); err == nil {
			t.Errorf("Parse(%q) accepted", bad)
		}
	}
	if _, err := pool.Load(bg, redistest.Start(t).Client(t), nil); !errors.Is(err, pool.ErrNoPool) {
		t.Errorf("Load without a published pool: %v; want ErrNoPool", err)
	}
}

// The whole path at the limiter, on an injected clock: booked against the
// pool's summed rate, chosen at the slot, admitted on the chosen number.
// The pool sends at the sum and every number keeps its own limit.
func TestPooledScheduleKeepsEachNumbersLimit(t *testing.T) {
	t.Parallel()
	nums := []string{dc, ny, "+13125550104", "+16175550105"}
	f := newFixture(t, nums...)
	b := pool.WithPool(f.lim, f.pool)
	const n = 40
	start := f.clock.Now()
	slots := make([]time.Time, n)
	for i := range n {
		d, err := b.BookSMS(bg, ratelimit.Message{TaskID: fmt.Sprint("t", i), To: fmt.Sprintf("+1303555%04d", i), Segments: 1})
		if err != nil {
			t.Fatal(err)
		}
		slots[i] = d.At
	}
	sent := map[string][]time.Time{}
	for i := range n {
		f.clock.Add(slots[i].Sub(f.clock.Now())) // the task wakes at its slot
		from := f.choose(t, "+13035550000")
		d, err := f.lim.AdmitSMS(bg, ratelimit.Message{TaskID: fmt.Sprint("t", i), From: from, To: fmt.Sprintf("+1303555%04d", i), Segments: 1})
		if err != nil {
			t.Fatal(err)
		}
		if !d.Go {
			t.Fatalf("message %d on %s: %+v; want it admitted at its slot", i, from, d)
		}
		sent[from] = append(sent[from], d.At)
	}
	for _, num := range nums {
		at := sent[num]
		if len(at) != n/len(nums) {
			t.Errorf("%s sent %d of %d", num, len(at), n)
		}
		for k := 1; k < len(at); k++ {
			if gap := at[k].Sub(at[k-1]); gap < 500*time.Millisecond {
				t.Errorf("%s: sends %v apart; its limit is 2/s", num, gap)
			}
		}
	}
	// 40 at 8/s: the last slot 39 × 125 ms after the first
	if last := slots[n-1].Sub(start); last != 39*125*time.Millisecond {
		t.Errorf("last slot at +%v; want +4.875s (8/s)", last)
	}
}
