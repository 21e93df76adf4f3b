package main

import (
	"context"
	"errors"
	"fmt"
	"os"
	"runtime"
	"strconv"
	"strings"
	"sync"
	"testing"
	"time"

	"github.com/redis/go-redis/v9"

	"github.com/sbagenthub/twilio-worker/internal/redisconn"
	"github.com/sbagenthub/twilio-worker/internal/redistest"
)

// target is the Redis a scenario runs on: a private redis-server (the
// default), a private 3-master Redis Cluster (-cluster), or the Redis that
// -redis / BENCH_REDIS_URL names (emptied first).
type target struct {
	url     string // REDIS_URL for the worker and the commands
	rdb     redis.UniversalClient
	cluster bool
	pids    []int // redis-server processes whose CPU is counted; none for -redis
	close   func()
}

// where says which Redis the run used, for the report.
func (e *env) where() string {
	switch {
	case e.redisURL != "":
		c, err := redisconn.Parse(e.redisURL)
		if err != nil {
			return "the given Redis"
		}
		return "the given Redis (" + c.Kind + ", " + c.Redacted() + ")"
	case e.cluster:
		return "a private 3-master Redis Cluster per scenario"
	}
	return "a private redis-server per scenario"
}

// redis gives a scenario its Redis, empty, with a client whose pool suits
// the bench's 16 producers.
func (e *env) redis(ctx context.Context) (*target, error) {
	switch {
	case e.redisURL != "":
		c, err := redisconn.Parse(e.redisURL)
		if err != nil {
			return nil, err
		}
		rdb := c.ClientWithPool(4 * producers)
		if err := redisconn.Check(ctx, c, rdb); err != nil {
			rdb.Close()
			return nil, err
		}
		t := &target{url: e.redisURL, rdb: rdb, cluster: c.Kind == redisconn.KindCluster, close: func() { rdb.Close() }}
		if err := flush(ctx, rdb); err != nil {
			t.close()
			return nil, fmt.Errorf("empty the given Redis: %w", err)
		}
		return t, nil
	case e.cluster:
		return e.startCluster(ctx)
	}
	rp, addr, err := e.startRedis(ctx)
	if err != nil {
		return nil, err
	}
	rdb := redis.NewClient(&redis.Options{Addr: addr, PoolSize: 4 * producers})
	return &target{url: "redis://" + addr + "/0", rdb: rdb, pids: []int{rp.cmd.Process.Pid},
		close: func() { rdb.Close(); rp.stop(5 * time.Second) }}, nil
}

// startCluster forms a private cluster with internal/redistest, as the
// tests do.
func (e *env) startCluster(ctx context.Context) (*target, error) {
	tb := &benchTB{dir: e.dir}
	var c *redistest.Cluster
	done := make(chan struct{})
	go func() { // redistest ends a failing "test" with runtime.Goexit
		defer close(done)
		c = redistest.StartCluster(tb)
	}()
	<-done
	if err := tb.err(); err != nil || c == nil {
		tb.cleanup()
		if err == nil {
			err = errors.New("no cluster")
		}
		return nil, fmt.Errorf("start a Redis Cluster: %w", err)
	}
	addrs := make([]string, len(c.Nodes))
	for i, n := range c.Nodes {
		addrs[i] = n.Addr
	}
	rdb := redis.NewClusterClient(&redis.ClusterOptions{Addrs: addrs, PoolSize: 4 * producers})
	t := &target{url: c.URL(), rdb: rdb, cluster: true, close: func() { rdb.Close(); tb.cleanup() }}
	for _, a := range addrs {
		n := redis.NewClient(&redis.Options{Addr: a})
		info, err := n.Info(ctx, "server").Result()
		n.Close()
		if err != nil {
			t.close()
			return nil, err
		}
		pid, err := infoField(info, "process_id")
		if err != nil {
			t.close()
			return nil, err
		}
		t.pids = append(t.pids, int(pid))
	}
	return t, nil
}

