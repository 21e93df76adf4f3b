package wake

import (
	"context"
	"net"
	"strings"
	"sync"
	"sync/atomic"
	"time"

	"github.com/redis/go-redis/v9"
)

// Defaults of Gate.
const (
	// IdleDefault is how often an idle worker polls each queue: asynq's own
	// default poll interval.
	IdleDefault = time.Second
	// BurstDefault is how long a worker keeps polling at full speed after the
	// last sign of work.
	BurstDefault = time.Second
	// BusyForwardDefault is how often due scheduled and retry tasks are moved
	// while the worker is busy, between the rounds at each whole second.
	BusyForwardDefault = 100 * time.Millisecond
)

// Gate is a go-redis hook for the client an asynq server runs on. It lets
// asynq's polling commands through only when they can find something:
//
//   - Dequeue (one script per queue, every POLL_INTERVAL): always while the
//     worker is busy (a task was found, an announcement or a move of due
//     tasks came within Burst), otherwise once per Idle per queue. A skipped
//     poll answers "nothing pending" without a round trip.
//   - Forward (moving due scheduled and retry tasks, every
//     DelayedTaskCheckInterval): asynq stores those times in whole seconds,
//     so one round just after each second boundary moves every task due by
//     then; others run only when a task may have become due within the
//     second (an announcement, a retry of this worker's due now) and, while
//     busy, every BusyForward. A skipped round answers "none moved".
//
// Moving tasks wakes the gate and calls OnMoved (the worker announces, so its
// idle peers help). Commands that are not asynq's polls pass untouched.
type Gate struct {
	Idle        time.Duration    // IdleDefault when zero
	Burst       time.Duration    // BurstDefault when zero
	BusyForward time.Duration    // BusyForwardDefault when zero
	Now         func() time.Time // time.Now when nil
	// OnMoved, when set, runs (outside the hook, in its own goroutine) after a
	// forward round moved tasks into a pending list.
	OnMoved func()

	mu        sync.Mutex
	busyUntil time.Time
	dirty     time.Time            // forward rounds that last passed before this pass again
	polled    map[string]time.Time // pending key → last dequeue let through
	forwarded map[string]fwdState  // scheduled/retry key → its last round

	skipped atomic.Int64
	passed  atomic.Int64
}

type fwdState struct {
	at   time.Time
	more bool // the round moved tasks: asynq asks again at once, until none
}

var _ redis.Hook = (*Gate)(nil)

func (g *Gate) now() time.Time {
	if g.Now != nil {
		return g.Now()
	}
	return time.Now()
}

func durOr(d, def time.Duration) time.Duration {
	if d > 0 {
		return d
	}
	return def
}

// Wake makes the gate poll at full speed for Burst and lets the next forward
// round of every queue run.
func (g *Gate) Wake() {
	now := g.now()
	g.mu.Lock()
	g.busyUntil = now.Add(durOr(g.Burst, BurstDefault))
	g.dirty = now
	g.mu.Unlock()
}

// Skipped returns how many polling commands the gate answered itself.
func (g *Gate) Skipped() int64 { return g.skipped.Load() }

// Passed returns how many polling commands the gate let through to Redis.
func (g *Gate) Passed() int64 { return g.passed.Load() }

// DialHook implements redis.Hook.
func (g *Gate) DialHook(next redis.DialHook) redis.DialHook {
	return func(ctx context.Context, network, addr string) (net.Conn, error) { return next(ctx, network, addr) }
}

// ProcessPipelineHook implements redis.Hook; asynq polls without pipelines.
func (g *Gate) ProcessPipelineHook(next redis.ProcessPipelineHook) redis.ProcessPipelineHook {
	return next
}

// ProcessHook implements redis.Hook.
func (g *Gate) ProcessHook(next redis.ProcessHook) redis.ProcessHook {
	return func(ctx context.Context, cmd redis.Cmder) error {
		kind, key := classify(cmd)
		switch kind {
		case cmdDequeue:
			if !g.allowDequeue(key) {
				g.skipped.Add(1)
				cmd.SetErr(redis.Nil)
				return redis.Nil
			}
			g.passed.Add(1)
			err := next(ctx, cmd)
			switch {
			case err == nil:
				g.busy()
			case noScript(err):
				g.repoll(key) // go-redis sends the script itself next
			}
			return err
		case cmdForward:
			if !g.allowForward(key) {
				g.skipped.Add(1)
				if c, ok := cmd.(*redis.Cmd); ok {
					c.SetVal(int64(0))
				}
				return nil
			}
			g.passed.Add(1)
			err := next(ctx, cmd)
			var moved int64
			if c, ok := cmd.(*redis.Cmd); ok && err == nil {
				moved, _ = c.Int64()
			}
			g.forwardDone(key, moved, noScript(err))
			return err
		case cmdRetry:
			err := next(ctx, cmd)
			if err == nil && dueNow(cmd, g.now()) {
				g.mu.Lock()
				g.dirty = g.now()
				g.mu.Unlock()
			}
			return err
		}
		return next(ctx, cmd)
	}
}

