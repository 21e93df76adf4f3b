package main

import (
	"context"
	"fmt"
	"time"

	"github.com/hibiken/asynq"

	"github.com/sbagenthub/twilio-worker/tasks"
	"github.com/sbagenthub/twilio-worker/twiliosim"
)

// throughput: N sms:send tasks through the whole pipeline of the worker
// binary (payload checks, ledger, rate limiter, opt-out check, HTTP to a
// zero-latency simulator, delivery record and its follow-up task, result)
// against bare asynq completing as many no-op tasks with the same options
// and payload size, at the same concurrency on the same Redis. It also
// reports where the time goes: Redis commands and CPU per message.
func throughput(ctx context.Context, e *env) (result, error) {
	n, conc := 5000, 50
	if e.short {
		n = 1000
	}
	tg, err := e.redis(ctx)
	if err != nil {
		return result{}, err
	}
	defer tg.close()
	rdb := tg.rdb

	base, baseUse, err := drainBare(ctx, meter{rdb: rdb, redisPids: tg.pids}, n, conc)
	if err != nil {
		return result{}, fmt.Errorf("bare asynq: %w", err)
	}
	if err := flush(ctx, rdb); err != nil {
		return result{}, err
	}
	d, err := drainPipeline(ctx, e, tg, n, 0, fmt.Sprintf("CONCURRENCY=%d", conc))
	if err != nil {
		return result{}, err
	}
	ours, bareRate := float64(n)/d.took.Seconds(), float64(n)/base.Seconds()
	cmds, redisUS, workerUS, simUS := d.use.perTask(n)
	bCmds, bRedisUS, _, bServerUS := baseUse.perTask(n)
	return result{Figures: tg.redisCPUKnown([]figure{
		{Name: "messages", Value: float64(n)},
		ratioAtLeast(figure{Name: "sms:send drained vs bare asynq no-op", Value: ours, Unit: "msg/s"}, bareRate, 0.6),
		{Name: "handler runs per message sent", Value: d.runsPerMsg},
		held(versus(figure{Name: "Redis commands per message (incl. inside Lua)", Value: cmds, Target: "≤ 25"}, bCmds), cmds <= 25),
		versus(figure{Name: "redis-server CPU per message", Value: redisUS, Unit: "µs"}, bRedisUS),
		versus(figure{Name: "worker CPU per message (baseline: bare server)", Value: workerUS, Unit: "µs"}, bServerUS),
		{Name: "simulator + bench CPU per message", Value: simUS, Unit: "µs"},
	})}, nil
}

// twilioLatency: the pipeline against a simulator that answers after
// 100 ms, with CONCURRENCY=200 and the worker's own Twilio pacing raised
// out of the way; the bound is CONCURRENCY / latency.
func twilioLatency(ctx context.Context, e *env) (result, error) {
	const conc, lat = 200, 100 * time.Millisecond
	bound := conc / lat.Seconds()
	n := 12000 // about 6 s at the bound
	if e.short {
		n = 2000
	}
	tg, err := e.redis(ctx)
	if err != nil {
		return result{}, err
	}
	defer tg.close()
	d, err := drainPipeline(ctx, e, tg, n, lat, fmt.Sprintf("CONCURRENCY=%d", conc))
	if err != nil {
		return result{}, err
	}
	rate := float64(n) / d.took.Seconds()
	_, redisUS, workerUS, simUS := d.use.perTask(n)
	return result{Figures: tg.redisCPUKnown([]figure{
		{Name: "messages", Value: float64(n)},
		ratioAtLeast(figure{Name: "sms:send drained vs bound CONCURRENCY/latency", Value: rate, Unit: "msg/s"}, bound, 0.9),
		{Name: "handler runs per message sent", Value: d.runsPerMsg},
		{Name: "CPU per message: worker + redis-server + simulator", Value: workerUS + redisUS + simUS, Unit: "µs"},
		{Name: "worker peak RSS (VmHWM)", Value: float64(d.peakRSS) / (1 << 20), Unit: "MiB"},
	})}, nil
}

// drained is what drainPipeline measured.
type drained struct {
	took       time.Duration
	use        usage // the drain
	enqueue    usage // queuing the n messages (the worker idle meanwhile)
	runsPerMsg float64
	peakRSS    int64 // the worker's VmHWM at the end, bytes
}

