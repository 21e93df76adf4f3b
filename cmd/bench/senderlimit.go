package main

import (
	"context"
	"fmt"
	"slices"
	"time"

	"github.com/hibiken/asynq"
	"github.com/redis/go-redis/v9"

	"github.com/sbagenthub/twilio-worker/commlog"
	"github.com/sbagenthub/twilio-worker/ratelimit"
	"github.com/sbagenthub/twilio-worker/tasks"
)

const benchFrom = "+15005550006"

// senderLimitCases are the worker counts and SENDER_RATE values the
// sender-limit scenario runs, one after the other.
var senderLimitCases = []struct{ workers, rate int }{{2, 20}, {4, 50}}

// senderLimit: worker processes share one sender limited to N segments/s
// (two at 20/s, then four at 50/s); a backlog of single-segment messages to
// distinct recipients is queued through the producer (producer.SendSMS)
// (the path of `enqueue sms`: each message is booked its slot with the
// limits the workers published). For each case it reports the achieved
// rate against the configured one, the most messages in any sliding
// one-second window at the simulator (createdAt) and at the workers'
// request starts (the communications log's "sending" entries), and handler
// runs per message sent.
func senderLimit(ctx context.Context, e *env) (result, error) {
	var out result
	for _, c := range senderLimitCases {
		figs, err := senderLimitCase(ctx, e, c.workers, c.rate)
		if err != nil {
			return result{}, fmt.Errorf("%d workers at %d/s: %w", c.workers, c.rate, err)
		}
		out.Figures = append(out.Figures, figs...)
	}
	return out, nil
}

