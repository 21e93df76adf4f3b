package main

import (
	"context"
	"fmt"
	"os"
	"os/exec"
	"path/filepath"
	"strings"
	"time"

	"github.com/hibiken/asynq"
	"github.com/redis/go-redis/v9"

	"github.com/sbagenthub/twilio-worker/tasks"
)

// idleWorkers is how many idle workers redis-cost starts.
const idleWorkers = 4

// redisCost: what the worker costs Redis in commands (INFO stats'
// total_commands_processed, summed over a cluster's masters; commands run
// inside Lua count). Idle: idleWorkers workers with no tasks, over a
// window. Per message: producer.SendSMS (enqueue sms, the HTTP API), the
// enqueue bulk command, and the handler path (the workers draining what
// SendSMS queued); baseline: bare asynq Enqueue of a task of the same size.
func redisCost(ctx context.Context, e *env) (result, error) {
	window, m := 10*time.Second, 2000
	if e.short {
		window, m = 5*time.Second, 500
	}
	tg, err := e.redis(ctx)
	if err != nil {
		return result{}, err
	}
	defer tg.close()
	rdb := tg.rdb
	meterR := meter{rdb: rdb}

	// Baseline: bare asynq enqueues, before any worker runs.
	size, err := payloadSize("")
	if err != nil {
		return result{}, err
	}
	client := asynq.NewClientFromRedisClient(rdb)
	bareCmds, err := commandsPer(ctx, meterR, m, func() error {
		return parallel(ctx, m, producers, func(int) error {
			_, err := client.EnqueueContext(ctx, asynq.NewTask(typeNoop, padding(size), smsOptions(tasks.QueueDefault)...))
			return err
		})
	})
	if err != nil {
		return result{}, fmt.Errorf("bare asynq: %w", err)
	}
	if err := flush(ctx, rdb); err != nil {
		return result{}, err
	}

	_, simURL, stopSim, err := startSim()
	if err != nil {
		return result{}, err
	}
	defer stopSim()
	var workers []*worker
	defer func() {
		for _, w := range workers {
			w.stop(15 * time.Second)
		}
	}()
	for i := range idleWorkers {
		w, err := e.startWorkerURL(ctx, fmt.Sprintf("worker %d", i+1), tg.url, simURL, append(noLimits, "CONCURRENCY=50")...)
		if err != nil {
			return result{}, err
		}
		workers = append(workers, w)
	}
	// Let start-up work (key migration, published limits, first polls) pass.
	select {
	case <-ctx.Done():
		return result{}, ctx.Err()
	case <-time.After(3 * time.Second):
	}
	// CONFIG RESETSTAT: INFO commandstats then covers the window alone.
	if err := forEachNode(ctx, rdb, func(ctx context.Context, n *redis.Client) error { return n.ConfigResetStat(ctx).Err() }); err != nil {
		return result{}, err
	}
	before, err := meterR.read(ctx)
	if err != nil {
		return result{}, err
	}
	start := time.Now()
	select {
	case <-ctx.Done():
		return result{}, ctx.Err()
	case <-time.After(window):
	}
	after, err := meterR.read(ctx)
	if err != nil {
		return result{}, err
	}
	secs := time.Since(start).Seconds()
	// One INFO of ours is in the window.
	idle := float64(after.commands-before.commands-1) / float64(idleWorkers) / secs
	top, err := topCommands(ctx, rdb, float64(idleWorkers)*secs)
	if err != nil {
		return result{}, err
	}

	// Per message: the producer path onto the paused default queue, then
	// the handler path as the workers drain it.
	insp := asynq.NewInspectorFromRedisClient(rdb)
	for _, q := range []string{tasks.QueueDefault, tasks.QueueBulk} {
		if err := insp.PauseQueue(q); err != nil {
			return result{}, err
		}
	}
	booker, err := loadBooker(ctx, rdb)
	if err != nil {
		return result{}, err
	}
	client = asynq.NewClientFromRedisClient(rdb)
	sendCmds, err := commandsPer(ctx, meterR, m, func() error {
		return parallel(ctx, m, producers, func(i int) error {
			_, err := enqueueSMS(ctx, rdb, client, booker, smsPayload(i, ""), tasks.Rules{}, asynq.TaskID(fmt.Sprintf("rc-%d", i)))
			return err
		})
	})
	if err != nil {
		return result{}, fmt.Errorf("producer.SendSMS: %w", err)
	}
	_, drainUse, err := drain(ctx, meterR, tasks.QueueDefault, m, time.Minute+time.Duration(m)*10*time.Millisecond)
	if err != nil {
		return result{}, fmt.Errorf("drain: %w", err)
	}
	handlerCmds := float64(drainUse.commands) / float64(m)

	figs := []figure{
		{Name: "idle workers", Value: idleWorkers},
		held(figure{Name: "idle Redis commands per worker per second", Value: idle, Target: "≤ 60"}, idle <= 60),
		versus(figure{Name: "commands per message: producer.SendSMS (vs bare asynq Enqueue)", Value: sendCmds}, bareCmds),
		{Name: "commands per message: handler path (4 workers draining)", Value: handlerCmds},
	}
	note := fmt.Sprintf("Idle window %s; the most called commands in it, per worker per second: %s", window, top)
	if bin, err := e.build(ctx, "enqueue"); err == nil && hasBulk(ctx, bin) {
		file := filepath.Join(e.dir, "redis-cost-recipients.txt")
		if err := writeNumbers(file, m); err != nil {
			return result{}, err
		}
		bulkCmds, err := commandsPer(ctx, meterR, m, func() error {
			cmd := exec.CommandContext(ctx, bin, "bulk", "--campaign", "redis-cost", "--body", smsPayload(0, "").Body, file)
			cmd.Env = append(os.Environ(), "REDIS_URL="+tg.url)
			if out, err := cmd.CombinedOutput(); err != nil {
				return fmt.Errorf("enqueue bulk: %w\n%s", err, out)
			}
			return nil
		})
		if err != nil {
			return result{}, err
		}
		figs = append(figs, versus(figure{Name: "commands per recipient: enqueue bulk (vs bare asynq Enqueue)", Value: bulkCmds}, bareCmds))
	}
	return result{Figures: figs, Note: note}, nil
}

