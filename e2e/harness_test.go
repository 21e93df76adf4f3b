package e2e

import (
	"bufio"
	"bytes"
	"context"
	"encoding/json"
	"fmt"
	"io"
	"net"
	"net/http"
	"os"
	"os/exec"
	"path/filepath"
	"regexp"
	"strings"
	"sync"
	"syscall"
	"testing"
	"time"

	"github.com/hibiken/asynq"
	"github.com/redis/go-redis/v9"

	"github.com/sbagenthub/twilio-worker/internal/redistest"
)

// bin holds the binaries built once for the package.
var bin struct{ worker, enqueue, twiliosim, vapisim string }

func TestMain(m *testing.M) {
	dir, err := os.MkdirTemp("", "twilio-worker-e2e")
	if err != nil {
		fmt.Fprintln(os.Stderr, err)
		os.Exit(1)
	}
	args := []string{"build", "-o", dir + "/"}
	if raceEnabled {
		args = append(args, "-race")
	}
	cmd := exec.Command("go", append(args, "../cmd/worker", "../cmd/enqueue", "../cmd/twiliosim", "../cmd/vapisim")...)
	cmd.Stdout, cmd.Stderr = os.Stderr, os.Stderr
	if err := cmd.Run(); err != nil {
		fmt.Fprintln(os.Stderr, "build binaries:", err)
		os.Exit(1)
	}
	bin.worker, bin.enqueue, bin.twiliosim = filepath.Join(dir, "worker"), filepath.Join(dir, "enqueue"), filepath.Join(dir, "twiliosim")
	bin.vapisim = filepath.Join(dir, "vapisim")
	code := m.Run()
	os.RemoveAll(dir)
	os.Exit(code)
}

func freeAddr(t *testing.T) string {
	t.Helper()
	ln, err := net.Listen("tcp", "127.0.0.1:0")
	if err != nil {
		t.Fatal(err)
	}
	defer ln.Close()
	return ln.Addr().String()
}

// proc is a running binary whose output is kept for the test log.
type proc struct {
	cmd  *exec.Cmd
	mu   sync.Mutex
	out  bytes.Buffer
	done chan struct{}
	err  error
}

func (p *proc) Write(b []byte) (int, error) {
	p.mu.Lock()
	defer p.mu.Unlock()
	return p.out.Write(b)
}

func (p *proc) output() string {
	p.mu.Lock()
	defer p.mu.Unlock()
	return p.out.String()
}

func start(t *testing.T, env []string, path string, args ...string) *proc {
	t.Helper()
	p := &proc{cmd: exec.Command(path, args...), done: make(chan struct{})}
	p.cmd.Env = append(baseEnv(), env...)
	p.cmd.Stdout, p.cmd.Stderr = p, p
	if err := p.cmd.Start(); err != nil {
		t.Fatal(err)
	}
	go func() { p.err = p.cmd.Wait(); close(p.done) }()
	t.Cleanup(func() {
		p.stop(t)
		if t.Failed() {
			t.Logf("%s output:\n%s", filepath.Base(path), p.output())
		}
	})
	return p
}

func (p *proc) stop(t *testing.T) {
	select {
	case <-p.done:
		return
	default:
	}
	_ = p.cmd.Process.Signal(syscall.SIGTERM)
	select {
	case <-p.done:
	case <-time.After(20 * time.Second):
		_ = p.cmd.Process.Kill()
		<-p.done
	}
}

// baseEnv is a clean environment: no Twilio or Redis settings leak in from
// the machine running the tests.
func baseEnv() []string {
	var env []string
	for _, kv := range os.Environ() {
		k, _, _ := strings.Cut(kv, "=")
		if strings.HasPrefix(k, "TWILIO_") || strings.HasPrefix(k, "VAPI_") || k == "REDIS_URL" || k == "HTTP_ADDR" || k == "PUBLIC_URL" || k == "API_TOKEN" {
			continue
		}
		env = append(env, kv)
	}
	if raceEnabled && !strings.Contains(os.Getenv("GORACE"), "atexit_sleep_ms") {
		// A binary built with -race sleeps a second at exit (so late
		// reports can print) unless told not to; the tests start
		// hundreds of them. Races are still reported as they happen.
		env = append(env, "GORACE="+strings.TrimSpace(os.Getenv("GORACE")+" atexit_sleep_ms=0"))
	}
	return env
}

// Redis deployments a parametrised test runs against.
const (
	onNode    = "node"    // one private redis-server
	onCluster = "cluster" // a private 3-master Redis Cluster
)

// onEachRedis runs f as parallel subtests on one node and on a Redis
// Cluster, with the same assertions.
func onEachRedis(t *testing.T, f func(t *testing.T, kind string)) {
	t.Helper()
	for _, kind := range []string{onNode, onCluster} {
		t.Run(kind, func(t *testing.T) {
			t.Parallel()
			f(t, kind)
		})
	}
}

