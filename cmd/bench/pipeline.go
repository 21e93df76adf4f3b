package main

import (
	"context"
	"errors"
	"fmt"
	"os"
	"strconv"
	"strings"
	"sync"
	"sync/atomic"
	"time"

	"github.com/hibiken/asynq"
	"github.com/redis/go-redis/v9"

	"github.com/sbagenthub/twilio-worker/ratelimit"
	"github.com/sbagenthub/twilio-worker/tasks"
	"github.com/sbagenthub/twilio-worker/twiliosim"
)

// Settings the bench holds the worker and the bare asynq server to, so that
// both poll Redis alike.
const (
	pollInterval = 20 * time.Millisecond  // POLL_INTERVAL, the worker's default
	delayedCheck = 100 * time.Millisecond // the worker's DelayedTaskCheckInterval
	producers    = 16                     // goroutines that enqueue
	// unbound is a rate no scenario reaches: limits that are applied (one Lua
	// script per decision) but never make a message wait.
	unbound = "1000000/s:1000000"
)

// noLimits are the worker settings under which no limit binds: the sender
// and recipient limits (still checked, one Lua script per message) and the
// worker's own Twilio pacing (TWILIO_MAX_RPS defaults to 100/s).
// CALL_POLL_FIRST=1m puts the first delivery poll of each message (an
// sms:track task, scheduled when the message is sent) a minute out, as with
// status callbacks (PUBLIC_URL), so that the window measures sends only.
var noLimits = []string{"SENDER_RATE=" + unbound, "RECIPIENT_RATE=" + unbound,
	"TWILIO_MAX_RPS=10000", "TWILIO_MAX_CONCURRENT=10000", "CALL_POLL_FIRST=1m"}

// worker is a worker process started by the bench.
type worker struct {
	*proc
	metricsURL string
}

// startWorker starts the worker binary on redisAddr, sending to the simulator
// at simURL from benchFrom, with the bench's poll interval, warnings only in
// its log, and extra settings last (they win).
func (e *env) startWorker(ctx context.Context, name, redisAddr, simURL string, extra ...string) (*worker, error) {
	return e.startWorkerURL(ctx, name, "redis://"+redisAddr+"/0", simURL, extra...)
}

// startWorkerURL is startWorker on the Redis that redisURL names.
func (e *env) startWorkerURL(ctx context.Context, name, redisURL, simURL string, extra ...string) (*worker, error) {
	bin, err := e.buildWorker(ctx)
	if err != nil {
		return nil, err
	}
	addr, err := freeAddr()
	if err != nil {
		return nil, err
	}
	settings := append([]string{
		"REDIS_URL=" + redisURL, "HTTP_ADDR=" + addr, "TWILIO_API_URL=" + simURL,
		"TWILIO_ACCOUNT_SID=" + twiliosim.AccountSIDDefault, "TWILIO_AUTH_TOKEN=" + twiliosim.AuthTokenDefault,
		"TWILIO_PHONE_NUMBER=" + benchFrom, "POLL_INTERVAL=" + pollInterval.String(), "LOG_LEVEL=warn",
	}, extra...)
	p, err := startProc(name, workerEnv(settings...), bin)
	if err != nil {
		return nil, err
	}
	if err := waitHTTP(ctx, "http://"+addr+"/healthz", p); err != nil {
		p.stop(5 * time.Second)
		return nil, err
	}
	return &worker{proc: p, metricsURL: "http://" + addr + "/metrics"}, nil
}

// peakRSS is the process's peak resident set (VmHWM), in bytes.
func (p *proc) peakRSS() (int64, error) {
	b, err := os.ReadFile(fmt.Sprintf("/proc/%d/status", p.cmd.Process.Pid))
	if err != nil {
		return 0, err
	}
	return statusField(string(b), "VmHWM")
}

// statusField reads a "Name:   123 kB" line of /proc/PID/status, in bytes.
func statusField(status, name string) (int64, error) {
	for line := range strings.Lines(status) {
		k, v, ok := strings.Cut(line, ":")
		if !ok || k != name {
			continue
		}
		f := strings.Fields(v)
		if len(f) == 0 {
			break
		}
		n, err := strconv.ParseInt(f[0], 10, 64)
		if err != nil {
			return 0, fmt.Errorf("%s: %w", name, err)
		}
		if len(f) > 1 && f[1] == "kB" {
			n *= 1024
		}
		return n, nil
	}
	return 0, fmt.Errorf("%s not found", name)
}

