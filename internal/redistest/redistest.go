// Package redistest gives a test its own Redis.
//
// [Start] runs a private redis-server from PATH on a free 127.0.0.1 port,
// with its data directory in the test's temporary directory, no RDB
// snapshots and (unless [WithAppendOnly]) no AOF, and shuts it down when the
// test ends. Every call gets a new server, so tests that use Start can run
// with t.Parallel() without sharing keys. The server can be stopped, started
// again and restarted on the same address, for tests of what the worker does
// when Redis goes away.
//
// Two environment variables change where the server comes from:
//
//   - REDIS_URL: Start uses that server and starts none. It must be a
//     scratch server: tests write to it, and tests sharing it are not
//     isolated from each other (run them with -p 1 or give them key
//     prefixes). It cannot be stopped or restarted; tests that need that
//     fail with a message that says so.
//   - REQUIRE_REDIS_SERVER=1: when no redis-server is on PATH, Start fails
//     the test instead of falling back to miniredis. CI sets it, so a
//     missing install is an error there rather than a quieter test run.
//
// Without REDIS_URL and without a redis-server on PATH, Start falls back to
// miniredis (an in-process Redis implementation, github.com/alicebob/miniredis)
// and says so in the test log. miniredis keeps its data across Restart but
// does not implement everything Redis does.
package redistest

import (
	"bufio"
	"bytes"
	"context"
	"errors"
	"fmt"
	"net"
	"net/url"
	"os"
	"os/exec"
	"strconv"
	"strings"
	"sync"
	"testing"
	"time"

	"github.com/alicebob/miniredis/v2"
	"github.com/redis/go-redis/v9"
)

// What [Server.Kind] returns.
const (
	KindRedisServer = "redis-server" // a private redis-server process
	KindURL         = "REDIS_URL"    // the server REDIS_URL names
	KindMiniredis   = "miniredis"    // the in-process fallback
)

// Environment variables that Start reads.
const (
	EnvURL     = "REDIS_URL"
	EnvRequire = "REQUIRE_REDIS_SERVER"
)

// Timeouts. A redis-server answers PING in a few milliseconds; the margins
// are for slow CI machines and for loading an AOF after Restart.
const (
	readyTimeout    = 30 * time.Second
	shutdownTimeout = 10 * time.Second
	startAttempts   = 5
	logTailLines    = 20
)

// Option changes how Start runs redis-server.
type Option func(*config)

type config struct {
	args []string
}

// WithAppendOnly turns on the append-only file (appendfsync everysec), so
// that data survives [Server.Restart] and [Server.Stop].
func WithAppendOnly() Option {
	return WithArgs("--appendonly", "yes", "--appendfsync", "everysec")
}

// WithArgs adds redis-server command-line arguments, such as
// WithArgs("--maxmemory", "1mb"). They come after Start's own and override
// them. miniredis and a REDIS_URL server ignore them.
func WithArgs(args ...string) Option {
	return func(c *config) { c.args = append(c.args, args...) }
}

// Server is a Redis for one test. Addr does not change for the server's
// life, through Stop, Start and Restart.
type Server struct {
	// Addr is host:port.
	Addr string

	kind string
	url  string // as REDIS_URL gives it, for KindURL

	// KindRedisServer
	bin  string
	dir  string
	args []string
	argv func(port string) []string // replaces the default command line

	mr *miniredis.Miniredis // KindMiniredis

	mu      sync.Mutex
	proc    *process // nil while stopped
	clients []*redis.Client
}

// Start returns a Redis for t and shuts it down when t ends: a new
// redis-server process unless REDIS_URL or the lack of redis-server say
// otherwise (see the package documentation). It fails t when no server can
// be had.
func Start(t testing.TB, opts ...Option) *Server {
	t.Helper()
	var c config
	for _, o := range opts {
		o(&c)
	}
	if u := os.Getenv(EnvURL); u != "" {
		return startURL(t, u)
	}
	bin, err := exec.LookPath("redis-server")
	if err != nil {
		if required() {
			t.Fatalf("redistest: redis-server is required (%s is set) but is not on PATH: %v", EnvRequire, err)
		}
		return startMiniredis(t)
	}
	return startProcess(t, bin, c.args, nil)
}

