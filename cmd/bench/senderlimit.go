package main

import (
	"context"
	"fmt"
	"slices"
	"time"

	"github.com/hibiken/asynq"
	"github.com/redis/go-redis/v9"

	"github.com/sbagenthub/twilio-worker/ratelimit"
	"github.com/sbagenthub/twilio-worker/tasks"
)

const (
	senderRate = 20 // SENDER_RATE=20/s
	benchFrom  = "+15005550006"
)

// senderLimit: two worker processes share one sender limited to 20
// segments/s; a backlog of single-segment messages to distinct recipients is
// queued through the producer (producer.SendSMS) (the path of `enqueue sms`: each message is
// booked its slot with the limits the workers published). It reports the
// achieved rate against the configured one, the most messages the simulator
// received in any one-second window, and handler runs per message sent.
func senderLimit(ctx context.Context, e *env) (result, error) {
	n := 400
	if e.short {
		n = 100
	}
	rp, redisAddr, err := e.startRedis(ctx)
	if err != nil {
		return result{}, err
	}
	defer rp.stop(5 * time.Second)
	sim, simURL, stopSim, err := startSim()
	if err != nil {
		return result{}, err
	}
	defer stopSim()

	var metricsURLs []string
	for i := range 2 {
		w, err := e.startWorker(ctx, fmt.Sprintf("worker %d", i+1), redisAddr, simURL, fmt.Sprintf("SENDER_RATE=%d/s", senderRate))
		if err != nil {
			return result{}, err
		}
		defer w.stop(15 * time.Second)
		metricsURLs = append(metricsURLs, w.metricsURL)
	}

	rdb := redis.NewClient(&redis.Options{Addr: redisAddr})
	defer rdb.Close()
	booker, err := ratelimit.Load(ctx, rdb, ratelimit.Config{})
	if err != nil {
		return result{}, fmt.Errorf("the workers' published limits: %w", err)
	}
	client := asynq.NewClientFromRedisClient(rdb)
	for i := range n {
		p := tasks.SMSPayload{To: fmt.Sprintf("+1415555%04d", i), Body: fmt.Sprintf("bench message %d", i)}
		if _, err := enqueueSMS(ctx, rdb, client, booker, p, tasks.Rules{}); err != nil {
			return result{}, fmt.Errorf("enqueue message %d: %w", i, err)
		}
	}

	deadline := time.Now().Add(time.Duration(n)*time.Second/senderRate + 30*time.Second)
	for len(sim.Messages()) < n {
		if time.Now().After(deadline) {
			return result{}, fmt.Errorf("only %d of %d messages sent in time", len(sim.Messages()), n)
		}
		select {
		case <-ctx.Done():
			return result{}, ctx.Err()
		case <-time.After(50 * time.Millisecond):
		}
	}
	var at []time.Time
	for _, m := range sim.Messages() {
		at = append(at, m.CreatedAt)
	}

	// The simulator records a message before the worker hears back and
	// counts it: give the counters a moment to catch up.
	var runs, sent float64
	for wait := time.Now().Add(5 * time.Second); ; {
		runs, sent = 0, 0
		for _, u := range metricsURLs {
			m, err := scrape(u, `twilioworker_task_runs_total{type="sms:send"}`, "twilioworker_sms_sent_total")
			if err != nil {
				return result{}, fmt.Errorf("scrape %s: %w", u, err)
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
	most := maxInWindow(at, time.Second)
	perMsg := runs / max(sent, 1)
	return result{Figures: []figure{
		{Name: "messages sent", Value: float64(len(at))},
		ratioAtLeast(figure{Name: "achieved vs configured rate", Value: achieved, Unit: "msg/s"}, senderRate, 0.95),
		held(figure{Name: "most sent in any 1 s window", Value: float64(most), Target: fmt.Sprintf("≤ %d (N + burst)", senderRate+1)}, most <= senderRate+1),
		held(figure{Name: "handler runs per message sent", Value: perMsg, Target: "≤ 1.2"}, perMsg <= 1.2 && sent > 0),
	}}, nil
}

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