// infoField reads one field of Redis INFO output ("used_memory:123").
func infoField(info, name string) (int64, error) {
	for line := range strings.Lines(info) {
		if v, ok := strings.CutPrefix(strings.TrimSpace(line), name+":"); ok {
			return strconv.ParseInt(v, 10, 64)
		}
	}
	return 0, fmt.Errorf("INFO has no %s", name)
}

func usedMemory(ctx context.Context, rdb redis.UniversalClient) (int64, error) {
	return infoSum(ctx, rdb, "memory", "used_memory")
}

// benchAreaCodes are US area codes; with the 555 exchange they give the
// bench 300,000 distinct valid numbers.
var benchAreaCodes = []int{201, 202, 203, 205, 206, 207, 208, 209, 210, 212, 213, 214, 215, 216, 217,
	218, 219, 224, 225, 228, 229, 231, 234, 239, 240, 248, 251, 252, 253, 254}

// benchNumber is the i-th distinct recipient, in E.164.
func benchNumber(i int) string {
	return fmt.Sprintf("+1%d555%04d", benchAreaCodes[(i/10000)%len(benchAreaCodes)], i%10000)
}

// parallel calls fn(i) for i in [0, n) from workers goroutines and returns
// the first error.
func parallel(ctx context.Context, n, workers int, fn func(i int) error) error {
	var next atomic.Int64
	var wg sync.WaitGroup
	errs := make([]error, workers)
	for w := range workers {
		wg.Go(func() {
			for {
				i := int(next.Add(1)) - 1
				if i >= n || ctx.Err() != nil {
					return
				}
				if err := fn(i); err != nil {
					errs[w] = err
					next.Store(int64(n)) // stop the others
					return
				}
			}
		})
	}
	wg.Wait()
	if err := errors.Join(errs...); err != nil {
		return err
	}
	return ctx.Err()
}

// completedKey is asynq's set of completed tasks of queue (tasks with a
// retention, such as sms:send, land there when done).
func completedKey(queue string) string { return "asynq:{" + queue + "}:completed" }

// drain times how long the paused queue takes to complete n tasks once it is
// resumed: from UnpauseQueue until asynq's completed set holds n, and what
// that cost (m). Nothing else may complete on queue meanwhile.
func drain(ctx context.Context, m meter, queue string, n int, timeout time.Duration) (time.Duration, usage, error) {
	rdb := m.rdb
	insp := asynq.NewInspectorFromRedisClient(rdb)
	before, err := m.read(ctx)
	if err != nil {
		return 0, usage{}, err
	}
	start := time.Now()
	if err := insp.UnpauseQueue(queue); err != nil {
		return 0, usage{}, err
	}
	deadline := start.Add(timeout)
	for {
		done, err := rdb.ZCard(ctx, completedKey(queue)).Result()
		if err != nil {
			return 0, usage{}, err
		}
		if int(done) >= n {
			took := time.Since(start)
			after, err := m.read(ctx)
			return took, after.sub(before), err
		}
		if time.Now().After(deadline) {
			return 0, usage{}, fmt.Errorf("only %d of %d tasks done after %s", done, n, timeout)
		}
		select {
		case <-ctx.Done():
			return 0, usage{}, ctx.Err()
		case <-time.After(2 * time.Millisecond):
		}
	}
}

// publishUnbound publishes limits that do not bind, as a worker started with
// noLimits would, and returns the producers' booker loaded from them.
func publishUnbound(ctx context.Context, rdb redis.UniversalClient) (*ratelimit.Limiter, error) {
	r, err := ratelimit.ParseRate(unbound)
	if err != nil {
		return nil, err
	}
	l := ratelimit.New(rdb, ratelimit.Config{Sender: r, Recipient: r, DefaultFrom: benchFrom})
	if err := l.Publish(ctx, rdb); err != nil {
		return nil, err
	}
	return ratelimit.Load(ctx, rdb, ratelimit.Config{})
}

// smsPayload is the i-th bench message of a run.
func smsPayload(i int, campaign string) tasks.SMSPayload {
	return tasks.SMSPayload{To: benchNumber(i), Body: fmt.Sprintf("Your order %06d has shipped and will arrive on Tuesday.", i), Campaign: campaign}
}

// payloadSize is the size of an sms:send task's payload for smsPayload(0).
func payloadSize(campaign string) (int, error) {
	t, err := tasks.NewSendSMSTask(smsPayload(0, campaign), tasks.Rules{})
	if err != nil {
		return 0, err
	}
	return len(t.Payload()), nil
}

