package e2e

// The fault suite: real worker processes, a real redis-server with the
// append-only file and the twiliosim binary, and a fault while several
// hundred messages go through: workers killed with SIGKILL, Redis restarted,
// the workers' Redis connections cut, 503 and 429 storms, creates whose
// answer is dropped. After each, every message must be in the simulator
// exactly once and every sms:send task completed.
//
// Each test prints a summary line (sent, duplicates, lost, retried) so that
// CI output shows what the fault did. -short trims the message count.

import (
	"context"
	"encoding/json"
	"errors"
	"fmt"
	"io"
	"math/rand/v2"
	"net"
	"net/http"
	"os"
	"path/filepath"
	"sort"
	"strconv"
	"strings"
	"sync"
	"syscall"
	"testing"
	"time"

	"github.com/hibiken/asynq"
	"github.com/redis/go-redis/v9"

	"github.com/sbagenthub/twilio-worker/commlog"
	"github.com/sbagenthub/twilio-worker/delivery"
	"github.com/sbagenthub/twilio-worker/internal/redistest"
	"github.com/sbagenthub/twilio-worker/tasks"
)

// faultN is the number of messages per fault run.
func faultN() int {
	if testing.Short() {
		return 200
	}
	return 500
}

// faultStack is a redis-server with AOF, the simulator binary and any
// number of worker processes, which may be killed and replaced.
type faultStack struct {
	t        *testing.T
	redis    *redistest.Server     // nil on a cluster
	target   *redisTarget          // the node or the cluster
	rdb      redis.UniversalClient // the test's own connection, never through a proxy
	insp     *asynq.Inspector
	client   *asynq.Client
	simURL   string
	redisURL string // what workers connect to (a proxy's address, or the server's)

	mu      sync.Mutex
	workers []*proc
	orphans int // leases ended by expireOrphans
}

// faultSlot lets one fault run go at a time: each keeps two cores busy, and
// the package's other tests (some of them measure rates) run alongside.
var faultSlot = make(chan struct{}, 1)

func newFaultStack(t *testing.T, simArgs ...string) *faultStack {
	t.Helper()
	return newFaultStackOn(t, onNode, simArgs...)
}

// newFaultStackOn is newFaultStack on a Redis of the given kind (a cluster
// has no AOF, and cannot be stopped or restarted by the test).
func newFaultStackOn(t *testing.T, kind string, simArgs ...string) *faultStack {
	t.Helper()
	faultSlot <- struct{}{}
	t.Cleanup(func() { <-faultSlot }) // registered first, so run last: after the processes stop
	f := &faultStack{t: t, target: startRedis(t, kind, redistest.WithAppendOnly())}
	f.redis = f.target.node
	f.rdb = f.target.Client(t)
	f.insp = asynq.NewInspectorFromRedisClient(f.rdb)
	f.client = asynq.NewClientFromRedisClient(f.rdb)
	f.redisURL = f.target.URL()
	simAddr := freeAddr(t)
	start(t, nil, bin.twiliosim, append([]string{"--addr", simAddr, "--delivery-delay", "10ms"}, simArgs...)...)
	f.simURL = "http://" + simAddr
	waitHTTP(t, f.simURL+"/sim/messages")
	return f
}

// startWorker starts one more worker and waits until it serves HTTP.
func (f *faultStack) startWorker() *proc {
	f.t.Helper()
	httpAddr := freeAddr(f.t)
	env := []string{
		"REDIS_URL=" + f.redisURL, "HTTP_ADDR=" + httpAddr,
		"TWILIO_API_URL=" + f.simURL, "TWILIO_ACCOUNT_SID=AC00000000000000000000000000000000",
		"TWILIO_AUTH_TOKEN=00000000000000000000000000000000", "TWILIO_PHONE_NUMBER=+15005550006",
		// Limits must not bind: the faults are what is under test.
		"SENDER_RATE=10000/s", "RECIPIENT_RATE=10000/s",
		"CONCURRENCY=16", "SHUTDOWN_TIMEOUT=2s",
	}
	p := start(f.t, env, bin.worker)
	waitHTTP(f.t, "http://"+httpAddr+"/healthz")
	f.mu.Lock()
	f.workers = append(f.workers, p)
	f.mu.Unlock()
	return p
}

