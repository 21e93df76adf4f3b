package main

import (
	"context"
	"fmt"
	"time"

	"github.com/hibiken/asynq"

	"github.com/sbagenthub/twilio-worker/commlog"
	"github.com/sbagenthub/twilio-worker/pool"
	"github.com/sbagenthub/twilio-worker/tasks"
)

const (
	poolNumbers = 20
	poolRate    = 5 // SENDER_RATE=5/s per number
	poolN       = 10000
)

// poolNumber is the i-th number of the bench's sender pool.
func poolNumber(i int) string { return fmt.Sprintf("+1212555%04d", 100+i) }

// senderPool: two workers share a sender pool of 20 numbers at 5/s each; a
// campaign of 10,000 messages without a sender is queued through
// producer.SendSMS with the pool's booker (each booked against the pool's
// summed rate, 100/s). It reports the achieved rate against 100/s, the
// busiest number-second (the most one number sent in any one-second window,
// from the simulator's records) and handler runs per message.
func senderPool(ctx context.Context, e *env) (result, error) {
	tg, err := e.redis(ctx)
	if err != nil {
		return result{}, err
	}
	defer tg.close()
	sim, simURL, stopSim, err := startSim()
	if err != nil {
		return result{}, err
	}
	defer stopSim()
	nums := make([]string, poolNumbers)
	for i := range nums {
		nums[i] = poolNumber(i)
	}
	poolList := nums[0]
	for _, n := range nums[1:] {
		poolList += "," + n
	}
	var metricsURLs []string
	for i := range 2 {
		w, err := e.startWorkerURL(ctx, fmt.Sprintf("worker %d", i+1), tg.url, simURL,
			fmt.Sprintf("SENDER_RATE=%d/s", poolRate), "SENDER_POOL="+poolList, "CONCURRENCY=100")
		if err != nil {
			return result{}, err
		}
		defer w.stop(15 * time.Second)
		metricsURLs = append(metricsURLs, w.metricsURL)
	}

	rdb := tg.rdb
	limiter, err := loadBooker(ctx, rdb)
	if err != nil {
		return result{}, err
	}
	senders, err := pool.Load(ctx, rdb, limiter)
	if err != nil {
		return result{}, fmt.Errorf("the workers' sender pool: %w", err)
	}
	booker := pool.WithPool(limiter, senders)
	client := asynq.NewClientFromRedisClient(rdb)
	defer client.Close()
	began := time.Now()
	if err := parallel(ctx, poolN, 16, func(i int) error {
		_, err := enqueueSMS(ctx, rdb, client, booker, smsPayload(i, benchCampaign), tasks.Rules{}, asynq.Queue(tasks.QueueBulk))
		return err
	}); err != nil {
		return result{}, fmt.Errorf("enqueue: %w", err)
	}
	queued := time.Since(began)

	deadline := time.Now().Add(poolN*time.Second/(poolNumbers*poolRate) + 60*time.Second)
	for len(sim.Messages()) < poolN {
		if time.Now().After(deadline) {
			return result{}, fmt.Errorf("only %d of %d messages sent in time", len(sim.Messages()), poolN)
		}
		select {
		case <-ctx.Done():
			return result{}, ctx.Err()
		case <-time.After(100 * time.Millisecond):
		}
	}
	var at []time.Time
	byFrom := map[string][]time.Time{}
	for _, m := range sim.Messages() {
		at = append(at, m.CreatedAt)
		byFrom[m.From] = append(byFrom[m.From], m.CreatedAt)
	}
	busiest, least, most := 0, poolN, 0
	for _, n := range nums {
		busiest = max(busiest, maxInWindow(byFrom[n], time.Second))
		least, most = min(least, len(byFrom[n])), max(most, len(byFrom[n]))
	}
	// The workers' own record of each request's start ("sending" in the
	// communications log, written once the limiter let the message go):
	// this is the limit as the workers kept it, before delivery jitter.
	started := map[string][]time.Time{}
	if _, err := commlog.New(rdb, commlog.Config{}).Read(ctx, commlog.Filter{}, func(en commlog.Entry) error {
		if en.Event == commlog.Sending {
			started[en.From] = append(started[en.From], en.At)
		}
		return nil
	}); err != nil {
		return result{}, fmt.Errorf("read the communications log: %w", err)
	}
	busiestStart := 0
	for _, n := range nums {
		busiestStart = max(busiestStart, maxInWindow(started[n], time.Second))
	}
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
		if int(sent) >= poolN || time.Now().After(wait) {
			break
		}
		time.Sleep(50 * time.Millisecond)
	}
	agg := float64(poolNumbers * poolRate)
	perMsg := runs / max(sent, 1)
	return result{Figures: []figure{
		{Name: "messages sent", Value: float64(len(at))},
		ratioAtLeast(figure{Name: "achieved vs the pool's summed rate", Value: achievedRate(at), Unit: "msg/s"}, agg, 0.95),
		held(figure{Name: "busiest number-second at the simulator", Value: float64(busiest), Target: fmt.Sprintf("≤ %d (N + burst)", poolRate+1)}, busiest <= poolRate+1),
		held(figure{Name: "busiest number-second of request starts", Value: float64(busiestStart), Target: fmt.Sprintf("≤ %d (N + burst)", poolRate+1)}, busiestStart <= poolRate+1),
		{Name: "fewest / most messages of one number", Value: float64(least), Unit: fmt.Sprintf("/ %d", most)},
		held(figure{Name: "handler runs per message sent", Value: perMsg, Target: "≤ 1.2"}, perMsg <= 1.2 && sent > 0),
	}, Note: fmt.Sprintf("enqueue of %d took %s (booking against the pool's 100/s)", poolN, queued.Round(time.Millisecond))}, nil
}