// forEachNode calls fn on each master of rdb (the one node when it is not a
// cluster).
func forEachNode(ctx context.Context, rdb redis.UniversalClient, fn func(ctx context.Context, n *redis.Client) error) error {
	switch c := rdb.(type) {
	case *redis.ClusterClient:
		var mu sync.Mutex // ForEachMaster runs fn concurrently
		return c.ForEachMaster(ctx, func(ctx context.Context, n *redis.Client) error {
			mu.Lock()
			defer mu.Unlock()
			return fn(ctx, n)
		})
	case *redis.Client:
		return fn(ctx, c)
	}
	return fmt.Errorf("bench: unexpected Redis client %T", rdb)
}

// infoSum is field of INFO section summed over the masters.
func infoSum(ctx context.Context, rdb redis.UniversalClient, section, field string) (int64, error) {
	var sum int64
	err := forEachNode(ctx, rdb, func(ctx context.Context, n *redis.Client) error {
		info, err := n.Info(ctx, section).Result()
		if err != nil {
			return err
		}
		v, err := infoField(info, field)
		sum += v
		return err
	})
	return sum, err
}

// benchTB is the part of testing.TB that internal/redistest uses, so that the
// bench can start a cluster the way the tests do. Fatal and Skip record the
// reason and end the calling goroutine, as in a test.
type benchTB struct {
	testing.TB // nil: any other method panics
	dir        string

	mu       sync.Mutex
	failed   []string
	cleanups []func()
	tmp      int
}

func (t *benchTB) Helper()      {}
func (t *benchTB) Name() string { return "bench" }
func (t *benchTB) Cleanup(fn func()) {
	t.mu.Lock()
	defer t.mu.Unlock()
	t.cleanups = append(t.cleanups, fn)
}
func (t *benchTB) Logf(string, ...any) {}
func (t *benchTB) Log(...any)          {}
func (t *benchTB) Errorf(format string, args ...any) {
	t.mu.Lock()
	defer t.mu.Unlock()
	t.failed = append(t.failed, fmt.Sprintf(format, args...))
}
func (t *benchTB) Error(args ...any)                 { t.Errorf("%s", fmt.Sprint(args...)) }
func (t *benchTB) Fatalf(format string, args ...any) { t.Errorf(format, args...); runtime.Goexit() }
func (t *benchTB) Fatal(args ...any)                 { t.Error(args...); runtime.Goexit() }
func (t *benchTB) Skipf(format string, args ...any)  { t.Fatalf(format, args...) }
func (t *benchTB) Skip(args ...any)                  { t.Fatal(args...) }
func (t *benchTB) FailNow()                          { t.Fatal("failed") }
func (t *benchTB) Failed() bool                      { return t.err() != nil }
func (t *benchTB) TempDir() string {
	t.mu.Lock()
	t.tmp++
	n := t.tmp
	t.mu.Unlock()
	d, err := os.MkdirTemp(t.dir, "cluster-"+strconv.Itoa(n)+"-")
	if err != nil {
		t.Fatalf("TempDir: %v", err)
	}
	return d
}

func (t *benchTB) err() error {
	t.mu.Lock()
	defer t.mu.Unlock()
	if len(t.failed) == 0 {
		return nil
	}
	return errors.New(strings.Join(t.failed, "; "))
}

// cleanup runs the registered cleanups, last first, as a test's end would.
func (t *benchTB) cleanup() {
	t.mu.Lock()
	fns := t.cleanups
	t.cleanups = nil
	t.mu.Unlock()
	for i := len(fns) - 1; i >= 0; i-- {
		fns[i]()
	}
}

// redisCPUKnown drops the figures that count redis-server's CPU when its
// processes are not known (-redis): they would read 0.
func (t *target) redisCPUKnown(figs []figure) []figure {
	if len(t.pids) > 0 {
		return figs
	}
	out := figs[:0:0]
	for _, f := range figs {
		if !strings.Contains(f.Name, "redis-server") {
			out = append(out, f)
		}
	}
	return out
}