// padding is a JSON payload of exactly size bytes (at least 10).
func padding(size int) []byte {
	return []byte(`{"p":"` + strings.Repeat("x", max(size-8, 0)) + `"}`)
}

// smsOptions are the options NewSendSMSTask gives an sms:send task, for bare
// tasks that should cost asynq the same bookkeeping.
func smsOptions(queue string) []asynq.Option {
	return []asynq.Option{asynq.Queue(queue), asynq.MaxRetry(tasks.MaxRetryDefault),
		asynq.Retention(tasks.ResultTTLDefault), asynq.Timeout(tasks.SendTimeout)}
}

// flush empties Redis between a baseline and our run. An asynq.Client
// remembers which queues it registered, so make a new one after.
func flush(ctx context.Context, rdb redis.UniversalClient) error {
	return forEachNode(ctx, rdb, func(ctx context.Context, n *redis.Client) error { return n.FlushAll(ctx).Err() })
}

// loadBooker is the producers' booker, from the limits a worker published.
func loadBooker(ctx context.Context, rdb redis.UniversalClient) (*ratelimit.Limiter, error) {
	l, err := ratelimit.Load(ctx, rdb, ratelimit.Config{})
	if err != nil {
		return nil, fmt.Errorf("the workers' published limits: %w", err)
	}
	return l, nil
}

// clockTick is USER_HZ, the unit of /proc/PID/stat's CPU times (100 on
// every Linux the bench runs on).
const clockTick = 10 * time.Millisecond

// cpuTime is the user+system CPU time the process has used.
func cpuTime(pid int) (time.Duration, error) {
	b, err := os.ReadFile(fmt.Sprintf("/proc/%d/stat", pid))
	if err != nil {
		return 0, err
	}
	ticks, err := statCPU(string(b))
	return time.Duration(ticks) * clockTick, err
}

// statCPU is utime+stime, in clock ticks, from a /proc/PID/stat line (the
// command name in parentheses may hold spaces).
func statCPU(stat string) (int64, error) {
	i := strings.LastIndexByte(stat, ')')
	if i < 0 {
		return 0, errors.New("stat: no command name")
	}
	f := strings.Fields(stat[i+1:]) // f[0] is field 3, the state
	if len(f) < 13 {
		return 0, errors.New("stat: too few fields")
	}
	var sum int64
	for _, s := range f[11:13] { // fields 14 and 15: utime, stime
		n, err := strconv.ParseInt(s, 10, 64)
		if err != nil {
			return 0, fmt.Errorf("stat: %w", err)
		}
		sum += n
	}
	return sum, nil
}

// usage is what a run cost: Redis commands and the CPU time of the Redis
// server, the worker (or the bare asynq server) and the bench process.
type usage struct {
	commands                      int64
	redisCPU, workerCPU, benchCPU time.Duration
}

// meter reads usage counters (commands summed over a cluster's masters);
// pids of 0 are skipped.
type meter struct {
	rdb       redis.UniversalClient
	redisPids []int
	workerPid int
}

func (m meter) read(ctx context.Context) (usage, error) {
	var u usage
	var err error
	if u.commands, err = infoSum(ctx, m.rdb, "stats", "total_commands_processed"); err != nil {
		return u, err
	}
	for _, pid := range m.redisPids {
		d, err := cpuTime(pid)
		if err != nil {
			return u, err
		}
		u.redisCPU += d
	}
	for _, p := range []struct {
		pid int
		dst *time.Duration
	}{{m.workerPid, &u.workerCPU}, {os.Getpid(), &u.benchCPU}} {
		if p.pid == 0 {
			continue
		}
		if *p.dst, err = cpuTime(p.pid); err != nil {
			return u, err
		}
	}
	return u, nil
}

// sub is u - v.
func (u usage) sub(v usage) usage {
	return usage{u.commands - v.commands, u.redisCPU - v.redisCPU, u.workerCPU - v.workerCPU, u.benchCPU - v.benchCPU}
}

// perTask is u divided over n tasks: commands, and CPU in microseconds.
func (u usage) perTask(n int) (commands, redisUS, workerUS, benchUS float64) {
	us := func(d time.Duration) float64 { return float64(d.Microseconds()) / float64(n) }
	return float64(u.commands) / float64(n), us(u.redisCPU), us(u.workerCPU), us(u.benchCPU)
}
