package redistest_test

import (
	"context"
	"errors"
	"fmt"
	"os"
	"os/exec"
	"runtime"
	"strings"
	"sync"
	"testing"
	"time"

	"github.com/redis/go-redis/v9"

	"github.com/sbagenthub/twilio-worker/internal/redistest"
)

func TestStart(t *testing.T) {
	t.Parallel()
	s := redistest.Start(t)
	c := s.Client(t)
	ctx := context.Background()
	if err := c.Ping(ctx).Err(); err != nil {
		t.Fatalf("PING: %v", err)
	}
	if err := c.Set(ctx, "k", "v", 0).Err(); err != nil {
		t.Fatalf("SET: %v", err)
	}
	if got, err := c.Get(ctx, "k").Result(); err != nil || got != "v" {
		t.Fatalf("GET k = %q, %v; want v", got, err)
	}
	if os.Getenv(redistest.EnvURL) == "" && hasRedisServer() && s.Kind() != redistest.KindRedisServer {
		t.Errorf("Kind() = %q with redis-server on PATH, want %q", s.Kind(), redistest.KindRedisServer)
	}
	if s.Kind() != redistest.KindURL {
		if want := "redis://" + s.Addr + "/0"; s.URL() != want {
			t.Errorf("URL() = %q, want %q", s.URL(), want)
		}
		if !strings.HasPrefix(s.Addr, "127.0.0.1:") {
			t.Errorf("Addr = %q, want a 127.0.0.1 address", s.Addr)
		}
	}
	// URL() is what the worker's configuration takes.
	opt, err := redis.ParseURL(s.URL())
	if err != nil {
		t.Fatalf("ParseURL(URL()): %v", err)
	}
	c2 := redis.NewClient(opt)
	defer c2.Close()
	if got, err := c2.Get(ctx, "k").Result(); err != nil || got != "v" {
		t.Errorf("GET k through URL() = %q, %v; want v", got, err)
	}
	if s.Miniredis() != nil && s.Kind() != redistest.KindMiniredis {
		t.Errorf("Miniredis() is not nil for kind %q", s.Kind())
	}
}

func TestStartIsolated(t *testing.T) {
	t.Parallel()
	a, b := redistest.Start(t), redistest.Start(t)
	if a.Kind() == redistest.KindURL {
		t.Skipf("%s is set: every Start shares that server", redistest.EnvURL)
	}
	if a.Addr == b.Addr {
		t.Fatalf("two servers on the same address %s", a.Addr)
	}
	ctx := context.Background()
	if err := a.Client(t).Set(ctx, "only-in-a", "1", 0).Err(); err != nil {
		t.Fatalf("SET on a: %v", err)
	}
	if err := b.Client(t).Get(ctx, "only-in-a").Err(); !errors.Is(err, redis.Nil) {
		t.Errorf("GET on b of a key set on a: err = %v, want redis.Nil", err)
	}
}

func TestRestartAppendOnlyKeepsData(t *testing.T) {
	t.Parallel()
	s := redistest.Start(t, redistest.WithAppendOnly())
	skipURL(t, s)
	c := s.Client(t)
	ctx := context.Background()
	if s.Kind() == redistest.KindRedisServer {
		if got := c.ConfigGet(ctx, "appendonly").Val()["appendonly"]; got != "yes" {
			t.Fatalf("CONFIG GET appendonly = %q, want yes", got)
		}
	}
	pid := serverPID(t, c)
	if err := c.Set(ctx, "kept", "yes", 0).Err(); err != nil {
		t.Fatalf("SET: %v", err)
	}
	addr := s.Addr
	s.Restart(t)
	if s.Addr != addr {
		t.Errorf("Addr after Restart = %s, want %s", s.Addr, addr)
	}
	// The same client reconnects.
	if got, err := c.Get(ctx, "kept").Result(); err != nil || got != "yes" {
		t.Errorf("GET after Restart = %q, %v; want yes", got, err)
	}
	if s.Kind() == redistest.KindRedisServer && serverPID(t, c) == pid {
		t.Errorf("process id %s before and after Restart: the server was not restarted", pid)
	}
}

// TestRestartWithoutAppendOnlyLosesData shows that Restart really restarts
// redis-server: without the AOF, the data is gone.
func TestRestartWithoutAppendOnlyLosesData(t *testing.T) {
	t.Parallel()
	s := redistest.Start(t)
	if s.Kind() != redistest.KindRedisServer {
		t.Skipf("server is %s; only redis-server forgets its data", s.Kind())
	}
	c := s.Client(t)
	ctx := context.Background()
	if err := c.Set(ctx, "lost", "yes", 0).Err(); err != nil {
		t.Fatalf("SET: %v", err)
	}
	s.Restart(t)
	if err := c.Get(ctx, "lost").Err(); !errors.Is(err, redis.Nil) {
		t.Errorf("GET after Restart without AOF: err = %v, want redis.Nil", err)
	}
}

