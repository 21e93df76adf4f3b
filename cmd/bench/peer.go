package main

import (
	"bufio"
	"context"
	_ "embed"
	"encoding/json"
	"errors"
	"fmt"
	"net"
	"os"
	"os/exec"
	"path/filepath"
	"strings"
	"time"

	"github.com/sbagenthub/twilio-worker/twiliosim"
)

// peerJS is the peer's program: BullMQ + twilio-node with an opt-out check.
//
//go:embed peer.js
var peerJS []byte

// The peer's npm packages, pinned: the versions issue 14 measured.
var peerPackages = []string{"bullmq@6.7.6", "ioredis@5.9.2", "twilio@6.3.1"}

// peerOptOutKey is the opt-out set the peer checks: ours (docs/keys.md), so
// that both check the same set.
const peerOptOutKey = "tw:{optout}:optout:sms"

// errSkip marks a scenario that cannot run here; the row says why and the
// bench does not count it as an error.
type errSkip struct{ why string }

func (e errSkip) Error() string { return "skipped: " + e.why }

func skipped(format string, args ...any) error { return errSkip{fmt.Sprintf(format, args...)} }

// peer: the same N messages through our pipeline (the throughput row's
// path: producer.SendSMS onto the paused default queue, then the worker
// binary at CONCURRENCY=50) and through what a team would write instead:
// BullMQ (Queue.addBulk, a Worker at concurrency 50) whose job runs
// SISMEMBER on the opt-out set and twilio-node's client.messages.create,
// both against the same Redis and simulator, one after the other.
func peerScenario(ctx context.Context, e *env) (result, error) {
	n, conc := 5000, 50
	if e.short {
		n = 1000
	}
	if e.redisURL != "" {
		if _, err := peerRedisEnv(e.redisURL); err != nil {
			return result{}, skipped("%v", err)
		}
	}
	dir, err := e.installPeer(ctx)
	if err != nil {
		return result{}, err
	}
	tg, err := e.redis(ctx)
	if err != nil {
		return result{}, err
	}
	defer tg.close()

	d, err := drainPipeline(ctx, e, tg, n, 0, fmt.Sprintf("CONCURRENCY=%d", conc))
	if err != nil {
		return result{}, err
	}
	if err := flush(ctx, tg.rdb); err != nil {
		return result{}, err
	}
	p, err := runPeer(ctx, e, tg, dir, n, conc)
	if err != nil {
		return result{}, fmt.Errorf("peer: %w", err)
	}
	ours, theirs := float64(n)/d.took.Seconds(), float64(n)/p.took.Seconds()
	ourCmds := float64(d.use.commands+d.enqueue.commands) / float64(n)
	peerCmds := float64(p.use.commands+p.enqueue.commands) / float64(n)
	_, redisUS, workerUS, _ := d.use.perTask(n)
	_, pRedisUS, pWorkerUS, _ := p.use.perTask(n)
	return result{
		Note: fmt.Sprintf("Peer: node %s, %s; enqueue with Queue.addBulk in chunks of 1,000", p.node, strings.Join(peerPackages, ", ")),
		Figures: tg.redisCPUKnown([]figure{
			{Name: "messages", Value: float64(n)},
			ratioAtLeast(figure{Name: "ours (throughput path) vs BullMQ + twilio-node", Value: ours, Unit: "msg/s"}, theirs, 1.0),
			versus(figure{Name: "Redis commands per message, enqueue + send (ours vs peer)", Value: ourCmds}, peerCmds),
			versus(figure{Name: "of which enqueue", Value: float64(d.enqueue.commands) / float64(n)}, float64(p.enqueue.commands)/float64(n)),
			versus(figure{Name: "redis-server CPU per message (ours vs peer)", Value: redisUS, Unit: "µs"}, pRedisUS),
			versus(figure{Name: "worker CPU per message (ours vs peer's node)", Value: workerUS, Unit: "µs"}, pWorkerUS),
		}),
	}, nil
}

// installPeer installs the peer's packages into a directory of the bench's
// temporary directory (never the repository) and writes peer.js there.
func (e *env) installPeer(ctx context.Context) (string, error) {
	for _, bin := range []string{"node", "npm"} {
		if _, err := exec.LookPath(bin); err != nil {
			return "", skipped("%s is not on PATH", bin)
		}
	}
	dir := filepath.Join(e.dir, "peer")
	if err := os.MkdirAll(dir, 0o755); err != nil {
		return "", err
	}
	if err := os.WriteFile(filepath.Join(dir, "package.json"), []byte(`{"name":"bench-peer","private":true}`+"\n"), 0o644); err != nil {
		return "", err
	}
	ictx, cancel := context.WithTimeout(ctx, 5*time.Minute)
	defer cancel()
	args := append([]string{"install", "--no-audit", "--no-fund", "--no-save", "--loglevel=error"}, peerPackages...)
	cmd := exec.CommandContext(ictx, "npm", args...)
	cmd.Dir = dir
	if out, err := cmd.CombinedOutput(); err != nil {
		return "", skipped("npm install %s failed (%v): %s", strings.Join(peerPackages, " "), err, npmReason(string(out)))
	}
	if err := os.WriteFile(filepath.Join(dir, "peer.js"), peerJS, 0o644); err != nil {
		return "", err
	}
	return dir, nil
}

// npmReason is the gist of npm's error output: its first few error lines,
// without the pointer to its log file.
func npmReason(out string) string {
	var keep []string
	for line := range strings.Lines(out) {
		line = strings.TrimSpace(line)
		if line == "" || strings.Contains(line, "complete log of this run") {
			continue
		}
		if keep = append(keep, line); len(keep) == 3 {
			break
		}
	}
	if len(keep) == 0 {
		return "no output"
	}
	return strings.Join(keep, "; ")
}

