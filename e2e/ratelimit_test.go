package e2e

import (
	"bufio"
	"context"
	"fmt"
	"net/http"
	"slices"
	"strconv"
	"strings"
	"testing"
	"time"

	"github.com/hibiken/asynq"

	"github.com/sbagenthub/twilio-worker/commlog"
	"github.com/sbagenthub/twilio-worker/internal/redistest"
	"github.com/sbagenthub/twilio-worker/producer"
	"github.com/sbagenthub/twilio-worker/ratelimit"
	"github.com/sbagenthub/twilio-worker/tasks"
)

// TestSenderLimitSharedByTwoWorkers: two worker processes share one sender
// limited to N/s. A backlog queued the way `enqueue sms` queues (booked at
// enqueue) goes out at N/s, never more than N+1 in any second, with about
// one handler run per message, holding no worker slots while it waits; a
// 2FA code for the critical queue from the same sender goes ahead of it.
func TestSenderLimitSharedByTwoWorkers(t *testing.T) {
	t.Parallel()
	const (
		n    = 20 // SENDER_RATE
		bulk = 200
		from = "+15005550006"
	)
	ctx := context.Background()
	redis := redistest.Start(t)
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
			"TWILIO_PHONE_NUMBER=" + from, "SENDER_RATE=" + strconv.Itoa(n) + "/s", "LOG_LEVEL=warn"}, bin.worker)
		waitHTTP(t, "http://"+addr+"/healthz")
		metricsURLs = append(metricsURLs, "http://"+addr+"/metrics")
	}
	env := []string{"REDIS_URL=" + redis.URL()}

	// The Go producer path that `enqueue sms` takes, for speed; one through
	// the command itself, to see that it books too.
	booker, err := ratelimit.Load(ctx, rdb, ratelimit.Config{})
	if err != nil {
		t.Fatalf("the workers' published limits: %v", err)
	}
	prod := &producer.Producer{Redis: rdb, Booker: booker}
	for i := range bulk {
		p := tasks.SMSPayload{To: fmt.Sprintf("+1415555%04d", i), Body: "bulk " + strconv.Itoa(i)}
		if _, err := prod.SendSMS(ctx, producer.SMS{SMSPayload: p, Queue: tasks.QueueBulk}); err != nil {
			t.Fatal(err)
		}
	}
	r := runEnqueue(t, env, "sms", "--to", "+14155559999", "--body", "via the command")
	if r.code != 0 {
		t.Fatalf("enqueue: exit %d: %s", r.code, r.stderr)
	}
	var out struct{ TaskID string }
	r.json(t, &out)
	r = runEnqueue(t, env, "status", out.TaskID)
	var st struct{ State, NextRunAt string }
	r.json(t, &st)
	if st.State != "scheduled" || st.NextRunAt == "" {
		t.Fatalf("a message behind a backlog of %d is %+v; want scheduled for its slot", bulk, st)
	}

	// A second in, while the backlog waits: it holds no worker slots, and a
	// 2FA code for the critical queue goes out at once.
	time.Sleep(time.Second)
	insp := asynq.NewInspectorFromRedisClient(rdb)
	q, err := insp.GetQueueInfo(tasks.QueueBulk)
	if err != nil {
		t.Fatal(err)
	}
	if q.Scheduled < bulk/2 || q.Active > 2*n {
		t.Fatalf("bulk queue: %d scheduled, %d active; waiting tasks must not hold worker slots", q.Scheduled, q.Active)
	}
	sentAt := time.Now()
	r = runEnqueue(t, env, "sms", "--to", "+14155558888", "--body", "Your code is 123456", "--queue", "critical", "--valid-for", "1m")
	if r.code != 0 {
		t.Fatalf("enqueue: exit %d: %s", r.code, r.stderr)
	}
	var code simMessage
	deadline := time.Now().Add(30 * time.Second)
	for code.Sid == "" {
		for _, m := range simMessages(t, simURL) {
			if m.To == "+14155558888" {
				code = m
			}
		}
		if time.Now().After(deadline) {
			t.Fatal("the 2FA code was not sent")
		}
		time.Sleep(20 * time.Millisecond)
	}
	took := code.CreatedAt.Sub(sentAt)
	t.Logf("2FA code sent %v after it was queued (the enqueue command's start-up included)", took.Round(time.Millisecond))
	if took > 3*time.Second || code.From != from {
		t.Fatalf("2FA code from %s sent %v after it was queued, behind a backlog of %d s", code.From, took, bulk/n)
	}

	var msgs []simMessage
	deadline = time.Now().Add(time.Duration(bulk/n)*time.Second + 30*time.Second)
	for len(msgs) < bulk+2 {
		if time.Now().After(deadline) {
			t.Fatalf("%d of %d messages sent", len(msgs), bulk+2)
		}
		time.Sleep(100 * time.Millisecond)
		msgs = simMessages(t, simURL)
	}
	var at []time.Time
	for _, m := range msgs {
		if m.From != from {
			t.Fatalf("message from %s", m.From)
		}
		at = append(at, m.CreatedAt)
	}
	// The workers' own record of each request's start (the communications
	// log's "sending", written after the limiter let the message through).
	var started []time.Time
	if _, err := commlog.New(rdb, commlog.Config{}).Read(ctx, commlog.Filter{}, func(e commlog.Entry) error {
		if e.Event == commlog.Sending {
			started = append(started, e.At)
		}
		return nil
	}); err != nil {
		t.Fatal(err)
	}
	// The workers never start more than N + burst requests in a one-second
	// window. At the simulator a request delayed on its way (a loaded
	// machine, the race detector) lands closer to the next ones, so there
	// the same bound gets a little slack for delivery jitter.
	mostStarted, most := mostInSecond(started), mostInSecond(at)
	rate := float64(len(at)-1) / at[len(at)-1].Sub(at[0]).Seconds()
	t.Logf("%d messages at %.2f/s (limit %d/s); at most %d started and %d received in one second",
		len(at), rate, n, mostStarted, most)
	if len(started) != len(at) || mostStarted > n+1 {
		t.Errorf("%d requests started (%d received), at most %d in one second; the limit is %d/s with a burst of 1",
			len(started), len(at), mostStarted, n)
	}
	if most > n+3 {
		t.Errorf("%d messages received in one second; the limit is %d/s with a burst of 1", most, n)
	}
	if rate < 0.95*n {
		t.Errorf("achieved %.2f/s, under 95%% of %d/s", rate, n)
	}

	var runs, sent float64
	for wait := time.Now().Add(5 * time.Second); ; time.Sleep(50 * time.Millisecond) {
		runs, sent = 0, 0
		for _, u := range metricsURLs {
			m := scrapeMetrics(t, u)
			runs += m[`twilioworker_task_runs_total{type="sms:send"}`]
			sent += m["twilioworker_sms_sent_total"]
		}
		if int(sent) >= len(at) || time.Now().After(wait) {
			break
		}
	}
	t.Logf("%.0f handler runs for %.0f messages sent", runs, sent)
	if int(sent) != len(at) || runs/sent > 1.2 {
		t.Errorf("%.0f handler runs for %.0f messages sent (%d at the simulator); want at most 1.2 a message", runs, sent, len(at))
	}
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