// startProcess runs a private redis-server with args; argv, when not nil,
// replaces the default command line (it is given the port).
func startProcess(t testing.TB, bin string, args []string, argv func(port string) []string) *Server {
	t.Helper()
	s := &Server{kind: KindRedisServer, bin: bin, dir: t.TempDir(), args: args, argv: argv}
	t.Cleanup(func() {
		s.closeClients()
		s.mu.Lock()
		defer s.mu.Unlock()
		if err := s.stopLocked(); err != nil {
			t.Errorf("redistest: stop redis-server on %s: %v", s.Addr, err)
		}
	})

	for attempt := 1; ; attempt++ {
		port, err := freePort()
		if err != nil {
			t.Fatalf("redistest: find a free port: %v", err)
		}
		s.Addr = net.JoinHostPort("127.0.0.1", strconv.Itoa(port))
		err = s.launch()
		if err == nil {
			return s
		}
		if errors.Is(err, errAddrInUse) && attempt < startAttempts {
			continue // another process took the port between close and listen
		}
		t.Fatalf("redistest: %v", err)
	}
}

func required() bool {
	v, _ := strconv.ParseBool(os.Getenv(EnvRequire))
	return v
}

func startURL(t testing.TB, raw string) *Server {
	t.Helper()
	opt, err := redis.ParseURL(raw)
	if err != nil {
		t.Fatalf("redistest: %s: %v", EnvURL, err)
	}
	s := &Server{Addr: opt.Addr, kind: KindURL, url: raw}
	t.Cleanup(s.closeClients)
	c := redis.NewClient(opt)
	defer c.Close()
	ctx, cancel := context.WithTimeout(context.Background(), 5*time.Second)
	defer cancel()
	if err := c.Ping(ctx).Err(); err != nil {
		t.Fatalf("redistest: %s=%s does not answer PING: %v", EnvURL, redacted(raw), err)
	}
	return s
}

func startMiniredis(t testing.TB) *Server {
	t.Helper()
	mr := miniredis.NewMiniRedis()
	if err := mr.StartAddr("127.0.0.1:0"); err != nil {
		t.Fatalf("redistest: start miniredis: %v", err)
	}
	t.Logf("redistest: no redis-server on PATH, using miniredis on %s (set %s=1 to require redis-server)", mr.Addr(), EnvRequire)
	s := &Server{Addr: mr.Addr(), kind: KindMiniredis, mr: mr}
	t.Cleanup(func() {
		s.closeClients()
		mr.Close()
	})
	return s
}

// Kind tells what the server is: [KindRedisServer], [KindURL] or
// [KindMiniredis].
func (s *Server) Kind() string { return s.kind }

// URL returns the server's URL for REDIS_URL-style configuration:
// redis://127.0.0.1:PORT/0, or REDIS_URL as given.
func (s *Server) URL() string {
	if s.kind == KindURL {
		return s.url
	}
	return "redis://" + s.Addr + "/0"
}

// Options returns new go-redis options for the server, for clients that the
// caller configures further and closes itself.
func (s *Server) Options() *redis.Options {
	if s.kind == KindURL {
		opt, err := redis.ParseURL(s.url)
		if err == nil {
			return opt
		}
		// Start parsed it already; only a changed environment gets here.
	}
	return &redis.Options{Addr: s.Addr}
}

// Client returns a new client of the server, closed when t ends (or when the
// server is cleaned up, whichever is first).
func (s *Server) Client(t testing.TB) *redis.Client {
	t.Helper()
	c := redis.NewClient(s.Options())
	s.mu.Lock()
	s.clients = append(s.clients, c)
	s.mu.Unlock()
	t.Cleanup(func() { _ = c.Close() })
	return c
}

// Miniredis returns the miniredis behind the server, or nil when the server
// is not the miniredis fallback.
func (s *Server) Miniredis() *miniredis.Miniredis { return s.mr }