// peerRun is what runPeer measured.
type peerRun struct {
	took         time.Duration
	enqueue, use usage
	node         string
}

// runPeer runs peer.js on tg with a fresh simulator: the enqueue (counted
// apart), then the drain, timed by the script from its worker's start to its
// N-th completed job.
func runPeer(ctx context.Context, e *env, tg *target, dir string, n, conc int) (peerRun, error) {
	sim, simURL, stopSim, err := startSim()
	if err != nil {
		return peerRun{}, err
	}
	defer stopSim()
	redisEnv, err := peerRedisEnv(tg.url)
	if err != nil {
		return peerRun{}, err
	}
	type msg struct {
		To   string `json:"to"`
		Body string `json:"body"`
	}
	msgs := make([]msg, n)
	for i := range msgs {
		p := smsPayload(i, "")
		msgs[i] = msg{p.To, p.Body}
	}
	b, _ := json.Marshal(msgs)
	file := filepath.Join(dir, "messages.json")
	if err := os.WriteFile(file, b, 0o644); err != nil {
		return peerRun{}, err
	}
	nodeVersion, _ := exec.CommandContext(ctx, "node", "--version").Output()

	cmd := exec.CommandContext(ctx, "node", "peer.js")
	cmd.Dir = dir
	cmd.Env = append(append(os.Environ(), redisEnv...), "SIM_URL="+simURL,
		fmt.Sprintf("N=%d", n), fmt.Sprintf("CONCURRENCY=%d", conc), "FROM="+benchFrom, "OPTOUT_KEY="+peerOptOutKey,
		"MESSAGES="+file, "ACCOUNT_SID="+twiliosim.AccountSIDDefault, "AUTH_TOKEN="+twiliosim.AuthTokenDefault)
	stdin, err := cmd.StdinPipe()
	if err != nil {
		return peerRun{}, err
	}
	stdout, err := cmd.StdoutPipe()
	if err != nil {
		return peerRun{}, err
	}
	var stderr strings.Builder
	cmd.Stderr = &stderr
	m := meter{rdb: tg.rdb, redisPids: tg.pids}
	before, err := m.read(ctx)
	if err != nil {
		return peerRun{}, err
	}
	if err := cmd.Start(); err != nil {
		return peerRun{}, err
	}
	defer func() { _ = cmd.Process.Kill(); _ = cmd.Wait() }()
	m.workerPid = cmd.Process.Pid
	lines := bufio.NewScanner(stdout)
	next := func(prefix string) (string, error) {
		for lines.Scan() {
			if rest, ok := strings.CutPrefix(lines.Text(), prefix); ok {
				return rest, nil
			}
		}
		return "", fmt.Errorf("peer.js ended before %q: %v\n%s", prefix, lines.Err(), lastLines(stderr.String(), 15))
	}
	if _, err := next("queued"); err != nil {
		return peerRun{}, err
	}
	queued, err := m.read(ctx)
	if err != nil {
		return peerRun{}, err
	}
	if _, err := fmt.Fprintln(stdin, "go"); err != nil {
		return peerRun{}, err
	}
	rest, err := next("done ")
	if err != nil {
		return peerRun{}, err
	}
	after, err := m.read(ctx)
	if err != nil {
		return peerRun{}, err
	}
	var res struct {
		MS                          float64
		Completed, Failed, OptedOut int
		FirstError                  string
	}
	if err := json.Unmarshal([]byte(rest), &res); err != nil {
		return peerRun{}, fmt.Errorf("peer.js said %q: %w", rest, err)
	}
	if res.Failed > 0 {
		return peerRun{}, fmt.Errorf("%d of %d peer jobs failed, the first: %s", res.Failed, n, res.FirstError)
	}
	if got := len(sim.Messages()); got != n {
		return peerRun{}, fmt.Errorf("the simulator received %d messages from the peer, want %d", got, n)
	}
	return peerRun{took: time.Duration(res.MS * float64(time.Millisecond)), enqueue: queued.sub(before),
		use: after.sub(queued), node: strings.TrimSpace(string(nodeVersion))}, nil
}

func lastLines(s string, n int) string {
	lines := strings.Split(strings.TrimSpace(s), "\n")
	return strings.Join(lines[max(len(lines)-n, 0):], "\n")
}

// peerRedisEnv is where peer.js finds Redis: REDIS_HOST and REDIS_PORT for
// a redis:// node, REDIS_NODES for a redis-cluster:// one.
func peerRedisEnv(raw string) ([]string, error) {
	if rest, ok := strings.CutPrefix(raw, "redis-cluster://"); ok {
		if strings.ContainsAny(rest, "@?/") {
			return nil, errors.New("the peer is given a cluster's host:port list only, no credentials or options")
		}
		return []string{"REDIS_NODES=" + rest}, nil
	}
	host, port, err := redisHostPort(raw)
	if err != nil {
		return nil, err
	}
	return []string{"REDIS_HOST=" + host, "REDIS_PORT=" + port}, nil
}

// redisHostPort is the host and port of a redis:// URL.
func redisHostPort(raw string) (string, string, error) {
	rest, ok := strings.CutPrefix(raw, "redis://")
	if !ok {
		return "", "", errors.New("the peer runs on a redis:// node or a redis-cluster:// list only")
	}
	hostport, _, _ := strings.Cut(rest, "/")
	if i := strings.LastIndexByte(hostport, '@'); i >= 0 {
		return "", "", errors.New("the peer is not given Redis credentials")
	}
	return net.SplitHostPort(hostport)
}