// live returns the workers that have not exited.
func (f *faultStack) live() []*proc {
	f.mu.Lock()
	defer f.mu.Unlock()
	var out []*proc
	for _, p := range f.workers {
		select {
		case <-p.done:
		default:
			out = append(out, p)
		}
	}
	return out
}

// kill9 kills a live worker with SIGKILL: no shutdown, no re-queueing.
func (f *faultStack) kill9(p *proc) {
	f.t.Helper()
	if err := p.cmd.Process.Signal(syscall.SIGKILL); err != nil {
		f.t.Fatal(err)
	}
	<-p.done
}

// faultTo is the i-th test recipient: distinct per message, so duplicates
// can be counted.
func faultTo(i int) string { return fmt.Sprintf("+1415555%04d", i) }

func faultTaskID(i int) string { return "fault-" + strconv.Itoa(i) }

// enqueue queues message i, retrying while Redis is unreachable (a task id
// conflict means an earlier try went through).
func (f *faultStack) enqueue(ctx context.Context, i int) error {
	task, err := tasks.NewSendSMSTask(tasks.SMSPayload{To: faultTo(i), Body: "fault run message " + strconv.Itoa(i)},
		tasks.Rules{}, asynq.TaskID(faultTaskID(i)))
	if err != nil {
		return err
	}
	for {
		_, err := f.client.EnqueueContext(ctx, task)
		if err == nil || errors.Is(err, asynq.ErrTaskIDConflict) {
			return nil
		}
		select {
		case <-ctx.Done():
			return fmt.Errorf("enqueue %d: %w (last error %v)", i, ctx.Err(), err)
		case <-time.After(100 * time.Millisecond):
		}
	}
}

// trickle enqueues n messages at about perSecond, in the background; the
// returned channel yields the outcome once all are queued.
func (f *faultStack) trickle(n, perSecond int) <-chan error {
	done := make(chan error, 1)
	go func() {
		ctx, cancel := context.WithTimeout(context.Background(), 2*time.Minute)
		defer cancel()
		tick := time.Second / time.Duration(perSecond)
		next := time.Now()
		for i := range n {
			if err := f.enqueue(ctx, i); err != nil {
				done <- err
				return
			}
			next = next.Add(tick)
			time.Sleep(time.Until(next))
		}
		done <- nil
	}()
	return done
}

// sent counts the simulator's messages to each test recipient.
func (f *faultStack) sent() map[string]int {
	f.t.Helper()
	by := map[string]int{}
	for _, m := range simMessages(f.t, f.simURL) {
		by[m.To]++
	}
	return by
}

// sendTasks lists the sms:send tasks by state (the queue also holds
// sms:track tasks, which are left alone).
func (f *faultStack) sendTasks() (map[asynq.TaskState][]*asynq.TaskInfo, error) {
	out := map[asynq.TaskState][]*asynq.TaskInfo{}
	lists := map[asynq.TaskState]func(string, ...asynq.ListOption) ([]*asynq.TaskInfo, error){
		asynq.TaskStatePending: f.insp.ListPendingTasks, asynq.TaskStateActive: f.insp.ListActiveTasks,
		asynq.TaskStateScheduled: f.insp.ListScheduledTasks, asynq.TaskStateRetry: f.insp.ListRetryTasks,
		asynq.TaskStateArchived: f.insp.ListArchivedTasks, asynq.TaskStateCompleted: f.insp.ListCompletedTasks,
	}
	const size = 1000
	for state, list := range lists {
		for page := 1; ; page++ {
			infos, err := list(tasks.QueueDefault, asynq.PageSize(size), asynq.Page(page))
			if err != nil {
				return nil, fmt.Errorf("list %s: %w", state, err)
			}
			for _, ti := range infos {
				if ti.Type == tasks.TypeSendSMS {
					out[state] = append(out[state], ti)
				}
			}
			if len(infos) < size {
				break
			}
		}
	}
	return out, nil
}

// faultReport is what a fault run ends with.
type faultReport struct {
	n, sent, duplicates, lost, retried, archived, orphans int
	reconciled, deferred                                  int // from the workers' logs
	took                                                  time.Duration
}

func (r faultReport) String() string {
	return fmt.Sprintf("n=%d sent=%d duplicates=%d lost=%d retried=%d archived=%d reconciled=%d deferred-by-429=%d orphans-recovered=%d took=%s",
		r.n, r.sent, r.duplicates, r.lost, r.retried, r.archived, r.reconciled, r.deferred, r.orphans, r.took.Round(100*time.Millisecond))
}