func senderLimitCase(ctx context.Context, e *env, workers, senderRate int) ([]figure, error) {
	n := 20 * senderRate // 20 s of sending
	if e.short {
		n = 5 * senderRate
	}
	rp, redisAddr, err := e.startRedis(ctx)
	if err != nil {
		return nil, err
	}
	defer rp.stop(5 * time.Second)
	sim, simURL, stopSim, err := startSim()
	if err != nil {
		return nil, err
	}
	defer stopSim()

	var metricsURLs []string
	for i := range workers {
		w, err := e.startWorker(ctx, fmt.Sprintf("worker %d", i+1), redisAddr, simURL, fmt.Sprintf("SENDER_RATE=%d/s", senderRate))
		if err != nil {
			return nil, err
		}
		defer w.stop(15 * time.Second)
		metricsURLs = append(metricsURLs, w.metricsURL)
	}

	rdb := redis.NewClient(&redis.Options{Addr: redisAddr})
	defer rdb.Close()
	booker, err := ratelimit.Load(ctx, rdb, ratelimit.Config{})
	if err != nil {
		return nil, fmt.Errorf("the workers' published limits: %w", err)
	}
	client := asynq.NewClientFromRedisClient(rdb)
	for i := range n {
		p := tasks.SMSPayload{To: fmt.Sprintf("+1415555%04d", i), Body: fmt.Sprintf("bench message %d", i)}
		if _, err := enqueueSMS(ctx, rdb, client, booker, p, tasks.Rules{}); err != nil {
			return nil, fmt.Errorf("enqueue message %d: %w", i, err)
		}
	}

	deadline := time.Now().Add(time.Duration(n)*time.Second/time.Duration(senderRate) + 30*time.Second)
	for len(sim.Messages()) < n {
		if time.Now().After(deadline) {
			return nil, fmt.Errorf("only %d of %d messages sent in time", len(sim.Messages()), n)
		}
		select {
		case <-ctx.Done():
			return nil, ctx.Err()
		case <-time.After(50 * time.Millisecond):
		}
	}
	var at []time.Time
	created := map[string]time.Time{}
	for _, m := range sim.Messages() {
		at = append(at, m.CreatedAt)
		created[m.To] = m.CreatedAt
	}
	// The workers' own record of each request's start, and how late after
	// the limiter's slot it started and reached the simulator.
	var started []time.Time
	var lateStart, lateCreated []time.Duration
	var slots []time.Time
	if _, err := commlog.New(rdb, commlog.Config{}).Read(ctx, commlog.Filter{}, func(en commlog.Entry) error {
		if en.Event == commlog.Sending {
			started = append(started, en.At)
			if !en.Slot.IsZero() {
				slots = append(slots, en.Slot)
				lateStart = append(lateStart, en.At.Sub(en.Slot))
				if c, ok := created[en.To]; ok {
					lateCreated = append(lateCreated, c.Sub(en.Slot))
				}
			}
		}
		return nil
	}); err != nil {
		return nil, fmt.Errorf("read the communications log: %w", err)
	}

	// The simulator records a message before the worker hears back and
	// counts it: give the counters a moment to catch up.
	var runs, sent float64
	for wait := time.Now().Add(5 * time.Second); ; {
		runs, sent = 0, 0
		for _, u := range metricsURLs {
			m, err := scrape(u, `twilioworker_task_runs_total{type="sms:send"}`, "twilioworker_sms_sent_total")
			if err != nil {
				return nil, fmt.Errorf("scrape %s: %w", u, err)
			}
			runs += m[`twilioworker_task_runs_total{type="sms:send"}`]
			sent += m["twilioworker_sms_sent_total"]
		}
		if int(sent) >= n || time.Now().After(wait) {
			break
		}
		time.Sleep(50 * time.Millisecond)
	}
	achieved := achievedRate(at)
	most, mostStarted := maxInWindow(at, time.Second), maxInWindow(started, time.Second)
	perMsg := runs / max(sent, 1)
	label := fmt.Sprintf("%d workers, %d/s: ", workers, senderRate)
	bound := fmt.Sprintf("≤ %d (N + burst)", senderRate+1)
	return []figure{
		{Name: label + "messages sent", Value: float64(len(at))},
		ratioAtLeast(figure{Name: label + "achieved vs configured rate", Value: achieved, Unit: "msg/s"}, float64(senderRate), 0.95),
		held(figure{Name: label + "most at the simulator in any sliding 1 s", Value: float64(most), Target: bound}, most <= senderRate+1),
		held(figure{Name: label + "most request starts in any sliding 1 s", Value: float64(mostStarted), Target: bound}, mostStarted <= senderRate+1 && len(started) == len(at)),
		held(figure{Name: label + "most limiter slots in any sliding 1 s", Value: float64(maxInWindow(slots, time.Second)), Target: bound}, maxInWindow(slots, time.Second) <= senderRate+1),
		{Name: label + "request start after its slot, p99 / max", Value: ms(quantile(lateStart, 0.99)), Unit: "ms", Target: fmt.Sprintf("max %.1f ms", ms(quantile(lateStart, 1)))},
		{Name: label + "simulator's createdAt after the slot, p99 / max", Value: ms(quantile(lateCreated, 0.99)), Unit: "ms", Target: fmt.Sprintf("max %.1f ms", ms(quantile(lateCreated, 1)))},
		held(figure{Name: label + "handler runs per message sent", Value: perMsg, Target: "≤ 1.2"}, perMsg <= 1.2 && sent > 0),
	}, nil
}

// quantile is the q-quantile of d (0 when empty).
func quantile(d []time.Duration, q float64) time.Duration {
	if len(d) == 0 {
		return 0
	}
	s := slices.Clone(d)
	slices.Sort(s)
	return s[min(int(q*float64(len(s))), len(s)-1)]
}

func ms(d time.Duration) float64 { return float64(d.Microseconds()) / 1000 }

// achievedRate is messages per second from the first to the last.
func achievedRate(at []time.Time) float64 {
	if len(at) < 2 {
		return 0
	}
	s := slices.Clone(at)
	slices.SortFunc(s, func(a, b time.Time) int { return a.Compare(b) })
	return float64(len(s)-1) / s[len(s)-1].Sub(s[0]).Seconds()
}

// maxInWindow is the most times in any closed window [t, t+w].
func maxInWindow(at []time.Time, w time.Duration) int {
	s := slices.Clone(at)
	slices.SortFunc(s, func(a, b time.Time) int { return a.Compare(b) })
	most, j := 0, 0
	for i := range s {
		for j < len(s) && !s[j].After(s[i].Add(w)) {
			j++
		}
		most = max(most, j-i)
	}
	return most
}
