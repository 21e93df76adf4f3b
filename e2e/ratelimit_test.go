package e2e

import (
	"bufio"
	"context"
	"fmt"
	"net/http"
	"slices"
	"strconv"
	"strings"
	"sync"
	"testing"
	"time"

	"github.com/hibiken/asynq"

	"github.com/sbagenthub/twilio-worker/commlog"
	"github.com/sbagenthub/twilio-worker/ratelimit"
	"github.com/sbagenthub/twilio-worker/tasks"
)

// TestSenderLimitSharedByTwoWorkers: two worker processes share one sender
// limited to N/s. A backlog queued the way `enqueue sms` queues (booked at
// enqueue) is booked at exactly N/s and let through at most N+1 in any
// second, by the limiter's own decision times (the communications log's
// "sending" slot), across both workers; no request starts before its slot;
// about one handler run per message; the waiting backlog never takes the
// workers' slots; and a 2FA code for the critical queue from the same
// sender goes ahead of every backlog message booked more than a few
// seconds after it. Everything is judged from records, not from how fast
// this machine happens to be.
func TestSenderLimitSharedByTwoWorkers(t *testing.T) {
	t.Parallel()
	onEachRedis(t, func(t *testing.T, kind string) {
		const (
			n      = 20 // SENDER_RATE
			conc   = 50 // CONCURRENCY of each worker
			bulk   = 300
			from   = "+15005550006"
			cmdTo  = "+14155559999"
			codeTo = "+14155558888"
			// ahead: the code goes before every backlog message booked for
			// later than this after the code was queued.
			ahead = 3 * time.Second
		)
		interval := time.Second / n
		ctx := context.Background()
		redis := startRedis(t, kind)
		rdb := redis.Client(t)
		simAddr := freeAddr(t)
		start(t, nil, bin.twiliosim, "--addr", simAddr, "--delivery-delay", "10ms")
		simURL := "http://" + simAddr
		waitHTTP(t, simURL+"/sim/messages")
		var metricsURLs []string
		for range 2 {
			addr := freeAddr(t)
			start(t, []string{"REDIS_URL=" + redis.URL(), "HTTP_ADDR=" + addr, "TWILIO_API_URL=" + simURL,
				"TWILIO_ACCOUNT_SID=AC00000000000000000000000000000000", "TWILIO_AUTH_TOKEN=00000000000000000000000000000000",
				"TWILIO_PHONE_NUMBER=" + from, "SENDER_RATE=" + strconv.Itoa(n) + "/s", "LOG_LEVEL=warn",
				"CONCURRENCY=" + strconv.Itoa(conc)}, bin.worker)
			waitHTTP(t, "http://"+addr+"/healthz")
			metricsURLs = append(metricsURLs, "http://"+addr+"/metrics")
		}
		env := []string{"REDIS_URL=" + redis.URL()}

		// The most tasks active at once, sampled over the whole run.
		insp := asynq.NewInspectorFromRedisClient(rdb)
		stopSampling, sampled := make(chan struct{}), make(chan int, 1)
		var stopOnce sync.Once
		stop := func() int { stopOnce.Do(func() { close(stopSampling) }); return <-sampled }
		t.Cleanup(func() { stopOnce.Do(func() { close(stopSampling) }) })
		go func() {
			most := 0
			for {
				active := 0
				for _, q := range []string{tasks.QueueCritical, tasks.QueueDefault, tasks.QueueBulk} {
					if qi, err := insp.GetQueueInfo(q); err == nil {
						active += qi.Active
					}
				}
				most = max(most, active)
				select {
				case <-stopSampling:
					sampled <- most
					return
				case <-time.After(20 * time.Millisecond):
				}
			}
		}()

		// The Go producer path that `enqueue sms` takes, for speed; one through
		// the command itself, to see that it books too. Each message's slot is
		// booked first under its task id, with the limiter the producer uses,
		// so the test knows it: EnqueueSMS finds that booking and keeps it.
		booker, err := ratelimit.Load(ctx, rdb, ratelimit.Config{})
		if err != nil {
			t.Fatalf("the workers' published limits: %v", err)
		}
		client := asynq.NewClientFromRedisClient(rdb)
		booked := map[string]time.Time{} // recipient → booked slot
		var slots, bookedBy []time.Time
		for i := range bulk {
			p := tasks.SMSPayload{To: fmt.Sprintf("+1415555%04d", i), Body: "bulk " + strconv.Itoa(i)}
			id := "bulk-" + strconv.Itoa(i)
			d, err := booker.BookSMS(ctx, ratelimit.Message{TaskID: id, To: p.To, Segments: 1})
			if err != nil {
				t.Fatal(err)
			}
			bookedBy = append(bookedBy, time.Now())
			info, err := tasks.EnqueueSMS(ctx, client, booker, p, tasks.Rules{}, asynq.Queue(tasks.QueueBulk), asynq.TaskID(id))
			if err != nil {
				t.Fatal(err)
			}
			if info.State == asynq.TaskStateScheduled && info.NextProcessAt.Unix() != d.At.Unix() {
				t.Fatalf("%s booked for %s, scheduled for %s: the producer did not keep the booking", id, d.At, info.NextProcessAt)
			}
			booked[p.To] = d.At
			slots = append(slots, d.At)
		}
		// The 2FA code for the critical queue, while the backlog drains.
		r := runEnqueue(t, env, "sms", "--to", codeTo, "--body", "Your code is 123456", "--queue", "critical", "--valid-for", "1m")
		if r.code != 0 {
			t.Fatalf("enqueue: exit %d: %s", r.code, r.stderr)
		}
		r = runEnqueue(t, env, "sms", "--to", cmdTo, "--body", "via the command")
		if r.code != 0 {
			t.Fatalf("enqueue: exit %d: %s", r.code, r.stderr)
		}
		var out struct{ TaskID string }
		r.json(t, &out)
		r = runEnqueue(t, env, "status", out.TaskID)
		var st struct{ State, NextRunAt string }
		r.json(t, &st)
		if st.State != "scheduled" || st.NextRunAt == "" {
			t.Errorf("a message behind a backlog of %d is %+v; want scheduled for its slot", bulk, st)
		}
		// The plan: one slot per interval, never closer; exactly one interval
		// apart while the plan is ahead of the clock (bookings faster than N/s).
		ahead1, planOK := 0, true
		for i := 1; i < len(slots) && planOK; i++ {
			gap := slots[i].Sub(slots[i-1])
			if gap < interval-time.Microsecond { // times are whole microseconds in Redis
				t.Errorf("backlog slots %d and %d booked %v apart; the limit is %d/s", i-1, i, gap, n)
				planOK = false
			}
			if slots[i-1].After(bookedBy[i].Add(time.Second)) {
				ahead1++
				if gap > interval+time.Millisecond {
					t.Errorf("backlog slots %d and %d booked %v apart with the plan ahead of the clock: slower than %d/s", i-1, i, gap, n)
					planOK = false
				}
			}
		}
		if planOK && ahead1 < bulk/2 {
			t.Fatalf("only %d of %d bookings were made ahead of their slots; booking should outpace %d/s", ahead1, bulk, n)
		}

		var msgs []simMessage
		deadline := time.Now().Add(time.Duration(bulk/n)*time.Second + 60*time.Second)
		for len(msgs) < bulk+2 {
			if time.Now().After(deadline) {
				t.Fatalf("%d of %d messages sent", len(msgs), bulk+2)
			}
			time.Sleep(100 * time.Millisecond)
			msgs = simMessages(t, simURL)
		}
		received := map[string]simMessage{}
		for _, m := range msgs {
			if m.From != from {
				t.Fatalf("message to %s from %s, want %s", m.To, m.From, from)
			}
			if _, dup := received[m.To]; dup {
				t.Fatalf("two messages to %s", m.To)
			}
			received[m.To] = m
		}
		// The workers' own records: each "sending" carries the limiter's
		// decision (Slot) and the moment the request started (At).
		sending := map[string]commlog.Entry{}
		var codeQueued time.Time
		if _, err := commlog.New(rdb, commlog.Config{}).Read(ctx, commlog.Filter{}, func(e commlog.Entry) error {
			switch {
			case e.Event == commlog.Sending:
				if _, dup := sending[e.To]; dup {
					t.Errorf("two requests started for %s", e.To)
				}
				sending[e.To] = e
			case e.Event == commlog.Queued && e.To == codeTo:
				codeQueued = e.At
			}
			return nil
		}); err != nil {
			t.Fatal(err)
		}
		if len(sending) != len(received) || codeQueued.IsZero() {
			t.Fatalf("%d requests logged as started, %d received; code queued at %v", len(sending), len(received), codeQueued)
		}
		var decided []time.Time
		for to, e := range sending {
			m, ok := received[to]
			switch {
			case !ok:
				t.Fatalf("%s logged as sending, not received", to)
			case e.Slot.IsZero():
				t.Fatalf("sending to %s carries no limiter decision: %+v", to, e)
			case e.At.Before(e.Slot) || m.CreatedAt.Before(e.Slot):
				t.Fatalf("%s: request started %s, received %s, before its slot %s", to, e.At, m.CreatedAt, e.Slot)
			}
			if b, ok := booked[to]; ok && e.Slot.Before(b) {
				t.Fatalf("%s sent at %s, before the slot it was booked (%s)", to, e.Slot, b)
			}
			decided = append(decided, e.Slot)
		}
		// Both workers together never let more than N + burst through in a
		// one-second window, by the limiter's own clock.
		most := mostInSecond(decided)
		code := sending[codeTo]
		slices.SortFunc(decided, func(a, b time.Time) int { return a.Compare(b) })
		span := decided[len(decided)-1].Sub(decided[0])
		t.Logf("%d messages decided over %v (%.2f/s, limit %d/s), at most %d in one second; plan spans %v; 2FA code's slot %v after it was queued",
			len(decided), span.Round(time.Millisecond), float64(len(decided)-1)/span.Seconds(), n, most,
			slots[len(slots)-1].Sub(slots[0]).Round(time.Millisecond), code.Slot.Sub(codeQueued).Round(time.Millisecond))
		if most > n+1 {
			t.Errorf("%d messages let through in one second; the limit is %d/s with a burst of 1", most, n)
		}

		// The code goes ahead of the backlog booked after it.
		behind := 0
		for to, b := range booked {
			if b.After(codeQueued.Add(ahead)) {
				behind++
				if sending[to].Slot.Before(code.Slot) {
					t.Errorf("backlog message to %s (booked for %s) went at %s, ahead of the 2FA code queued at %s (sent at %s)",
						to, b, sending[to].Slot, codeQueued, code.Slot)
				}
			}
		}
		t.Logf("%d backlog messages booked for more than %v after the 2FA code was queued, all sent after it", behind, ahead)
		if behind < n {
			t.Fatalf("only %d backlog messages were booked for more than %v after the 2FA code was queued: the backlog ran out before it could show the code going first", behind, ahead)
		}

		if mostActive := stop(); mostActive >= 2*conc {
			t.Errorf("%d tasks active at once, every one of the two workers' %d slots: waiting tasks must not hold worker slots", mostActive, 2*conc)
		} else {
			t.Logf("at most %d tasks active at once (%d slots)", mostActive, 2*conc)
		}

		var runs, sent float64
		for wait := time.Now().Add(30 * time.Second); ; time.Sleep(50 * time.Millisecond) {
			runs, sent = 0, 0
			for _, u := range metricsURLs {
				m := scrapeMetrics(t, u)
				runs += m[`twilioworker_task_runs_total{type="sms:send"}`]
				sent += m["twilioworker_sms_sent_total"]
			}
			if int(sent) >= len(received) || time.Now().After(wait) {
				break
			}
		}
		t.Logf("%.0f handler runs for %.0f messages sent", runs, sent)
		// A booked task runs once; one that is overtaken (a stall made many
		// wake together) runs twice. Unbooked, every one would run twice.
		if int(sent) != len(received) || runs/sent > 1.5 {
			t.Errorf("%.0f handler runs for %.0f messages sent (%d at the simulator); want at most 1.5 a message", runs, sent, len(received))
		}
	})
}

// scrapeMetrics reads a worker's /metrics: sample (with its labels) → value.
func scrapeMetrics(t *testing.T, url string) map[string]float64 {
	t.Helper()
	resp, err := http.Get(url)
	if err != nil {
		t.Fatal(err)
	}
	defer resp.Body.Close()
	out := map[string]float64{}
	sc := bufio.NewScanner(resp.Body)
	for sc.Scan() {
		line := sc.Text()
		if i := strings.LastIndexByte(line, ' '); i > 0 && !strings.HasPrefix(line, "#") {
			if v, err := strconv.ParseFloat(line[i+1:], 64); err == nil {
				out[line[:i]] = v
			}
		}
	}
	return out
}

// mostInSecond is the most times in any window [t, t+1s).
func mostInSecond(at []time.Time) int {
	at = slices.Clone(at)
	slices.SortFunc(at, func(a, b time.Time) int { return a.Compare(b) })
	most, j := 0, 0
	for i := range at {
		for j < len(at) && at[j].Before(at[i].Add(time.Second)) {
			j++
		}
		most = max(most, j-i)
	}
	return most
}