// settle waits until no sms:send task is pending, active, scheduled or
// in retry, then checks the simulator: exactly one message per recipient.
//
// A task whose worker died (or whose dequeue answer was lost with a cut
// connection) stays active until its lease runs out and a recoverer finds
// it, 60-120 s later. When the run stops moving, settle ends such leases
// early (expireOrphans) and starts a worker, whose recoverer runs at once.
func (f *faultStack) settle(name string, n int, began time.Time, within time.Duration) faultReport {
	f.t.Helper()
	deadline := time.Now().Add(within)
	rep := faultReport{n: n}
	lastDone, lastMove := -1, time.Now()
	for {
		states, err := f.sendTasks()
		if err != nil {
			f.t.Logf("%s: %v (Redis unreachable?)", name, err)
			time.Sleep(200 * time.Millisecond)
			continue
		}
		open := len(states[asynq.TaskStatePending]) + len(states[asynq.TaskStateActive]) +
			len(states[asynq.TaskStateScheduled]) + len(states[asynq.TaskStateRetry])
		done := len(states[asynq.TaskStateCompleted]) + len(states[asynq.TaskStateArchived])
		if open == 0 && done >= n {
			rep.archived = len(states[asynq.TaskStateArchived])
			for _, ti := range states[asynq.TaskStateCompleted] {
				rep.retried += ti.Retried
			}
			for _, ti := range states[asynq.TaskStateArchived] {
				rep.retried += ti.Retried
				f.t.Errorf("%s: task %s archived: %s", name, ti.ID, ti.LastErr)
			}
			break
		}
		if done != lastDone {
			lastDone, lastMove = done, time.Now()
		}
		if time.Since(lastMove) > 3*time.Second && len(states[asynq.TaskStateActive]) > 0 {
			if f.expireOrphans() > 0 {
				f.startWorker() // its recoverer runs as it starts
			}
			lastMove = time.Now()
		}
		if time.Now().After(deadline) {
			f.t.Fatalf("%s: after %s: %d pending, %d active, %d scheduled, %d retry, %d done of %d", name, within,
				len(states[asynq.TaskStatePending]), len(states[asynq.TaskStateActive]), len(states[asynq.TaskStateScheduled]),
				len(states[asynq.TaskStateRetry]), done, n)
		}
		time.Sleep(250 * time.Millisecond)
	}
	rep.took = time.Since(began)
	f.mu.Lock()
	rep.orphans = f.orphans
	for _, p := range f.workers {
		out := p.output()
		rep.reconciled += strings.Count(out, "earlier attempt reached Twilio")
		rep.deferred += strings.Count(out, "sms deferred: Twilio rate limit")
	}
	f.mu.Unlock()
	by := f.sent()
	var dups []string
	for i := range n {
		switch c := by[faultTo(i)]; {
		case c == 0:
			rep.lost++
		case c > 1:
			rep.duplicates += c - 1
			dups = append(dups, fmt.Sprintf("%s×%d", faultTaskID(i), c))
		}
		if by[faultTo(i)] > 0 {
			rep.sent++
		}
	}
	f.t.Logf("FAULTS %s: %s", name, rep)
	recordFaults(f.t, fmt.Sprintf("FAULTS %s: %s", name, rep))
	if rep.duplicates > 0 || rep.lost > 0 || rep.sent != n {
		sort.Strings(dups)
		f.t.Errorf("%s: want every message exactly once; duplicates: %v", name, dups)
	}
	return rep
}