// Stop shuts the server down (SHUTDOWN NOSAVE, which still flushes the AOF
// when there is one; killed if it does not exit in time). Clients stay open
// and fail until [Server.Start]. Stopping a stopped server does nothing.
func (s *Server) Stop(t testing.TB) {
	t.Helper()
	switch s.kind {
	case KindURL:
		t.Fatalf("redistest: cannot stop the server %s names; unset %s to let the test run its own", EnvURL, EnvURL)
	case KindMiniredis:
		s.mr.Close()
		return
	}
	s.mu.Lock()
	defer s.mu.Unlock()
	if err := s.stopLocked(); err != nil {
		t.Fatalf("redistest: stop redis-server on %s: %v", s.Addr, err)
	}
}

// Start starts a stopped server again on the same address and data
// directory, and waits until it answers. Starting a running server does
// nothing.
func (s *Server) Start(t testing.TB) {
	t.Helper()
	switch s.kind {
	case KindURL:
		t.Fatalf("redistest: cannot start the server %s names; unset %s to let the test run its own", EnvURL, EnvURL)
	case KindMiniredis:
		s.mr.Lock()
		running := s.mr.Server() != nil
		if !running {
			// Close cancelled it; blocking commands need a live one.
			s.mr.Ctx, s.mr.CtxCancel = context.WithCancel(context.Background())
		}
		s.mr.Unlock()
		if running {
			return
		}
		if err := s.mr.Restart(); err != nil {
			t.Fatalf("redistest: restart miniredis on %s: %v", s.Addr, err)
		}
		return
	}
	s.mu.Lock()
	running := s.proc != nil
	s.mu.Unlock()
	if running {
		return
	}
	deadline := time.Now().Add(readyTimeout)
	for {
		err := s.launch()
		if err == nil {
			return
		}
		if errors.Is(err, errAddrInUse) && time.Now().Before(deadline) {
			// The old process's port may still be held for a moment.
			time.Sleep(100 * time.Millisecond)
			continue
		}
		t.Fatalf("redistest: start again: %v", err)
	}
}

// Restart stops the server and starts it again on the same address and data
// directory. With [WithAppendOnly] the data survives; without it the new
// server is empty (miniredis keeps its data either way).
func (s *Server) Restart(t testing.TB) {
	t.Helper()
	if s.kind == KindURL {
		t.Fatalf("redistest: cannot restart the server %s names; unset %s to let the test run its own", EnvURL, EnvURL)
	}
	s.Stop(t)
	s.Start(t)
}

func (s *Server) closeClients() {
	s.mu.Lock()
	clients := s.clients
	s.clients = nil
	s.mu.Unlock()
	for _, c := range clients {
		_ = c.Close() // "client is closed" when the test closed it first
	}
}

var errAddrInUse = errors.New("address already in use")

// process is one run of redis-server.
type process struct {
	cmd  *exec.Cmd
	log  *logBuffer
	done chan struct{} // closed when the process has exited
	err  error         // cmd.Wait's, once done is closed
}

// launch starts redis-server on s.Addr and waits until it answers PING.
// On failure the process is gone and the error includes its log's tail.
func (s *Server) launch() error {
	_, port, _ := net.SplitHostPort(s.Addr)
	args := append([]string{
		"--port", port,
		"--bind", "127.0.0.1",
		"--save", "",
		"--appendonly", "no",
		"--dir", s.dir,
		"--daemonize", "no",
		"--logfile", "",
	}, s.args...)
	if s.argv != nil {
		args = s.argv(port)
	}
	cmd := exec.Command(s.bin, args...)
	log := &logBuffer{}
	cmd.Stdout, cmd.Stderr = log, log
	setProcAttr(cmd)
	if err := cmd.Start(); err != nil {
		return fmt.Errorf("start %s: %v", s.bin, err)
	}
	p := &process{cmd: cmd, log: log, done: make(chan struct{})}
	go func() {
		p.err = cmd.Wait()
		close(p.done)
	}()

	if err := waitReady(s.Addr, p); err != nil {
		p.kill()
		if strings.Contains(log.String(), "Address already in use") {
			return fmt.Errorf("redis-server on %s: %w", s.Addr, errAddrInUse)
		}
		return fmt.Errorf("redis-server %s on %s: %v\n--- redis-server log (last %d lines) ---\n%s",
			commandLine(args), s.Addr, err, logTailLines, log.Tail(logTailLines))
	}
	s.mu.Lock()
	s.proc = p
	s.mu.Unlock()
	return nil
}