func TestStopStart(t *testing.T) {
	t.Parallel()
	s := redistest.Start(t, redistest.WithAppendOnly())
	skipURL(t, s)
	testStopStart(t, s)
}

func testStopStart(t *testing.T, s *redistest.Server) {
	t.Helper()
	opt := s.Options()
	opt.DialTimeout, opt.MaxRetries = 200*time.Millisecond, -1
	c := redis.NewClient(opt)
	defer c.Close()
	ctx := context.Background()
	if err := c.Set(ctx, "k", "v", 0).Err(); err != nil {
		t.Fatalf("SET: %v", err)
	}
	s.Stop(t)
	s.Stop(t) // stopping twice is fine
	if err := c.Ping(ctx).Err(); err == nil {
		t.Fatal("PING succeeded while the server is stopped")
	}
	s.Start(t)
	s.Start(t) // starting twice is fine
	if err := c.Ping(ctx).Err(); err != nil {
		t.Fatalf("PING after Start: %v", err)
	}
	if got, err := c.Get(ctx, "k").Result(); err != nil || got != "v" {
		t.Errorf("GET after Stop and Start = %q, %v; want v", got, err)
	}
}

func TestWithArgs(t *testing.T) {
	t.Parallel()
	s := redistest.Start(t, redistest.WithArgs("--maxmemory", "1mb"))
	if s.Kind() != redistest.KindRedisServer {
		t.Skipf("server is %s, which takes no arguments", s.Kind())
	}
	got := s.Client(t).ConfigGet(context.Background(), "maxmemory").Val()["maxmemory"]
	if got != "1048576" {
		t.Errorf("CONFIG GET maxmemory = %q, want 1048576", got)
	}
}

// TestStartFailureShowsLog: a server that cannot start fails the test with
// redis-server's own explanation.
func TestStartFailureShowsLog(t *testing.T) {
	t.Parallel()
	if os.Getenv(redistest.EnvURL) != "" || !hasRedisServer() {
		t.Skip("needs redis-server on PATH and no REDIS_URL")
	}
	ft := runFake(t, func(tb testing.TB) { redistest.Start(tb, redistest.WithArgs("--no-such-directive", "x")) })
	if !ft.failed() {
		t.Fatal("Start with a bad directive did not fail the test")
	}
	if msg := ft.message(); !strings.Contains(msg, "no-such-directive") || !strings.Contains(msg, "redis-server log") {
		t.Errorf("failure message %q does not show redis-server's log", msg)
	}
}

// The tests below change the environment, so they cannot be parallel.

func TestFallbackMiniredis(t *testing.T) {
	t.Setenv("PATH", t.TempDir())
	t.Setenv(redistest.EnvURL, "")
	t.Setenv(redistest.EnvRequire, "")
	s := redistest.Start(t)
	if s.Kind() != redistest.KindMiniredis || s.Miniredis() == nil {
		t.Fatalf("Kind() = %q, Miniredis() = %v; want the miniredis fallback", s.Kind(), s.Miniredis())
	}
	c := s.Client(t)
	ctx := context.Background()
	if err := c.Set(ctx, "k", "v", 0).Err(); err != nil {
		t.Fatalf("SET: %v", err)
	}
	if got, _ := s.Miniredis().Get("k"); got != "v" {
		t.Errorf("miniredis has k = %q, want v", got)
	}
	s.Restart(t)
	if got, err := c.Get(ctx, "k").Result(); err != nil || got != "v" {
		t.Errorf("GET after Restart = %q, %v; want v", got, err)
	}
	testStopStart(t, s)
}

func TestFallbackRefusedWhenRequired(t *testing.T) {
	t.Setenv("PATH", t.TempDir())
	t.Setenv(redistest.EnvURL, "")
	t.Setenv(redistest.EnvRequire, "1")
	var s *redistest.Server
	ft := runFake(t, func(tb testing.TB) { s = redistest.Start(tb) })
	if !ft.failed() {
		t.Fatalf("Start with %s=1 and no redis-server returned a %s server", redistest.EnvRequire, s.Kind())
	}
	if msg := ft.message(); !strings.Contains(msg, "redis-server is required") {
		t.Errorf("failure message %q does not say redis-server is required", msg)
	}
}