// expireOrphans ends the leases of active tasks that no live worker holds,
// as the lease's running out would some 30-90 s later, and returns how many
// it ended. A task counts as orphaned when its lease was not extended over
// a full heartbeat of every live worker (each extends its tasks' leases
// every 5 s) and no live worker lists it.
func (f *faultStack) expireOrphans() int {
	f.t.Helper()
	ctx := context.Background()
	queues := []string{tasks.QueueCritical, tasks.QueueDefault, tasks.QueueBulk}
	leaseKey := func(q string) string { return "asynq:{" + q + "}:lease" }
	snapshot := func() (map[string]float64, error) {
		out := map[string]float64{}
		for _, q := range queues {
			zs, err := f.rdb.ZRangeWithScores(ctx, leaseKey(q), 0, -1).Result()
			if err != nil {
				return nil, err
			}
			for _, z := range zs {
				out[q+"\x00"+z.Member.(string)] = z.Score
			}
		}
		return out, nil
	}
	t1 := time.Now()
	before, err := snapshot()
	if err != nil || len(before) == 0 {
		return 0
	}
	// Wait until every live worker has written its state (and extended its
	// leases) at least 2 s after t1; asynq keeps the state 10 s.
	live := len(f.live())
	var fresh []string
	for deadline := time.Now().Add(20 * time.Second); ; {
		zs, err := f.rdb.ZRangeWithScores(ctx, "asynq:workers", 0, -1).Result()
		fresh = fresh[:0]
		if err == nil {
			for _, z := range zs {
				if int64(z.Score)-10 >= t1.Unix()+2 {
					fresh = append(fresh, z.Member.(string))
				}
			}
		}
		if len(fresh) >= live {
			break
		}
		if time.Now().After(deadline) {
			f.t.Logf("expireOrphans: only %d of %d workers wrote their state", len(fresh), live)
			return 0
		}
		time.Sleep(250 * time.Millisecond)
	}
	held := map[string]bool{}
	for _, k := range fresh {
		ids, err := f.rdb.HKeys(ctx, k).Result()
		if err != nil {
			return 0
		}
		for _, id := range ids {
			held[id] = true
		}
	}
	after, err := snapshot()
	if err != nil {
		return 0
	}
	past := float64(time.Now().Add(-2 * time.Minute).Unix())
	n := 0
	for key, score := range after {
		q, id, _ := strings.Cut(key, "\x00")
		if s0, ok := before[key]; !ok || s0 != score || held[id] {
			continue
		}
		if err := f.rdb.ZAddXX(ctx, leaseKey(q), redis.Z{Score: past, Member: id}).Err(); err == nil {
			n++
		}
	}
	f.mu.Lock()
	f.orphans += n
	f.mu.Unlock()
	if n > 0 {
		f.t.Logf("expireOrphans: ended the leases of %d orphaned tasks", n)
	}
	return n
}

// tcpProxy forwards connections to a target and can cut them all at once:
// the workers' connections to Redis, for the connection-cut fault.
type tcpProxy struct {
	ln     net.Listener
	target string
	mu     sync.Mutex
	conns  map[net.Conn]struct{}
	closed bool
}

func newTCPProxy(t *testing.T, target string) *tcpProxy {
	t.Helper()
	ln, err := net.Listen("tcp", "127.0.0.1:0")
	if err != nil {
		t.Fatal(err)
	}
	p := &tcpProxy{ln: ln, target: target, conns: map[net.Conn]struct{}{}}
	go p.serve()
	t.Cleanup(p.close)
	return p
}

func (p *tcpProxy) Addr() string { return p.ln.Addr().String() }

func (p *tcpProxy) serve() {
	for {
		c, err := p.ln.Accept()
		if err != nil {
			return
		}
		go p.pipe(c)
	}
}

func (p *tcpProxy) pipe(c net.Conn) {
	up, err := net.DialTimeout("tcp", p.target, 2*time.Second)
	if err != nil {
		c.Close()
		return
	}
	if !p.track(c, up) {
		return
	}
	done := make(chan struct{}, 2)
	cp := func(dst, src net.Conn) {
		_, _ = io.Copy(dst, src)
		done <- struct{}{}
	}
	go cp(up, c)
	go cp(c, up)
	<-done // either side ended: end both
	p.untrack(c, up)
	<-done
}

func (p *tcpProxy) track(cs ...net.Conn) bool {
	p.mu.Lock()
	defer p.mu.Unlock()
	if p.closed {
		for _, c := range cs {
			c.Close()
		}
		return false
	}
	for _, c := range cs {
		p.conns[c] = struct{}{}
	}
	return true
}

func (p *tcpProxy) untrack(cs ...net.Conn) {
	p.mu.Lock()
	defer p.mu.Unlock()
	for _, c := range cs {
		c.Close()
		delete(p.conns, c)
	}
}

// cut closes every connection through the proxy (new ones are accepted)
// and returns how many pairs it cut.
func (p *tcpProxy) cut() int {
	p.mu.Lock()
	defer p.mu.Unlock()
	for c := range p.conns {
		c.Close()
	}
	n := len(p.conns) / 2
	clear(p.conns)
	return n
}

