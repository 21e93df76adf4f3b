package main

import (
	"bufio"
	"context"
	"fmt"
	"os"
	"os/exec"
	"path/filepath"
	"strings"
	"time"

	"github.com/hibiken/asynq"

	"github.com/sbagenthub/twilio-worker/tasks"
)

const benchCampaign = "bench"

// enqueueRate: N recipients into the bulk queue through the producer path,
// against asynq.Client.Enqueue of as many tasks of the same payload size
// from 16 goroutines. The producer path is the `enqueue bulk` command when
// the enqueue binary has it, else the producer (producer.SendSMS) (the path of `enqueue
// sms` and the HTTP API: checks, a booked slot, the enqueue) from 16
// goroutines; the note says which.
func enqueueRate(ctx context.Context, e *env) (result, error) {
	n := 100000
	if e.short {
		n = 10000
	}
	enqueueBin, err := e.build(ctx, "enqueue")
	if err != nil {
		return result{}, err
	}
	tg, err := e.redis(ctx)
	if err != nil {
		return result{}, err
	}
	defer tg.close()
	rdb := tg.rdb

	// Baseline: bare asynq enqueues.
	size, err := payloadSize(benchCampaign)
	if err != nil {
		return result{}, err
	}
	client := asynq.NewClientFromRedisClient(rdb)
	pl := padding(size)
	m := meter{rdb: rdb, redisPids: tg.pids}
	bareBefore, err := m.read(ctx)
	if err != nil {
		return result{}, err
	}
	start := time.Now()
	err = parallel(ctx, n, producers, func(int) error {
		_, err := client.EnqueueContext(ctx, asynq.NewTask(typeNoop, pl, asynq.Queue(tasks.QueueBulk)))
		return err
	})
	if err != nil {
		return result{}, fmt.Errorf("bare asynq: %w", err)
	}
	bareRate := float64(n) / time.Since(start).Seconds()
	bareAfter, err := m.read(ctx)
	if err != nil {
		return result{}, err
	}
	bareUse := bareAfter.sub(bareBefore)
	if err := flush(ctx, rdb); err != nil {
		return result{}, err
	}

	// Ours, with limits published as a worker would, so slots are booked.
	booker, err := publishUnbound(ctx, rdb)
	if err != nil {
		return result{}, err
	}
	client = asynq.NewClientFromRedisClient(rdb)
	var took time.Duration
	var note string
	var ours usage // enqueue bulk only: workerCPU is the command's
	measured := false
	bulk := hasBulk(ctx, enqueueBin)
	if bulk {
		note = fmt.Sprintf("Measured: the `enqueue bulk` command on a file of %d numbers (one process, wall time)", n)
		file := filepath.Join(e.dir, "recipients.txt")
		if err := writeNumbers(file, n); err != nil {
			return result{}, err
		}
		cmd := exec.CommandContext(ctx, enqueueBin, "bulk", "--campaign", benchCampaign, "--body", smsPayload(0, "").Body, file)
		cmd.Env = append(os.Environ(), "REDIS_URL="+tg.url)
		var out strings.Builder
		cmd.Stdout, cmd.Stderr = &out, &out
		before, err := m.read(ctx)
		if err != nil {
			return result{}, err
		}
		start := time.Now()
		if err := cmd.Run(); err != nil {
			return result{Note: note}, fmt.Errorf("enqueue bulk: %w\n%s", err, out.String())
		}
		took = time.Since(start)
		after, err := m.read(ctx)
		if err != nil {
			return result{}, err
		}
		ours = after.sub(before)
		ours.workerCPU = cmd.ProcessState.UserTime() + cmd.ProcessState.SystemTime()
		measured = true
	} else {
		note = "Measured: the producer (producer.SendSMS) from 16 goroutines (this branch's enqueue has no `bulk` subcommand)"
		start := time.Now()
		err = parallel(ctx, n, producers, func(i int) error {
			_, err := enqueueSMS(ctx, rdb, client, booker, smsPayload(i, benchCampaign), tasks.Rules{}, asynq.Queue(tasks.QueueBulk))
			return err
		})
		took = time.Since(start)
		if err != nil {
			return result{Note: note}, err
		}
	}
	info, err := asynq.NewInspectorFromRedisClient(rdb).GetQueueInfo(tasks.QueueBulk)
	if err != nil {
		return result{Note: note}, err
	}
	queued := info.Pending + info.Scheduled
	if queued != n && !bulk {
		return result{Note: note}, fmt.Errorf("%d tasks queued on bulk, want %d", queued, n)
	}
	rate := float64(n) / took.Seconds()
	res := result{Note: note, Figures: []figure{
		{Name: "recipients", Value: float64(n)},
		{Name: "tasks queued on bulk", Value: float64(queued)},
		ratioAtLeast(figure{Name: "enqueued vs bare asynq Enqueue ×16", Value: rate, Unit: "msg/s"}, bareRate, 0.9),
	}}
	if measured {
		cmds, redisUS, procUS, _ := ours.perTask(n)
		bCmds, bRedisUS, _, bBenchUS := bareUse.perTask(n)
		res.Figures = append(res.Figures,
			versus(figure{Name: "Redis commands per recipient", Value: cmds}, bCmds),
			versus(figure{Name: "redis-server CPU per recipient", Value: redisUS, Unit: "µs"}, bRedisUS),
			versus(figure{Name: "enqueue process CPU per recipient (baseline: the bench's producers)", Value: procUS, Unit: "µs"}, bBenchUS))
	}
	res.Figures = tg.redisCPUKnown(res.Figures)
	return res, nil
}

// hasBulk reports whether the enqueue binary has the bulk subcommand: its
// --help succeeds and speaks of a campaign.
func hasBulk(ctx context.Context, bin string) bool {
	out, err := exec.CommandContext(ctx, bin, "bulk", "--help").CombinedOutput()
	return err == nil && strings.Contains(string(out), "campaign")
}

// writeNumbers writes n distinct recipients, one a line.
func writeNumbers(path string, n int) error {
	f, err := os.Create(path)
	if err != nil {
		return err
	}
	w := bufio.NewWriter(f)
	for i := range n {
		fmt.Fprintln(w, benchNumber(i))
	}
	if err := w.Flush(); err != nil {
		f.Close()
		return err
	}
	return f.Close()
}
