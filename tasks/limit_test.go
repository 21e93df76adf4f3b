package tasks_test

import (
	"context"
	"fmt"
	"strings"
	"sync"
	"sync/atomic"
	"testing"
	"time"

	"github.com/hibiken/asynq"
	dto "github.com/prometheus/client_model/go"
	"github.com/redis/go-redis/v9"

	"github.com/sbagenthub/twilio-worker/producer"
	"github.com/sbagenthub/twilio-worker/ratelimit"
	"github.com/sbagenthub/twilio-worker/tasks"
)

var (
	_ tasks.Limiter = (*ratelimit.Limiter)(nil)
	_ tasks.Booker  = (*ratelimit.Limiter)(nil)
)

// countingLimiter counts the handler's admissions: one per handler run that
// got as far as the limits.
type countingLimiter struct {
	*ratelimit.Limiter
	admits atomic.Int64

	mu         sync.Mutex
	callsLetGo []time.Time // the decision times of the calls let through
}

func (c *countingLimiter) AdmitCall(ctx context.Context, taskID string, notAfter time.Time) (ratelimit.Decision, error) {
	d, err := c.Limiter.AdmitCall(ctx, taskID, notAfter)
	if err == nil && d.Go {
		c.mu.Lock()
		c.callsLetGo = append(c.callsLetGo, d.At)
		c.mu.Unlock()
	}
	return d, err
}

func (c *countingLimiter) AdmitSMS(ctx context.Context, m ratelimit.Message) (ratelimit.Decision, error) {
	c.admits.Add(1)
	return c.Limiter.AdmitSMS(ctx, m)
}

func (c *countingLimiter) AdmitSMSIn(ctx context.Context, p redis.Pipeliner, m ratelimit.Message) func(context.Context) (ratelimit.Decision, error) {
	c.admits.Add(1)
	return c.Limiter.AdmitSMSIn(ctx, p, m)
}

func TestBookedMessagesRunOnce(t *testing.T) {
	t.Parallel()
	h := newHarness(t, harnessOpt{limits: &ratelimit.Config{Sender: ratelimit.Rate{N: 20, Per: time.Second, Burst: 1}}})
	const n = 30
	var ids []string
	prod := &producer.Producer{Redis: h.rdb, Client: h.client, Inspector: h.insp, Booker: h.limiter.Limiter}
	for i := range n {
		res, err := prod.SendSMS(bg, producer.SMS{SMSPayload: tasks.SMSPayload{To: fmt.Sprintf("+1415555%04d", i), Body: "hi"}, Queue: tasks.QueueBulk})
		if err != nil {
			t.Fatal(err)
		}
		ids = append(ids, res.TaskID)
	}
	for _, id := range ids {
		if info := h.waitFinal(t, id); info.State != asynq.TaskStateCompleted {
			t.Fatalf("state %s (%q)", info.State, info.LastErr)
		}
	}
	runs := counter(t, h.metrics.TaskRuns.WithLabelValues(tasks.TypeSendSMS))
	t.Logf("%v handler runs for %d messages", runs, n)
	if runs > n*1.2 {
		t.Fatalf("%v handler runs for %d booked messages", runs, n)
	}
	if len(h.sim.Messages()) != n {
		t.Fatalf("%d messages sent, want %d", len(h.sim.Messages()), n)
	}
}

func TestUnbookedMessagesWaitWithTheReasonShown(t *testing.T) {
	t.Parallel()
	h := newHarness(t, harnessOpt{limits: &ratelimit.Config{Sender: ratelimit.Rate{N: 1, Per: time.Minute, Burst: 1}, DefaultFrom: "+15005550006"}})
	first := h.enqueue(t, tasks.SMSPayload{To: "+14155550150", Body: "one"})
	h.waitFinal(t, first)
	second := h.enqueue(t, tasks.SMSPayload{To: "+14155550151", Body: "two"})
	var info *asynq.TaskInfo
	waitFor(t, "the second message to be deferred", func() bool {
		var err error
		info, err = tasks.Find(h.insp, second)
		return err == nil && info.State == asynq.TaskStateRetry
	})
	if info.Retried != 0 || !strings.Contains(info.LastErr, "deferred until") ||
		!strings.Contains(info.LastErr, "sender +1500***0006 at 1/m") {
		t.Fatalf("retried %d, last error %q", info.Retried, info.LastErr)
	}
	// Its slot is a minute after the first message's (asynq keeps whole
	// seconds): judged against the first one's arrival, not the clock now.
	msgs := h.sim.Messages()
	if len(msgs) == 0 {
		t.Fatal("the first message was not sent")
	}
	if wait := info.NextProcessAt.Sub(msgs[0].CreatedAt); wait < 50*time.Second {
		t.Fatalf("woken again %v after the first was sent; its slot is a minute after it", wait)
	}
	if n := len(h.sim.Messages()); n != 1 {
		t.Fatalf("%d messages sent, want 1", n)
	}
}

func TestTwilioRateLimitSlowsTheSender(t *testing.T) {
	t.Parallel()
	h := newHarness(t, harnessOpt{limits: &ratelimit.Config{Sender: ratelimit.Rate{N: 100, Per: time.Second, Burst: 1}, MaxSleep: 100 * time.Millisecond}})
	// From +15005550008 is Twilio's "queue full" (21611).
	h.enqueue(t, tasks.SMSPayload{To: "+14155550152", From: "+15005550008", Body: "hi"})
	waitFor(t, "a rate-limited attempt", func() bool { return h.requests.Load() >= 1 })
	// The sender's other messages now wait for Twilio's second too.
	waitFor(t, "the sender to be slowed", func() bool {
		d, err := h.limiter.AdmitSMS(bg, ratelimit.Message{TaskID: "probe", From: "+15005550008", To: "+14155550153", Segments: 1})
		if err != nil {
			t.Fatal(err)
		}
		return !d.Go && time.Until(d.At) > 500*time.Millisecond
	})
}

func counter(t *testing.T, c interface{ Write(*dto.Metric) error }) float64 {
	t.Helper()
	var m dto.Metric
	if err := c.Write(&m); err != nil {
		t.Fatal(err)
	}
	return m.GetCounter().GetValue()
}