func (p *tcpProxy) close() {
	p.mu.Lock()
	p.closed = true
	p.mu.Unlock()
	p.ln.Close()
	p.cut()
}

// waitSent waits until the simulator has at least k messages (so that a
// fault lands while the run is under way).
func (f *faultStack) waitSent(k int) {
	f.t.Helper()
	deadline := time.Now().Add(60 * time.Second)
	for len(simMessages(f.t, f.simURL)) < k {
		if time.Now().After(deadline) {
			f.t.Fatalf("fewer than %d messages sent after 60 s", k)
		}
		time.Sleep(50 * time.Millisecond)
	}
}

func mustTrickle(t *testing.T, ch <-chan error) {
	t.Helper()
	if err := <-ch; err != nil {
		t.Fatal(err)
	}
}

// faultBudget is how long a run may take to settle.
const faultBudget = 150 * time.Second

func TestFaultWorkersKilled(t *testing.T) {
	t.Parallel()
	onEachRedis(t, func(t *testing.T, kind string) {
		// Long answers keep many sends in flight when the kill comes.
		f := newFaultStackOn(t, kind, "--latency", "100ms-400ms")
		for range 3 {
			f.startWorker()
		}
		n := faultN()
		began := time.Now()
		enq := f.trickle(n, 100)
		kills := 2
		for k := range kills {
			// A random moment within the run, while handlers are mid-send.
			f.waitSent(n * (k + 1) / (kills + 2) * (80 + rand.IntN(40)) / 100)
			live := f.live()
			victim := live[rand.IntN(len(live))]
			f.kill9(victim)
			t.Logf("kill -9 worker pid %d", victim.cmd.Process.Pid)
			f.expireOrphans()
			f.startWorker() // the replacement: its recoverer runs as it starts
		}
		mustTrickle(t, enq)
		f.settle("kill -9", n, began, faultBudget)
	})
}

func TestFaultRedisRestart(t *testing.T) {
	t.Parallel()
	f := newFaultStack(t, "--latency", "20ms-120ms")
	for range 2 {
		f.startWorker()
	}
	n := faultN()
	began := time.Now()
	enq := f.trickle(n, 100)
	f.waitSent(n / 3)
	f.redis.Restart(t)
	t.Log("redis restarted")
	f.waitSent(2 * n / 3)
	// The second time Redis stays away long enough for handlers,
	// acknowledgements and heartbeats to fail.
	live := f.live()
	from := outputLen(live)
	stopped := time.Now()
	f.redis.Stop(t)
	// Away until every worker has seen it: dequeues and heartbeats failed.
	for i, p := range live {
		waitOutput(t, []*proc{p}, from[i:i+1], "Dequeue error", 1)
		waitOutput(t, []*proc{p}, from[i:i+1], "Failed to write server state", 1)
	}
	f.redis.Start(t)
	t.Logf("redis stopped for %v, until every worker's dequeues and heartbeats had failed, and started again", time.Since(stopped).Round(100*time.Millisecond))
	mustTrickle(t, enq)
	f.settle("redis restart", n, began, faultBudget)
}

func TestFaultRedisConnectionsCut(t *testing.T) {
	t.Parallel()
	f := newFaultStack(t, "--latency", "20ms-120ms")
	proxy := newTCPProxy(t, f.redis.Addr)
	f.redisURL = "redis://" + proxy.Addr() + "/0"
	for range 2 {
		f.startWorker()
	}
	n := faultN()
	began := time.Now()
	enq := f.trickle(n, 100)
	f.waitSent(n / 10)
	cuts, pairs := 0, 0
	for {
		select {
		case err := <-enq:
			if err != nil {
				t.Fatal(err)
			}
			t.Logf("cut all worker-Redis connections %d times (%d connections)", cuts, pairs)
			f.settle("redis connection cuts", n, began, faultBudget)
			return
		case <-time.After(time.Duration(200+rand.IntN(600)) * time.Millisecond):
			pairs += proxy.cut()
			cuts++
		}
	}
}

