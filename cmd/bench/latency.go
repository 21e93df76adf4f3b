package main

import (
	"context"
	"fmt"
	"math"
	"slices"
	"time"

	"github.com/hibiken/asynq"
	"github.com/redis/go-redis/v9"

	"github.com/sbagenthub/twilio-worker/tasks"
	"github.com/sbagenthub/twilio-worker/twiliosim"
)

const sampleEvery = 20 * time.Millisecond

// latency: how long a critical message takes from just before its enqueue
// (the producer (producer.SendSMS) on the critical queue) to the simulator's createdAt for
// it, idle and while a bulk campaign drains; baseline: bare asynq, from just
// before Enqueue to its no-op handler's start, idle.
func latency(ctx context.Context, e *env) (result, error) {
	samples, campaign := 100, 5000
	if e.short {
		samples, campaign = 30, 1000
	}
	const conc = 50
	tg, err := e.redis(ctx)
	if err != nil {
		return result{}, err
	}
	defer tg.close()
	rdb := tg.rdb

	bareLat, err := bareLatency(ctx, rdb, asynq.NewClientFromRedisClient(rdb), samples, conc)
	if err != nil {
		return result{}, fmt.Errorf("bare asynq: %w", err)
	}
	if err := flush(ctx, rdb); err != nil {
		return result{}, err
	}

	sim, simURL, stopSim, err := startSim()
	if err != nil {
		return result{}, err
	}
	defer stopSim()
	w, err := e.startWorkerURL(ctx, "worker", tg.url, simURL, append(noLimits, fmt.Sprintf("CONCURRENCY=%d", conc))...)
	if err != nil {
		return result{}, err
	}
	defer w.stop(15 * time.Second)
	booker, err := loadBooker(ctx, rdb)
	if err != nil {
		return result{}, err
	}
	client := asynq.NewClientFromRedisClient(rdb)
	critical := func(phase string, i int) (string, error) {
		p := tasks.SMSPayload{To: benchNumber(200000 + i), Body: fmt.Sprintf("latency %s %d: your code is 123456", phase, i), ValidFor: "10m"}
		_, err := enqueueSMS(ctx, rdb, client, booker, p, tasks.Rules{}, asynq.Queue(tasks.QueueCritical))
		return p.Body, err
	}

	idle, err := sample(ctx, samples, func(i int) (string, error) { return critical("idle", i) })
	if err != nil {
		return result{}, err
	}
	idleLat, _, err := sentAfter(ctx, sim, idle, 0, 30*time.Second)
	if err != nil {
		return result{}, fmt.Errorf("idle: %w", err)
	}

	// The campaign: queued on the paused bulk queue, then let go.
	insp := asynq.NewInspectorFromRedisClient(rdb)
	if err := insp.PauseQueue(tasks.QueueBulk); err != nil {
		return result{}, err
	}
	err = parallel(ctx, campaign, producers, func(i int) error {
		_, err := enqueueSMS(ctx, rdb, client, booker, smsPayload(i, benchCampaign), tasks.Rules{}, asynq.Queue(tasks.QueueBulk))
		return err
	})
	if err != nil {
		return result{}, fmt.Errorf("queue the campaign: %w", err)
	}
	if err := insp.UnpauseQueue(tasks.QueueBulk); err != nil {
		return result{}, err
	}
	busy, err := sample(ctx, samples, func(i int) (string, error) { return critical("busy", i) })
	if err != nil {
		return result{}, err
	}
	busyLat, lastCampaign, err := sentAfter(ctx, sim, busy, campaign, time.Minute+time.Duration(campaign)*10*time.Millisecond)
	if err != nil {
		return result{}, fmt.Errorf("while the campaign drains: %w\n%s", err, w.tail())
	}
	during := 0
	for _, s := range busy {
		if sent, ok := s.sent(); ok && !sent.After(lastCampaign) {
			during++
		}
	}

	ms := func(d time.Duration) float64 { return float64(d.Microseconds()) / 1000 }
	bp50, bp99 := ms(percentile(bareLat, 50)), ms(percentile(bareLat, 99))
	ip50, ip99 := ms(percentile(idleLat, 50)), ms(percentile(idleLat, 99))
	cp50, cp99 := ms(percentile(busyLat, 50)), ms(percentile(busyLat, 99))
	return result{Figures: []figure{
		versus(figure{Name: "critical p50, idle", Value: ip50, Unit: "ms"}, bp50),
		held(versus(figure{Name: "critical p99, idle", Value: ip99, Unit: "ms", Target: "< 250 ms"}, bp99), ip99 < 250),
		{Name: "critical p50, campaign draining", Value: cp50, Unit: "ms"},
		held(figure{Name: "critical p99, campaign draining", Value: cp99, Unit: "ms", Target: "< 1000 ms"}, cp99 < 1000),
		{Name: "samples sent before the campaign's last message", Value: float64(during), Unit: fmt.Sprintf("of %d", samples)},
	}}, nil
}

