package wake

import (
	"context"
	"errors"
	"strconv"
	"strings"
	"sync/atomic"
	"testing"
	"time"

	"github.com/hibiken/asynq"
	"github.com/redis/go-redis/v9"

	"github.com/sbagenthub/twilio-worker/internal/redistest"
)

// clock is a settable time for the gate's unit tests.
type clock struct{ t time.Time }

func (c *clock) now() time.Time      { return c.t }
func (c *clock) set(sec, ms int)     { c.t = time.Unix(int64(sec), int64(ms)*int64(time.Millisecond)) }
func (c *clock) add(d time.Duration) { c.t = c.t.Add(d) }
func newGate(c *clock, idle time.Duration) *Gate {
	return &Gate{Idle: idle, Burst: time.Second, BusyForward: 100 * time.Millisecond, Now: c.now}
}

func TestForwardRunsOncePerSecondWhileIdle(t *testing.T) {
	c := &clock{}
	g := newGate(c, time.Minute)
	const src = "asynq:{default}:scheduled"
	steps := []struct {
		sec, ms int
		want    bool
	}{
		{100, 5, true},    // first round
		{100, 25, false},  // same second: nothing new can be due
		{100, 999, false}, // still
		{101, 2, true},    // a new second: tasks due at it
		{101, 500, false},
	}
	for _, s := range steps {
		c.set(s.sec, s.ms)
		if got := g.allowForward(src); got != s.want {
			t.Fatalf("at %d.%03d: allowForward = %v, want %v", s.sec, s.ms, got, s.want)
		}
		g.forwardDone(src, 0, false)
	}
	g.Wake() // a producer announced: a task may be due within this second
	c.add(10 * time.Millisecond)
	if !g.allowForward(src) {
		t.Fatal("after Wake the next forward round was skipped")
	}
	g.forwardDone(src, 3, false)
	c.add(time.Millisecond)
	if !g.allowForward(src) {
		t.Fatal("a round that moved tasks is asked again at once by asynq; the gate skipped that")
	}
	g.forwardDone(src, 0, false)
	c.add(time.Millisecond)
	if g.allowForward(src) {
		t.Fatal("the repeat returned 0; the gate let a third round through within 2 ms")
	}
	c.add(150 * time.Millisecond) // busy (tasks were moved): BusyForward applies
	if !g.allowForward(src) {
		t.Fatal("busy: a round 150 ms after the last was skipped (BusyForward is 100 ms)")
	}
}

func TestDequeuePollsOncePerIdleIntervalUntilWoken(t *testing.T) {
	c := &clock{}
	c.set(100, 0)
	g := newGate(c, time.Second)
	const q = "asynq:{critical}:pending"
	if !g.allowDequeue(q) {
		t.Fatal("first poll skipped")
	}
	c.add(500 * time.Millisecond)
	if g.allowDequeue(q) {
		t.Fatal("idle: a second poll within the idle interval was let through")
	}
	if !g.allowDequeue("asynq:{default}:pending") {
		t.Fatal("another queue's first poll skipped")
	}
	c.add(600 * time.Millisecond)
	if !g.allowDequeue(q) {
		t.Fatal("idle: the poll after the idle interval was skipped")
	}
	c.add(10 * time.Millisecond)
	g.Wake()
	for i := 0; i < 3; i++ {
		c.add(20 * time.Millisecond)
		if !g.allowDequeue(q) {
			t.Fatalf("woken: poll %d skipped", i)
		}
	}
	c.add(2 * time.Second) // the burst is over
	g.allowDequeue(q)
	c.add(20 * time.Millisecond)
	if g.allowDequeue(q) {
		t.Fatal("after the burst the gate kept polling at full speed")
	}
}

// server runs an asynq server on a client with g installed (and Listen), and
// returns a plain client for producing and an inspector.
func server(t *testing.T, g *Gate, h asynq.HandlerFunc, retryDelay time.Duration) (*redis.Client, *asynq.Inspector) {
	t.Helper()
	r := redistest.Start(t)
	worker, producer := r.Client(t), r.Client(t)
	worker.AddHook(g)
	ctx, cancel := context.WithCancel(context.Background())
	t.Cleanup(cancel)
	go Listen(ctx, worker, g)
	srv := asynq.NewServerFromRedisClient(worker, asynq.Config{
		Concurrency:              4,
		Queues:                   map[string]int{"critical": 6, "default": 3, "bulk": 1},
		TaskCheckInterval:        20 * time.Millisecond,
		DelayedTaskCheckInterval: 20 * time.Millisecond,
		RetryDelayFunc:           func(int, error, *asynq.Task) time.Duration { return retryDelay },
		LogLevel:                 asynq.FatalLevel,
	})
	mux := asynq.NewServeMux()
	mux.HandleFunc("test", h)
	if err := srv.Start(mux); err != nil {
		t.Fatal(err)
	}
	t.Cleanup(srv.Shutdown)
	insp := asynq.NewInspectorFromRedisClient(producer)
	t.Cleanup(func() { _ = insp.Close() })
	return producer, insp
}