// drainPipeline starts the simulator (answering after lat) and a worker with
// noLimits and extra, queues n messages on the paused default queue through
// producer.SendSMS, resumes the queue and times until every sms:send task
// is completed.
func drainPipeline(ctx context.Context, e *env, tg *target, n int, lat time.Duration, extra ...string) (drained, error) {
	rdb := tg.rdb
	sim, simURL, stopSim, err := startSim()
	if err != nil {
		return drained{}, err
	}
	defer stopSim()
	if lat > 0 {
		if err := sim.UpdateKnobs(func(k *twiliosim.Knobs) { k.Latency = twiliosim.Latency{Min: lat, Max: lat} }); err != nil {
			return drained{}, err
		}
	}
	w, err := e.startWorkerURL(ctx, "worker", tg.url, simURL, append(noLimits, extra...)...)
	if err != nil {
		return drained{}, err
	}
	defer w.stop(15 * time.Second)

	insp := asynq.NewInspectorFromRedisClient(rdb)
	if err := insp.PauseQueue(tasks.QueueDefault); err != nil {
		return drained{}, err
	}
	booker, err := loadBooker(ctx, rdb)
	if err != nil {
		return drained{}, err
	}
	client := asynq.NewClientFromRedisClient(rdb)
	m := meter{rdb: rdb, redisPids: tg.pids, workerPid: w.cmd.Process.Pid}
	queuing, err := m.read(ctx)
	if err != nil {
		return drained{}, err
	}
	err = parallel(ctx, n, producers, func(i int) error {
		_, err := enqueueSMS(ctx, rdb, client, booker, smsPayload(i, ""), tasks.Rules{}, asynq.TaskID(fmt.Sprintf("tp-%d", i)))
		return err
	})
	if err != nil {
		return drained{}, fmt.Errorf("queue the messages: %w", err)
	}
	queued, err := m.read(ctx)
	if err != nil {
		return drained{}, err
	}
	took, use, err := drain(ctx, m, tasks.QueueDefault, n, time.Duration(n)*10*time.Millisecond+time.Minute)
	if err != nil {
		return drained{}, fmt.Errorf("%w\n%s", err, w.tail())
	}
	d := drained{took: took, use: use, enqueue: queued.sub(queuing)}
	d.peakRSS, _ = w.peakRSS()
	if got := len(sim.Messages()); got != n {
		return d, fmt.Errorf("the simulator received %d messages, want %d", got, n)
	}
	mt, err := scrape(w.metricsURL, `twilioworker_task_runs_total{type="sms:send"}`, "twilioworker_sms_sent_total")
	if err != nil {
		return d, fmt.Errorf("scrape: %w", err)
	}
	d.runsPerMsg = mt[`twilioworker_task_runs_total{type="sms:send"}`] / max(mt["twilioworker_sms_sent_total"], 1)
	return d, nil
}

// drainBare queues n no-op tasks (the sms:send options and payload size) on
// the paused default queue, then times bare asynq completing them.
func drainBare(ctx context.Context, m meter, n, conc int) (time.Duration, usage, error) {
	size, err := payloadSize("")
	if err != nil {
		return 0, usage{}, err
	}
	insp := asynq.NewInspectorFromRedisClient(m.rdb)
	if err := insp.PauseQueue(tasks.QueueDefault); err != nil {
		return 0, usage{}, err
	}
	b, err := startBare(m.rdb, conc)
	if err != nil {
		return 0, usage{}, err
	}
	defer b.stop()
	client := asynq.NewClientFromRedisClient(m.rdb)
	pl := padding(size)
	err = parallel(ctx, n, producers, func(i int) error {
		_, err := client.EnqueueContext(ctx, asynq.NewTask(typeNoop, pl,
			append(smsOptions(tasks.QueueDefault), asynq.TaskID(fmt.Sprintf("noop-%d", i)))...))
		return err
	})
	if err != nil {
		return 0, usage{}, err
	}
	return drain(ctx, m, tasks.QueueDefault, n, time.Minute+time.Duration(n)*time.Millisecond)
}