func TestREDIS_URL(t *testing.T) {
	t.Setenv(redistest.EnvURL, "")
	own := redistest.Start(t)
	ctx := context.Background()
	if err := own.Client(t).Set(ctx, "shared", "1", 0).Err(); err != nil {
		t.Fatalf("SET: %v", err)
	}

	t.Setenv(redistest.EnvURL, own.URL())
	s := redistest.Start(t)
	if s.Kind() != redistest.KindURL || s.Addr != own.Addr || s.URL() != own.URL() {
		t.Fatalf("with %s=%s: Kind() = %q, Addr = %q, URL() = %q", redistest.EnvURL, own.URL(), s.Kind(), s.Addr, s.URL())
	}
	if got, err := s.Client(t).Get(ctx, "shared").Result(); err != nil || got != "1" {
		t.Errorf("GET through the REDIS_URL server = %q, %v; want 1", got, err)
	}
	ft := runFake(t, func(tb testing.TB) { s.Restart(tb) })
	if msg := ft.message(); !ft.failed() || !strings.Contains(msg, "cannot restart") {
		t.Errorf("Restart of the REDIS_URL server: failed=%v message %q, want a failure that says it cannot restart", ft.failed(), msg)
	}

	t.Setenv(redistest.EnvURL, "redis://127.0.0.1:1/0")
	ft = runFake(t, func(tb testing.TB) { redistest.Start(tb) })
	if msg := ft.message(); !ft.failed() || !strings.Contains(msg, "does not answer PING") {
		t.Errorf("Start with an unreachable %s: failed=%v message %q", redistest.EnvURL, ft.failed(), msg)
	}
}

func skipURL(t *testing.T, s *redistest.Server) {
	t.Helper()
	if s.Kind() == redistest.KindURL {
		t.Skipf("%s is set: its server cannot be stopped or restarted", redistest.EnvURL)
	}
}

func hasRedisServer() bool {
	_, err := exec.LookPath("redis-server")
	return err == nil
}

// serverPID returns INFO's process_id, or "" from miniredis.
func serverPID(t *testing.T, c *redis.Client) string {
	t.Helper()
	info, err := c.Info(context.Background(), "server").Result()
	if err != nil {
		return ""
	}
	for _, line := range strings.Split(info, "\n") {
		if v, ok := strings.CutPrefix(line, "process_id:"); ok {
			return strings.TrimSpace(v)
		}
	}
	return ""
}

// fakeT is a testing.TB whose Fatal and Skip end only the goroutine that
// calls them and are recorded, so a test can check how Start fails.
type fakeT struct {
	testing.TB // the real test, for TempDir and Log

	mu       sync.Mutex
	msgs     []string
	fail     bool
	cleanups []func()
}

// runFake runs fn with a fakeT in a goroutine of its own, waits for it and
// then runs the cleanups fn registered.
func runFake(t *testing.T, fn func(testing.TB)) *fakeT {
	t.Helper()
	ft := &fakeT{TB: t}
	done := make(chan struct{})
	go func() {
		defer close(done)
		fn(ft)
	}()
	<-done
	for i := len(ft.cleanups) - 1; i >= 0; i-- {
		ft.cleanups[i]()
	}
	return ft
}

func (f *fakeT) Helper() {}

func (f *fakeT) Cleanup(fn func()) {
	f.mu.Lock()
	defer f.mu.Unlock()
	f.cleanups = append(f.cleanups, fn)
}

func (f *fakeT) record(fail bool, msg string) {
	f.mu.Lock()
	defer f.mu.Unlock()
	f.fail = f.fail || fail
	f.msgs = append(f.msgs, msg)
}

func (f *fakeT) Error(args ...any)                 { f.record(true, fmt.Sprint(args...)) }
func (f *fakeT) Errorf(format string, args ...any) { f.record(true, fmt.Sprintf(format, args...)) }
func (f *fakeT) Fatal(args ...any)                 { f.Error(args...); runtime.Goexit() }
func (f *fakeT) Fatalf(format string, args ...any) { f.Errorf(format, args...); runtime.Goexit() }
func (f *fakeT) Skip(args ...any)                  { f.record(false, fmt.Sprint(args...)); runtime.Goexit() }
func (f *fakeT) Skipf(format string, args ...any) {
	f.record(false, fmt.Sprintf(format, args...))
	runtime.Goexit()
}
func (f *fakeT) FailNow() { f.record(true, "FailNow"); runtime.Goexit() }
func (f *fakeT) Fail()    { f.record(true, "Fail") }

func (f *fakeT) failed() bool {
	f.mu.Lock()
	defer f.mu.Unlock()
	return f.fail
}

func (f *fakeT) message() string {
	f.mu.Lock()
	defer f.mu.Unlock()
	return strings.Join(f.msgs, "\n")
}