func TestFault503Storm(t *testing.T) {
	t.Parallel()
	f := newFaultStack(t, "--latency", "5ms-30ms")
	for range 2 {
		f.startWorker()
	}
	n := faultN()
	began := time.Now()
	enq := f.trickle(n, 150)
	f.waitSent(n / 10)
	// The storm lasts until the workers have logged its effect: n/10 failed
	// sends that will be retried.
	live := f.live()
	from := outputLen(live)
	simConfig(t, f.simURL, `{"errorRate":0.5}`)
	got := waitOutput(t, live, from, "sms send failed; will retry", n/10)
	simConfig(t, f.simURL, `{"errorRate":0}`)
	t.Logf("503 storm until the workers had logged %d failed sends", got)
	mustTrickle(t, enq)
	if rep := f.settle("503 storm", n, began, faultBudget); rep.retried == 0 {
		t.Error("the storm caused no retries")
	}
}

func TestFault429Storm(t *testing.T) {
	t.Parallel()
	f := newFaultStack(t, "--latency", "20ms-60ms")
	for range 2 {
		f.startWorker()
	}
	n := faultN()
	began := time.Now()
	enq := f.trickle(n, 150)
	f.waitSent(n / 10)
	// The storm lasts until the workers have logged its effect: n/10 sends
	// deferred by Twilio's rate limit.
	live := f.live()
	from := outputLen(live)
	simConfig(t, f.simURL, `{"maxConcurrent":3}`)
	got := waitOutput(t, live, from, "sms deferred: Twilio rate limit", n/10)
	simConfig(t, f.simURL, `{"maxConcurrent":0}`)
	t.Logf("429 storm until the workers had logged %d deferred sends", got)
	mustTrickle(t, enq)
	if rep := f.settle("429 storm", n, began, faultBudget); rep.deferred == 0 {
		t.Error("the storm deferred nothing")
	}
}

func TestFaultDroppedAfterCreate(t *testing.T) {
	t.Parallel()
	f := newFaultStack(t, "--latency", "5ms-30ms", "--drop-rate", "0.25")
	for range 2 {
		f.startWorker()
	}
	n := faultN()
	began := time.Now()
	mustTrickle(t, f.trickle(n, 150))
	if rep := f.settle("create then drop", n, began, faultBudget); rep.reconciled == 0 {
		t.Error("no dropped create was reconciled")
	}
}

// TestEnqueuedWhileDroppingIsSentOnce is the acceptance case: a message
// queued with the enqueue command while the simulator drops every answer
// after creating is in the simulator exactly once.
func TestEnqueuedWhileDroppingIsSentOnce(t *testing.T) {
	t.Parallel()
	s := newStack(t, []string{"--drop-rate", "1"})
	r := runEnqueue(t, s.env, "sms", "--to", "+14155550177", "--body", "dropped once, sent once")
	if r.code != 0 {
		t.Fatalf("exit %d: %s", r.code, r.stderr)
	}
	var out struct{ TaskID string }
	r.json(t, &out)
	st := waitStatus(t, s.env, out.TaskID)
	msgs := simMessages(t, s.simURL)
	if st.State != "completed" || len(msgs) != 1 {
		t.Fatalf("state %s (%s), %d messages in the simulator; want completed and exactly 1", st.State, st.LastError, len(msgs))
	}
	if st.Retried < 1 {
		t.Errorf("retried %d: the dropped answer should have caused a re-run", st.Retried)
	}
}

// TestPoisonTasksArchivedWorkerGoesOn: tasks whose payload cannot be decoded
// are archived with the reason, and the worker keeps processing.
func TestPoisonTasksArchivedWorkerGoesOn(t *testing.T) {
	t.Parallel()
	s := newStack(t, nil)
	rdb := s.redis.Client(t)
	client := asynq.NewClientFromRedisClient(rdb)
	insp := asynq.NewInspectorFromRedisClient(rdb)
	poison := map[string]string{ // type -> task id
		tasks.TypeSendSMS: "poison-sms", tasks.TypeMakeCall: "poison-call",
		tasks.TypePollCall: "poison-poll", tasks.TypeTrackSMS: "poison-track",
	}
	for typ, id := range poison {
		if _, err := client.Enqueue(asynq.NewTask(typ, []byte("{not json\xff"), asynq.TaskID(id), asynq.MaxRetry(10))); err != nil {
			t.Fatal(err)
		}
	}
	r := runEnqueue(t, s.env, "sms", "--to", "+14155550188", "--body", "after the poison")
	if r.code != 0 {
		t.Fatalf("exit %d: %s", r.code, r.stderr)
	}
	var out struct{ TaskID string }
	r.json(t, &out)
	if st := waitStatus(t, s.env, out.TaskID); st.State != "completed" {
		t.Fatalf("the message after the poison: %+v", st)
	}
	for typ, id := range poison {
		deadline := time.Now().Add(30 * time.Second)
		for {
			ti, err := insp.GetTaskInfo(tasks.QueueDefault, id)
			if err != nil {
				t.Fatal(err)
			}
			if ti.State == asynq.TaskStateArchived {
				if ti.Retried != 0 || !strings.Contains(ti.LastErr, "invalid payload") {
					t.Errorf("%s archived after %d retries with %q; want at once, with the reason", typ, ti.Retried, ti.LastErr)
				}
				break
			}
			if time.Now().After(deadline) {
				t.Fatalf("%s: %s (%q)", typ, ti.State, ti.LastErr)
			}
			time.Sleep(50 * time.Millisecond)
		}
	}
	if n := len(simMessages(t, s.simURL)); n != 1 {
		t.Fatalf("%d messages sent, want 1", n)
	}
}

