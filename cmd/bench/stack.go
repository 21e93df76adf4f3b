package main

import (
	"bufio"
	"context"
	"errors"
	"fmt"
	"io"
	"net"
	"net/http"
	"os"
	"os/exec"
	"path/filepath"
	"strconv"
	"strings"
	"sync"
	"syscall"
	"time"

	"github.com/redis/go-redis/v9"

	"github.com/sbagenthub/twilio-worker/twiliosim"
)

// buildWorker builds ./cmd/worker into the bench's directory once.
func (e *env) buildWorker(ctx context.Context) (string, error) { return e.build(ctx, "worker") }

// build builds ./cmd/NAME into the bench's directory once.
func (e *env) build(ctx context.Context, name string) (string, error) {
	path := filepath.Join(e.dir, name)
	if _, err := os.Stat(path); err == nil {
		return path, nil
	}
	cmd := exec.CommandContext(ctx, "go", "build", "-o", path, "github.com/sbagenthub/twilio-worker/cmd/"+name)
	cmd.Stdout, cmd.Stderr = e.log, e.log
	if err := cmd.Run(); err != nil {
		return "", fmt.Errorf("build %s: %w", name, err)
	}
	return path, nil
}

func freeAddr() (string, error) {
	ln, err := net.Listen("tcp", "127.0.0.1:0")
	if err != nil {
		return "", err
	}
	defer ln.Close()
	return ln.Addr().String(), nil
}

// proc is a child process whose output is kept for error messages.
type proc struct {
	name string
	cmd  *exec.Cmd
	mu   sync.Mutex
	out  strings.Builder
	done chan struct{}
}

func (p *proc) Write(b []byte) (int, error) {
	p.mu.Lock()
	defer p.mu.Unlock()
	if p.out.Len() < 1<<20 {
		p.out.Write(b)
	}
	return len(b), nil
}

func (p *proc) tail() string {
	p.mu.Lock()
	defer p.mu.Unlock()
	lines := strings.Split(strings.TrimSpace(p.out.String()), "\n")
	return strings.Join(lines[max(len(lines)-15, 0):], "\n")
}

func startProc(name string, env []string, path string, args ...string) (*proc, error) {
	p := &proc{name: name, cmd: exec.Command(path, args...), done: make(chan struct{})}
	p.cmd.Env = env
	p.cmd.Stdout, p.cmd.Stderr = p, p
	if err := p.cmd.Start(); err != nil {
		return nil, fmt.Errorf("start %s: %w", name, err)
	}
	go func() { _ = p.cmd.Wait(); close(p.done) }()
	return p, nil
}

// stop ends the process: SIGTERM, then SIGKILL after grace.
func (p *proc) stop(grace time.Duration) {
	select {
	case <-p.done:
		return
	default:
	}
	_ = p.cmd.Process.Signal(syscall.SIGTERM)
	select {
	case <-p.done:
	case <-time.After(grace):
		_ = p.cmd.Process.Kill()
		<-p.done
	}
}

// startRedis runs a private redis-server on a free loopback port, without
// persistence.
func (e *env) startRedis(ctx context.Context) (*proc, string, error) {
	bin, err := exec.LookPath("redis-server")
	if err != nil {
		return nil, "", errors.New("redis-server is not on PATH (apt-get install redis-server)")
	}
	addr, err := freeAddr()
	if err != nil {
		return nil, "", err
	}
	_, port, _ := net.SplitHostPort(addr)
	dir := filepath.Join(e.dir, "redis-"+port)
	if err := os.MkdirAll(dir, 0o755); err != nil {
		return nil, "", err
	}
	p, err := startProc("redis-server", os.Environ(), bin, "--port", port, "--bind", "127.0.0.1",
		"--save", "", "--appendonly", "no", "--dir", dir, "--daemonize", "no")
	if err != nil {
		return nil, "", err
	}
	rdb := redis.NewClient(&redis.Options{Addr: addr})
	defer rdb.Close()
	deadline := time.Now().Add(10 * time.Second)
	for rdb.Ping(ctx).Err() != nil {
		if time.Now().After(deadline) {
			p.stop(time.Second)
			return nil, "", fmt.Errorf("redis-server did not answer:\n%s", p.tail())
		}
		time.Sleep(20 * time.Millisecond)
	}
	return p, addr, nil
}

// startSim serves the simulator in process.
func startSim() (*twiliosim.Server, string, func(), error) {
	sim := twiliosim.New(twiliosim.Config{DeliveryDelay: 10 * time.Millisecond})
	ln, err := net.Listen("tcp", "127.0.0.1:0")
	if err != nil {
		return nil, "", nil, err
	}
	hs := &http.Server{Handler: sim, ReadHeaderTimeout: 10 * time.Second}
	go func() { _ = hs.Serve(ln) }()
	return sim, "http://" + ln.Addr().String(), func() { _ = hs.Close(); sim.Close() }, nil
}

// workerEnv is a clean environment for a worker: nothing of the machine's
// Twilio or Redis settings.
func workerEnv(extra ...string) []string {
	var out []string
	for _, kv := range os.Environ() {
		k, _, _ := strings.Cut(kv, "=")
		if strings.HasPrefix(k, "TWILIO_") || k == "REDIS_URL" || k == "HTTP_ADDR" || k == "PUBLIC_URL" || k == "API_TOKEN" ||
			strings.HasSuffix(k, "_RATE") || k == "SENDER_RATES" || k == "CONCURRENCY" {
			continue
		}
		out = append(out, kv)
	}
	return append(out, extra...)
}

func waitHTTP(ctx context.Context, url string, p *proc) error {
	deadline := time.Now().Add(30 * time.Second)
	for {
		resp, err := http.Get(url)
		if err == nil {
			resp.Body.Close()
			if resp.StatusCode == 200 {
				return nil
			}
		}
		select {
		case <-p.done:
			return fmt.Errorf("%s exited:\n%s", p.name, p.tail())
		case <-ctx.Done():
			return ctx.Err()
		case <-time.After(20 * time.Millisecond):
		}
		if time.Now().After(deadline) {
			return fmt.Errorf("%s did not answer at %s:\n%s", p.name, url, p.tail())
		}
	}
}

// scrape reads the Prometheus text at url and returns the samples whose
// name (with labels, as written) is in want.
func scrape(url string, want ...string) (map[string]float64, error) {
	resp, err := http.Get(url)
	if err != nil {
		return nil, err
	}
	defer resp.Body.Close()
	return parseMetrics(resp.Body, want...)
}

func parseMetrics(r io.Reader, want ...string) (map[string]float64, error) {
	out := map[string]float64{}
	sc := bufio.NewScanner(r)
	sc.Buffer(make([]byte, 1<<16), 1<<20)
	for sc.Scan() {
		line := sc.Text()
		if strings.HasPrefix(line, "#") {
			continue
		}
		i := strings.LastIndexByte(line, ' ')
		if i < 0 {
			continue
		}
		for _, w := range want {
			if line[:i] == w {
				v, err := strconv.ParseFloat(line[i+1:], 64)
				if err != nil {
					return nil, fmt.Errorf("metric %s: %w", w, err)
				}
				out[w] = v
			}
		}
	}
	return out, sc.Err()
}