// commandsPer runs fn and returns the Redis commands it cost, per message of m.
func commandsPer(ctx context.Context, mt meter, m int, fn func() error) (float64, error) {
	before, err := mt.read(ctx)
	if err != nil {
		return 0, err
	}
	if err := fn(); err != nil {
		return 0, err
	}
	after, err := mt.read(ctx)
	if err != nil {
		return 0, err
	}
	return float64(after.commands-before.commands-1) / float64(m), nil
}

// topCommands is the three commands with the most calls since the stats
// were reset (INFO commandstats, summed over the masters), divided by per,
// as text.
func topCommands(ctx context.Context, rdb redis.UniversalClient, per float64) (string, error) {
	calls := map[string]int64{}
	err := forEachNode(ctx, rdb, func(ctx context.Context, n *redis.Client) error {
		info, err := n.Info(ctx, "commandstats").Result()
		if err != nil {
			return err
		}
		for line := range strings.Lines(info) {
			name, rest, ok := strings.Cut(strings.TrimSpace(line), ":")
			if !ok || !strings.HasPrefix(name, "cmdstat_") {
				continue
			}
			for _, kv := range strings.Split(rest, ",") {
				if v, ok := strings.CutPrefix(kv, "calls="); ok {
					var n int64
					fmt.Sscan(v, &n)
					calls[strings.TrimPrefix(name, "cmdstat_")] += n
				}
			}
		}
		return nil
	})
	if err != nil {
		return "", err
	}
	type kv struct {
		k string
		v int64
	}
	var all []kv
	for k, v := range calls {
		all = append(all, kv{k, v})
	}
	for i := range all { // a few entries: selection sort is enough
		for j := i + 1; j < len(all); j++ {
			if all[j].v > all[i].v {
				all[i], all[j] = all[j], all[i]
			}
		}
	}
	var parts []string
	for _, c := range all[:min(3, len(all))] {
		parts = append(parts, fmt.Sprintf("%s %.1f", c.k, float64(c.v)/per))
	}
	return strings.Join(parts, ", "), nil
}