var faultsFile sync.Mutex

// recordFaults appends a summary line to $ARTIFACTS_DIR/faults.txt (default
// ./artifacts at the module root), which .ci/run prints: go test shows a
// passing test's log only with -v.
func recordFaults(t *testing.T, line string) {
	t.Helper()
	dir := os.Getenv("ARTIFACTS_DIR")
	if dir == "" {
		dir = filepath.Join("..", "artifacts")
	}
	faultsFile.Lock()
	defer faultsFile.Unlock()
	if err := os.MkdirAll(dir, 0o755); err != nil {
		t.Logf("faults summary not written: %v", err)
		return
	}
	f, err := os.OpenFile(filepath.Join(dir, "faults.txt"), os.O_APPEND|os.O_CREATE|os.O_WRONLY, 0o644)
	if err != nil {
		t.Logf("faults summary not written: %v", err)
		return
	}
	defer f.Close()
	fmt.Fprintf(f, "%s %s\n", time.Now().UTC().Format(time.RFC3339), line)
}

// TestFaultRecoveredMessageIsRedelivered: a message whose create answer was
// dropped is recovered by reconciliation and then followed like any other.
// +15005551004 always ends undelivered with 30003 (transient), so the
// recovered message must be sent again REDELIVER_MAX (2) times, its delivery
// record must name its task, and the log must hold its outcomes. On main the
// recovered message went once and was never followed.
func TestFaultRecoveredMessageIsRedelivered(t *testing.T) {
	t.Parallel()
	s := newStack(t, []string{"--drop-rate", "1"},
		"REDELIVER_BACKOFF=1s", "CALL_POLL_FIRST=1s", "CALL_POLL_MAX=1s")
	const to = "+15005551004"
	r := runEnqueue(t, s.env, "sms", "--to", to, "--body", "recovered, then redelivered", "--id", "recovered-1")
	if r.code != 0 {
		t.Fatalf("exit %d: %s", r.code, r.stderr)
	}
	// The first create is dropped; let the rest through.
	first := waitSimMessages(t, s.simURL, to, 1, 60*time.Second)[0]
	simConfig(t, s.simURL, `{"dropRate":0}`)

	st := waitStatus(t, s.env, "recovered-1")
	if st.State != "completed" || st.Retried < 1 {
		t.Fatalf("task %+v; want completed after a re-run that reconciled", st)
	}
	msgs := waitSimMessages(t, s.simURL, to, 3, 90*time.Second)
	if len(msgs) != 3 {
		t.Fatalf("%d messages to %s; want the original and 2 redeliveries", len(msgs), to)
	}
	rdb := s.redis.Client(t)
	rec, err := delivery.NewStore(rdb).Get(bg, first.Sid)
	if err != nil || rec.TaskID != "recovered-1" {
		t.Fatalf("delivery record of the recovered message: %+v, %v; want one linked to task recovered-1", rec, err)
	}
	// Every send's outcome and both redeliveries are in the log.
	deadline := time.Now().Add(60 * time.Second)
	for {
		events := map[string]int{}
		_, err := commlog.New(rdb, commlog.Config{}).Read(bg, commlog.Filter{}, func(e commlog.Entry) error {
			if strings.HasPrefix(e.TaskID, "recovered-1") {
				events[e.Event]++
			}
			return nil
		})
		if err != nil {
			t.Fatal(err)
		}
		if events[commlog.Undelivered] >= 3 && events[commlog.Redelivery] == 2 && events[commlog.Sent] >= 3 {
			break
		}
		if time.Now().After(deadline) {
			t.Fatalf("log events of recovered-1: %v; want 3 sent, 3 undelivered, 2 redelivery", events)
		}
		time.Sleep(100 * time.Millisecond)
	}
}