// probe is one latency sample: when it was enqueued, and what identifies it.
type probe struct {
	key  string // the body (ours) or the task id (bare)
	at   time.Time
	done time.Time // filled by the collector
}

func (p probe) sent() (time.Time, bool) { return p.done, !p.done.IsZero() }

// sample calls enqueue n times, sampleEvery apart, and returns what each
// returned with the time just before the call.
func sample(ctx context.Context, n int, enqueue func(i int) (string, error)) ([]probe, error) {
	out := make([]probe, 0, n)
	tick := time.NewTicker(sampleEvery)
	defer tick.Stop()
	for i := range n {
		at := time.Now()
		key, err := enqueue(i)
		if err != nil {
			return nil, fmt.Errorf("enqueue sample %d: %w", i, err)
		}
		out = append(out, probe{key: key, at: at})
		select {
		case <-ctx.Done():
			return nil, ctx.Err()
		case <-tick.C:
		}
	}
	return out, nil
}

// sentAfter waits until the simulator has every probe's body and others
// other messages, fills each probe's done with its createdAt and returns
// the latencies, and the createdAt of the last other message.
func sentAfter(ctx context.Context, sim *twiliosim.Server, probes []probe, others int, timeout time.Duration) ([]time.Duration, time.Time, error) {
	want := map[string]int{}
	for i, p := range probes {
		want[p.key] = i
	}
	deadline := time.Now().Add(timeout)
	for {
		var last time.Time
		found, rest := 0, 0
		for _, m := range sim.Messages() {
			if i, ok := want[m.Body]; ok {
				probes[i].done = m.CreatedAt
				found++
			} else {
				rest++
				if m.CreatedAt.After(last) {
					last = m.CreatedAt
				}
			}
		}
		if found == len(probes) && rest >= others {
			lat := make([]time.Duration, len(probes))
			for i, p := range probes {
				lat[i] = p.done.Sub(p.at)
			}
			return lat, last, nil
		}
		if time.Now().After(deadline) {
			return nil, last, fmt.Errorf("%d of %d samples and %d of %d other messages sent after %s", found, len(probes), rest, others, timeout)
		}
		select {
		case <-ctx.Done():
			return nil, last, ctx.Err()
		case <-time.After(50 * time.Millisecond):
		}
	}
}

// bareLatency is bare asynq's enqueue-to-handler-start latency on the
// critical queue, idle.
func bareLatency(ctx context.Context, rdb redis.UniversalClient, client *asynq.Client, n, conc int) ([]time.Duration, error) {
	size, err := payloadSize("")
	if err != nil {
		return nil, err
	}
	b, err := startBare(rdb, conc)
	if err != nil {
		return nil, err
	}
	defer b.stop()
	time.Sleep(200 * time.Millisecond) // let the server settle into its idle polling
	pl := padding(size)
	probes, err := sample(ctx, n, func(i int) (string, error) {
		id := fmt.Sprintf("lat-%d", i)
		_, err := client.EnqueueContext(ctx, asynq.NewTask(typeNoop, pl, append(smsOptions(tasks.QueueCritical), asynq.TaskID(id))...))
		return id, err
	})
	if err != nil {
		return nil, err
	}
	deadline := time.Now().Add(30 * time.Second)
	lat := make([]time.Duration, 0, n)
	for _, p := range probes {
		for {
			if at, ok := b.startedAt(p.key); ok {
				lat = append(lat, at.Sub(p.at))
				break
			}
			if time.Now().After(deadline) {
				return nil, fmt.Errorf("task %s never ran", p.key)
			}
			time.Sleep(10 * time.Millisecond)
		}
	}
	return lat, nil
}

// percentile is the nearest-rank p-th percentile (0 < p <= 100) of ds; 0
// when ds is empty.
func percentile(ds []time.Duration, p float64) time.Duration {
	if len(ds) == 0 {
		return 0
	}
	s := slices.Clone(ds)
	slices.Sort(s)
	rank := int(math.Ceil(float64(len(s)) * p / 100))
	return s[min(max(rank, 1), len(s))-1]
}