func waitFor(t *testing.T, what string, cond func() bool) {
	t.Helper()
	deadline := time.Now().Add(60 * time.Second)
	for !cond() {
		if time.Now().After(deadline) {
			t.Fatalf("timed out waiting for %s", what)
		}
		time.Sleep(10 * time.Millisecond)
	}
}

func TestIdleWorkerRunsAnnouncedTask(t *testing.T) {
	g := &Gate{Idle: time.Hour} // the idle poll never comes round in this test
	done := make(chan string, 1)
	producer, insp := server(t, g, func(ctx context.Context, _ *asynq.Task) error {
		id, _ := asynq.GetTaskID(ctx)
		done <- id
		return nil
	}, time.Second)
	waitFor(t, "the gate to skip polls", func() bool { return g.Skipped() > 0 })

	client := asynq.NewClientFromRedisClient(producer)
	if _, err := client.Enqueue(asynq.NewTask("test", nil), asynq.Queue("critical"), asynq.TaskID("quiet")); err != nil {
		t.Fatal(err)
	}
	// Not announced: the idle worker does not look (and so costs Redis nothing).
	skipped := g.Skipped()
	waitFor(t, "more skipped polls", func() bool { return g.Skipped() > skipped+20 })
	info, err := insp.GetTaskInfo("critical", "quiet")
	if err != nil {
		t.Fatal(err)
	}
	if info.State != asynq.TaskStatePending {
		t.Fatalf("unannounced task is %v while the worker idles; want pending", info.State)
	}

	Announce(context.Background(), producer)
	select {
	case id := <-done:
		if id != "quiet" {
			t.Fatalf("ran %q", id)
		}
	case <-time.After(60 * time.Second):
		t.Fatal("the announced task did not run")
	}
}

func TestIdleWorkerRunsScheduledAndRetriedTasks(t *testing.T) {
	g := &Gate{Idle: time.Hour}
	var runs atomic.Int32
	done := make(chan struct{})
	producer, _ := server(t, g, func(ctx context.Context, _ *asynq.Task) error {
		if runs.Add(1) == 1 {
			return errors.New("first run fails: retried at once")
		}
		close(done)
		return nil
	}, 0)
	waitFor(t, "the gate to skip polls", func() bool { return g.Skipped() > 0 })
	client := asynq.NewClientFromRedisClient(producer)
	// Scheduled and never announced: the forward round at the second
	// boundary moves it, and moving it wakes the worker.
	if _, err := client.Enqueue(asynq.NewTask("test", nil), asynq.ProcessIn(1500*time.Millisecond), asynq.MaxRetry(3)); err != nil {
		t.Fatal(err)
	}
	select {
	case <-done:
	case <-time.After(60 * time.Second):
		t.Fatalf("scheduled task ran %d times, want 2 (fail, then retry)", runs.Load())
	}
}

func TestAnnounceCoalesces(t *testing.T) {
	r := redistest.Start(t)
	rdb := r.Client(t)
	sub := rdb.Subscribe(context.Background(), Channel)
	defer sub.Close()
	if _, err := sub.Receive(context.Background()); err != nil { // the subscription confirmation
		t.Fatal(err)
	}
	pub := r.Client(t)
	start := time.Now()
	var calls int
	for time.Since(start) < CoalesceDefault/2 {
		Announce(context.Background(), pub)
		calls++
	}
	msg, err := sub.ReceiveTimeout(context.Background(), 30*time.Second)
	if err != nil {
		t.Fatalf("no announcement received: %v", err)
	}
	if m, ok := msg.(*redis.Message); !ok || m.Channel != Channel {
		t.Fatalf("received %#v", msg)
	}
	stats, err := pub.Info(context.Background(), "commandstats").Result()
	if err != nil {
		t.Fatal(err)
	}
	if n := publishCalls(stats); calls > 1 && n >= int64(calls) {
		t.Fatalf("%d Announce calls within %s made %d PUBLISH", calls, CoalesceDefault, n)
	}
}

// publishCalls reads PUBLISH's call count from INFO commandstats.
func publishCalls(info string) int64 {
	const p = "cmdstat_publish:calls="
	i := strings.Index(info, p)
	if i < 0 {
		return 0
	}
	rest := info[i+len(p):]
	n, _ := strconv.ParseInt(rest[:strings.IndexByte(rest, ',')], 10, 64)
	return n
}