// waitSimMessages waits until the simulator holds at least n messages to
// `to` and returns them (oldest first).
func waitSimMessages(t *testing.T, simURL, to string, n int, within time.Duration) []simMessage {
	t.Helper()
	deadline := time.Now().Add(within)
	for {
		var got []simMessage
		for _, m := range simMessages(t, simURL) {
			if m.To == to {
				got = append(got, m)
			}
		}
		if len(got) >= n {
			return got
		}
		if time.Now().After(deadline) {
			t.Fatalf("%d messages to %s after %s; want %d", len(got), to, within, n)
		}
		time.Sleep(50 * time.Millisecond)
	}
}

// TestFaultDroppedCallsKeepWhatHappened: every call's create answer is
// dropped, so each call is recovered by reconciliation, typically after it
// already ended, and its status callbacks arrive before its record exists.
// Polling is pushed out of the way (CALL_POLL_FIRST=30m): the record must
// come out of the recovery and the early callbacks alone with its final
// status, duration, start and end, and every call must count once in
// calls_total. On main they were recorded with duration 0 and no times, the
// early callbacks were dropped and calls_total stayed 0.
func TestFaultDroppedCallsKeepWhatHappened(t *testing.T) {
	t.Parallel()
	addr := freeAddr(t)
	s := newStackAt(t, addr, []string{"--drop-rate", "1", "--call-ring", "10ms", "--call-duration", "300ms"},
		"PUBLIC_URL=http://"+addr, "CALL_POLL_FIRST=30m", "CALL_POLL_MAX=30m")
	const n = 5
	var taskIDs []string
	for i := range n {
		r := runEnqueue(t, s.env, "call", "--to", fmt.Sprintf("+1415555%04d", 9100+i), "--say", "recovered call")
		if r.code != 0 {
			t.Fatalf("enqueue call: exit %d %s", r.code, r.stderr)
		}
		var out struct{ TaskID string }
		r.json(t, &out)
		taskIDs = append(taskIDs, out.TaskID)
	}
	for _, id := range taskIDs {
		st := waitStatusWithin(t, s.env, id, 90)
		var res struct{ CallSid string }
		_ = json.Unmarshal(st.Result, &res)
		if st.State != "completed" || res.CallSid == "" || st.Retried < 1 {
			t.Fatalf("call task %+v; want completed after a re-run that reconciled", st)
		}
		deadline := time.Now().Add(60 * time.Second)
		for {
			var cs callStatus
			runEnqueue(t, s.env, "call-status", res.CallSid).json(t, &cs)
			if cs.Status == "completed" && cs.Duration > 0 && cs.StartTime != "" && cs.EndTime != "" {
				break
			}
			if time.Now().After(deadline) {
				t.Fatalf("call %s recorded as %+v; want completed with duration, startTime and endTime", res.CallSid, cs)
			}
			time.Sleep(100 * time.Millisecond)
		}
	}
	if len(simCalls(t, s.simURL)) != n {
		t.Fatalf("%d calls placed, want %d", len(simCalls(t, s.simURL)), n)
	}
	if got := metricValue(t, "http://"+addr+"/metrics", `twilioworker_calls_total{status="completed"}`); got != n {
		t.Fatalf("calls_total{completed} = %v, want %d", got, n)
	}
}

// metricValue reads one series from a Prometheus text page (-1 when absent).
func metricValue(t *testing.T, url, series string) float64 {
	t.Helper()
	resp, err := http.Get(url)
	if err != nil {
		t.Fatal(err)
	}
	defer resp.Body.Close()
	b, _ := io.ReadAll(resp.Body)
	for _, line := range strings.Split(string(b), "\n") {
		if v, ok := strings.CutPrefix(line, series+" "); ok {
			f, err := strconv.ParseFloat(strings.TrimSpace(v), 64)
			if err != nil {
				t.Fatalf("%s: %v", line, err)
			}
			return f
		}
	}
	return -1
}