func (g *Gate) busy() {
	now := g.now()
	g.mu.Lock()
	g.busyUntil = now.Add(durOr(g.Burst, BurstDefault))
	g.mu.Unlock()
}

func (g *Gate) allowDequeue(pending string) bool {
	now := g.now()
	g.mu.Lock()
	defer g.mu.Unlock()
	if now.Before(g.busyUntil) {
		return true
	}
	if last, ok := g.polled[pending]; ok && now.Sub(last) < durOr(g.Idle, IdleDefault) {
		return false
	}
	if g.polled == nil {
		g.polled = map[string]time.Time{}
	}
	g.polled[pending] = now
	return true
}

func (g *Gate) allowForward(src string) bool {
	now := g.now()
	g.mu.Lock()
	defer g.mu.Unlock()
	st, ok := g.forwarded[src]
	pass := !ok || st.more ||
		st.at.Unix() != now.Unix() || // a new whole second: tasks due at it
		st.at.Before(g.dirty) ||
		(now.Before(g.busyUntil) && now.Sub(st.at) >= durOr(g.BusyForward, BusyForwardDefault))
	if !pass {
		return false
	}
	if g.forwarded == nil {
		g.forwarded = map[string]fwdState{}
	}
	g.forwarded[src] = fwdState{at: now}
	return true
}

// repoll lets the next dequeue of pending through.
func (g *Gate) repoll(pending string) {
	g.mu.Lock()
	delete(g.polled, pending)
	g.mu.Unlock()
}

// noScript reports whether err is Redis's answer to EVALSHA of a script it
// does not have: go-redis then sends EVAL, which must pass too.
func noScript(err error) bool {
	return err != nil && strings.HasPrefix(err.Error(), "NOSCRIPT")
}

// forwardDone records a forward round's outcome; again lets the next round
// of src through (asynq or go-redis ask again at once).
func (g *Gate) forwardDone(src string, moved int64, again bool) {
	now := g.now()
	g.mu.Lock()
	st := g.forwarded[src]
	st.more = moved > 0 || again
	g.forwarded[src] = st
	if moved > 0 {
		g.busyUntil = now.Add(durOr(g.Burst, BurstDefault))
	}
	g.mu.Unlock()
	if moved > 0 && g.OnMoved != nil {
		go g.OnMoved()
	}
}

type cmdKind int

const (
	cmdOther cmdKind = iota
	cmdDequeue
	cmdForward
	cmdRetry
)

// classify recognises asynq's scripts by their keys (asynq v0.26,
// internal/rdb): dequeue is KEYS pending, paused, active, lease; forward is
// KEYS scheduled|retry, pending; retry is 8 KEYS with the retry set 4th and
// the retry time (Unix seconds) as ARGV[3]. It returns the key that names the
// poll: the pending list, or the set forwarded from.
func classify(cmd redis.Cmder) (cmdKind, string) {
	args := cmd.Args()
	if len(args) < 5 {
		return cmdOther, ""
	}
	name, _ := args[0].(string)
	if name != "evalsha" && name != "eval" {
		return cmdOther, ""
	}
	n, ok := args[2].(int)
	if !ok || len(args) < 3+n {
		return cmdOther, ""
	}
	key := func(i int) string { s, _ := args[3+i].(string); return s }
	switch {
	case n == 4 && strings.HasPrefix(key(0), "asynq:") && strings.HasSuffix(key(0), "}:pending") && strings.HasSuffix(key(1), "}:paused"):
		return cmdDequeue, key(0)
	case n == 2 && strings.HasPrefix(key(0), "asynq:") && strings.HasSuffix(key(1), "}:pending") &&
		(strings.HasSuffix(key(0), "}:scheduled") || strings.HasSuffix(key(0), "}:retry")):
		return cmdForward, key(0)
	case n == 8 && strings.HasPrefix(key(3), "asynq:") && strings.HasSuffix(key(3), "}:retry"):
		return cmdRetry, key(3)
	}
	return cmdOther, ""
}

// dueNow reports whether a retry command's time is the current second or
// earlier: this second's forward round may have passed already.
func dueNow(cmd redis.Cmder, now time.Time) bool {
	args := cmd.Args()
	const at = 3 + 8 + 2 // name, sha, numkeys, 8 keys, ARGV[3]
	if len(args) <= at {
		return false
	}
	var sec int64
	switch v := args[at].(type) {
	case int64:
		sec = v
	case int:
		sec = int64(v)
	default:
		return true // unknown: forward to be safe
	}
	return sec <= now.Unix()
}