// waitReady waits until the server answers PING with PONG (not LOADING).
func waitReady(addr string, p *process) error {
	deadline := time.Now().Add(readyTimeout)
	var last error
	for time.Now().Before(deadline) {
		select {
		case <-p.done:
			return fmt.Errorf("exited before answering PING: %v", p.err)
		default:
		}
		if last = ping(addr, "PING"); last == nil {
			return nil
		}
		time.Sleep(20 * time.Millisecond)
	}
	return fmt.Errorf("no answer to PING within %v: %v", readyTimeout, last)
}

// ping sends one inline command and expects +PONG; it talks RESP directly so
// that readiness does not depend on a client's retries.
func ping(addr, cmd string) error {
	conn, err := net.DialTimeout("tcp", addr, 500*time.Millisecond)
	if err != nil {
		return err
	}
	defer conn.Close()
	_ = conn.SetDeadline(time.Now().Add(time.Second))
	if _, err := conn.Write([]byte(cmd + "\r\n")); err != nil {
		return err
	}
	line, err := bufio.NewReader(conn).ReadString('\n')
	if err != nil {
		return err
	}
	if line = strings.TrimSpace(line); line != "+PONG" {
		return fmt.Errorf("%s answered %q", cmd, line)
	}
	return nil
}

// stopLocked shuts the process down, if there is one. s.mu is held.
func (s *Server) stopLocked() error {
	p := s.proc
	if p == nil {
		return nil
	}
	s.proc = nil
	if conn, err := net.DialTimeout("tcp", s.Addr, time.Second); err == nil {
		_ = conn.SetDeadline(time.Now().Add(time.Second))
		_, _ = conn.Write([]byte("SHUTDOWN NOSAVE\r\n"))
		// The server closes the connection as it exits; wait for that.
		_, _ = conn.Read(make([]byte, 64))
		conn.Close()
	}
	select {
	case <-p.done:
		return nil
	case <-time.After(shutdownTimeout):
	}
	p.kill()
	return fmt.Errorf("did not exit within %v of SHUTDOWN NOSAVE and was killed\n--- redis-server log (last %d lines) ---\n%s",
		shutdownTimeout, logTailLines, p.log.Tail(logTailLines))
}

func (p *process) kill() {
	_ = p.cmd.Process.Kill()
	<-p.done
}

// freePort asks the kernel for a free loopback port. Another process may
// take it before redis-server listens; launch reports that as errAddrInUse
// and Start tries another.
func freePort() (int, error) {
	l, err := net.Listen("tcp", "127.0.0.1:0")
	if err != nil {
		return 0, err
	}
	defer l.Close()
	return l.Addr().(*net.TCPAddr).Port, nil
}

// commandLine joins args for a message, quoting the empty and spaced ones.
func commandLine(args []string) string {
	q := make([]string, len(args))
	for i, a := range args {
		if a == "" || strings.ContainsAny(a, " \t\"'") {
			a = strconv.Quote(a)
		}
		q[i] = a
	}
	return strings.Join(q, " ")
}

func redacted(raw string) string {
	u, err := url.Parse(raw)
	if err != nil {
		return "(unparsable URL)"
	}
	return u.Redacted()
}

// logBuffer collects a process's output; exec writes to it from its own
// goroutine while tests read it.
type logBuffer struct {
	mu  sync.Mutex
	buf bytes.Buffer
}

func (b *logBuffer) Write(p []byte) (int, error) {
	b.mu.Lock()
	defer b.mu.Unlock()
	return b.buf.Write(p)
}

func (b *logBuffer) String() string {
	b.mu.Lock()
	defer b.mu.Unlock()
	return b.buf.String()
}

// Tail returns the last n lines.
func (b *logBuffer) Tail(n int) string {
	lines := strings.Split(strings.TrimRight(b.String(), "\n"), "\n")
	if len(lines) > n {
		lines = lines[len(lines)-n:]
	}
	return strings.Join(lines, "\n")
}