// redisTarget is the Redis a test's processes use: a node or a cluster.
type redisTarget struct {
	node    *redistest.Server  // onNode
	cluster *redistest.Cluster // onCluster
}

func startRedis(t *testing.T, kind string, opts ...redistest.Option) *redisTarget {
	t.Helper()
	if kind == onCluster {
		return &redisTarget{cluster: redistest.StartCluster(t)}
	}
	return &redisTarget{node: redistest.Start(t, opts...)}
}

// URL is the target's REDIS_URL.
func (r *redisTarget) URL() string {
	if r.cluster != nil {
		return r.cluster.URL()
	}
	return r.node.URL()
}

// Client is a client for the test's own reads and writes, closed when t
// ends.
func (r *redisTarget) Client(t *testing.T) redis.UniversalClient {
	t.Helper()
	if r.cluster != nil {
		return r.cluster.Client(t)
	}
	return r.node.Client(t)
}

// stack is a private Redis, twiliosim and a worker pointed at both.
type stack struct {
	redis  *redisTarget
	simURL string
	http   string
	worker *proc
	env    []string // for enqueue
}

func newStack(t *testing.T, simArgs []string, workerEnv ...string) *stack {
	t.Helper()
	return newStackOn(t, onNode, simArgs, workerEnv...)
}

// newStackOn is newStack on a Redis of the given kind (onNode, onCluster).
func newStackOn(t *testing.T, kind string, simArgs []string, workerEnv ...string) *stack {
	t.Helper()
	return newStackAtOn(t, kind, freeAddr(t), simArgs, workerEnv...)
}

// newStackAt is newStack with the worker's HTTP server at httpAddr (for
// PUBLIC_URL, which must be known before the worker starts).
func newStackAt(t *testing.T, httpAddr string, simArgs []string, workerEnv ...string) *stack {
	t.Helper()
	return newStackAtOn(t, onNode, httpAddr, simArgs, workerEnv...)
}

func newStackAtOn(t *testing.T, kind, httpAddr string, simArgs []string, workerEnv ...string) *stack {
	t.Helper()
	s := &stack{redis: startRedis(t, kind)}
	simAddr := freeAddr(t)
	start(t, nil, bin.twiliosim, append([]string{"--addr", simAddr, "--delivery-delay", "10ms"}, simArgs...)...)
	s.simURL = "http://" + simAddr
	waitHTTP(t, s.simURL+"/sim/messages")
	s.http = httpAddr
	s.env = []string{"REDIS_URL=" + s.redis.URL()}
	env := append([]string{
		"REDIS_URL=" + s.redis.URL(), "HTTP_ADDR=" + s.http,
		"TWILIO_API_URL=" + s.simURL, "TWILIO_ACCOUNT_SID=AC00000000000000000000000000000000",
		"TWILIO_AUTH_TOKEN=00000000000000000000000000000000", "TWILIO_PHONE_NUMBER=+15005550006",
	}, workerEnv...)
	s.worker = start(t, env, bin.worker)
	waitHTTP(t, "http://"+s.http+"/healthz")
	return s
}

func waitHTTP(t *testing.T, url string) {
	t.Helper()
	deadline := time.Now().Add(30 * time.Second)
	for {
		resp, err := http.Get(url)
		if err == nil {
			resp.Body.Close()
			if resp.StatusCode == 200 {
				return
			}
		}
		if time.Now().After(deadline) {
			t.Fatalf("%s did not answer: %v", url, err)
		}
		time.Sleep(20 * time.Millisecond)
	}
}

// result of one enqueue run
type result struct {
	code   int
	stdout string
	stderr string
}

func (r result) json(t *testing.T, v any) {
	t.Helper()
	if err := json.Unmarshal([]byte(r.stdout), v); err != nil {
		t.Fatalf("stdout %q is not JSON: %v (stderr %q)", r.stdout, err, r.stderr)
	}
}

func runEnqueue(t *testing.T, env []string, args ...string) result {
	t.Helper()
	ctx, cancel := context.WithTimeout(context.Background(), 30*time.Second)
	defer cancel()
	cmd := exec.CommandContext(ctx, bin.enqueue, args...)
	cmd.Env = append(baseEnv(), env...)
	var out, errb bytes.Buffer
	cmd.Stdout, cmd.Stderr = &out, &errb
	err := cmd.Run()
	code := 0
	if ee, ok := err.(*exec.ExitError); ok {
		code = ee.ExitCode()
	} else if err != nil {
		t.Fatal(err)
	}
	return result{code, out.String(), errb.String()}
}

type simMessage struct {
	Sid, To, From, Body, Status string
	ErrorCode                   *int
	NumSegments                 int
	CreatedAt                   time.Time
}

func simMessages(t *testing.T, simURL string) []simMessage {
	t.Helper()
	resp, err := http.Get(simURL + "/sim/messages")
	if err != nil {
		t.Fatal(err)
	}
	defer resp.Body.Close()
	var out []simMessage
	if err := json.NewDecoder(resp.Body).Decode(&out); err != nil {
		t.Fatal(err)
	}
	return out
}

func simConfig(t *testing.T, simURL, body string) {
	t.Helper()
	resp, err := http.Post(simURL+"/sim/config", "application/json", strings.NewReader(body))
	if err != nil {
		t.Fatal(err)
	}
	b, _ := io.ReadAll(resp.Body)
	resp.Body.Close()
	if resp.StatusCode != 200 {
		t.Fatalf("sim config %s: %d %s", body, resp.StatusCode, b)
	}
}

type status struct {
	TaskID, Type, Queue, State, LastError string
	Retried                               int
	Result                                json.RawMessage
}

// waitStatus polls `enqueue status` until the task is in a final state.
func waitStatus(t *testing.T, env []string, id string) status {
	t.Helper()
	return waitStatusWithin(t, env, id, 30)
}

func waitStatusWithin(t *testing.T, env []string, id string, seconds int) status {
	t.Helper()
	deadline := time.Now().Add(time.Duration(seconds) * time.Second)
	for {
		r := runEnqueue(t, env, "status", id)
		if r.code == 2 && strings.Contains(r.stderr, "task not found") && time.Now().Before(deadline) {
			time.Sleep(50 * time.Millisecond) // e.g. a follow-up task not made yet
			continue
		}
		if r.code != 0 {
			t.Fatalf("enqueue status: exit %d: %s", r.code, r.stderr)
		}
		var st status
		r.json(t, &st)
		if st.State == "completed" || st.State == "archived" {
			return st
		}
		if time.Now().After(deadline) {
			t.Fatalf("task %s still %+v", id, st)
		}
		time.Sleep(50 * time.Millisecond)
	}
}

// waitLog waits until the process has printed a line matching re and returns the match.
func waitLog(t *testing.T, p *proc, re *regexp.Regexp) []string {
	t.Helper()
	deadline := time.Now().Add(30 * time.Second)
	for {
		sc := bufio.NewScanner(strings.NewReader(p.output()))
		for sc.Scan() {
			if m := re.FindStringSubmatch(sc.Text()); m != nil {
				return m
			}
		}
		if time.Now().After(deadline) {
			t.Fatalf("no log line matching %s", re)
		}
		time.Sleep(20 * time.Millisecond)
	}
}

var bg = context.Background()

// openTasks counts the tasks of type typ, in any queue, that could still
// run: pending, active, scheduled or in retry. Zero means nothing of that
// type can happen any more, which a test can check instead of waiting a
// while to see that nothing does.
func openTasks(t *testing.T, rdb redis.UniversalClient, typ string) int {
	t.Helper()
	insp := asynq.NewInspectorFromRedisClient(rdb)
	queues, err := insp.Queues()
	if err != nil {
		t.Fatal(err)
	}
	n := 0
	for _, q := range queues {
		for _, list := range []func(string, ...asynq.ListOption) ([]*asynq.TaskInfo, error){
			insp.ListPendingTasks, insp.ListActiveTasks, insp.ListScheduledTasks, insp.ListRetryTasks,
		} {
			for page := 1; ; page++ {
				infos, err := list(q, asynq.PageSize(1000), asynq.Page(page))
				if err != nil {
					t.Fatal(err)
				}
				for _, ti := range infos {
					if ti.Type == typ {
						n++
					}
				}
				if len(infos) < 1000 {
					break
				}
			}
		}
	}
	return n
}

// waitOutput waits until the processes' output written after the offsets
// (from outputLen) holds at least want lines containing substr, together,
// and returns how many it holds; a test fails after 30 s without them.
func waitOutput(t *testing.T, procs []*proc, from []int, substr string, want int) int {
	t.Helper()
	deadline := time.Now().Add(30 * time.Second)
	for {
		got := 0
		for i, p := range procs {
			got += strings.Count(p.output()[from[i]:], substr)
		}
		if got >= want {
			return got
		}
		if time.Now().After(deadline) {
			t.Fatalf("after 30 s the workers have logged %q %d times, want %d", substr, got, want)
		}
		time.Sleep(20 * time.Millisecond)
	}
}

// outputLen is each process's output length: offsets for waitOutput.
func outputLen(procs []*proc) []int {
	out := make([]int, len(procs))
	for i, p := range procs {
		out[i] = len(p.output())
	}
	return out
}
