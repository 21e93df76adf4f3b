// Package ledger is the send ledger that makes a handler that runs twice send
// once. asynq delivers at least once (a killed worker's task runs again, a
// shutdown re-queues tasks in flight) and a Twilio timeout leaves us not
// knowing whether a message went; Twilio has no idempotency key.
//
// Before calling Twilio a handler records the attempt (tw:send:{TO}:TASK
// with its start time); after Twilio accepts, the SID. A task whose entry holds a
// SID never sends again. A task that finds an attempt without a SID (it
// crashed mid-request, or the answer was lost) reconciles: it lists what
// Twilio has for that recipient since the attempt began and claims a match
// instead of sending. Claims (tw:sid:{TO}:SID) make sure two tasks sending
// the same text to the same number never both take one message as theirs.
//
// Keys carry the recipient as their hash tag: the commit touches the task's
// entry and the SID's claim in one script, and every task that could claim a
// message (it reconciles against the recipient's messages) has the same
// recipient, so they share one Redis Cluster slot.
package ledger

import (
	"context"
	"errors"
	"fmt"
	"strconv"
	"time"

	"github.com/redis/go-redis/v9"

	"github.com/sbagenthub/twilio-worker/internal/redisconn"
)

// TTL is how long entries and claims are kept after their last write. A
// ledger entry matters only between a task's first send attempt and its last
// run, which retries bound to a few hours (deferrals for limits and quiet
// hours come before the attempt), so two days leave a wide margin.
const TTL = 48 * time.Hour

// Skew is how much earlier than our recorded start Twilio's date_created may
// read (its dates have whole seconds, and clocks differ).
const Skew = 2 * time.Minute

// Entry is a task's line in the ledger.
type Entry struct {
	TaskID    string
	To        string    // the recipient: the keys' hash tag
	StartedAt time.Time // first attempt that may have reached Twilio
	SID       string    // set once Twilio accepted
	Attempts  int
	// From is the sender a sender pool chose for the task ("" when the
	// task names its own or none was chosen yet).
	From string
}

// Sent reports whether Twilio accepted the task's message or call.
func (e Entry) Sent() bool { return e.SID != "" }

// Pending reports whether an attempt began and its outcome is unknown.
func (e Entry) Pending() bool { return e.SID == "" && !e.StartedAt.IsZero() }

// key names the ledger's keys, tagged by the recipient:
// tw:send:{+14155551234}:TASK (entry) and tw:sid:{+14155551234}:SID (claim).
func key(kind, to, id string) string { return "tw:" + kind + ":{" + to + "}:" + id }

func entryKey(taskID, to string) string { return key("send", to, taskID) }
func claimKey(sid, to string) string    { return key("sid", to, sid) }

// Keys written before the recipient became the hash tag; read (and moved)
// only when ReadLegacy is on, on a single node or Sentinel.
func legacyEntryKey(taskID string) string { return "tw:send:" + taskID }
func legacyClaimKey(sid string) string    { return "tw:sid:" + sid }

// Ledger is the send ledger in Redis.
type Ledger struct {
	rdb    redis.UniversalClient
	dur    redisconn.Durability
	legacy bool
}

// New returns a Ledger on rdb.
func New(rdb redis.UniversalClient) *Ledger { return &Ledger{rdb: rdb} }

// WithDurability makes Begin, the claim that comes before every Twilio
// request, wait until d.Replicas replicas confirmed it (REDIS_WAIT_REPLICAS),
// and fail otherwise. It returns l.
func (l *Ledger) WithDurability(d redisconn.Durability) *Ledger {
	l.dur = d
	return l
}

// ReadLegacy makes Get and Commit also read the keys of the earlier layout
// (tw:send:TASK, tw:sid:SID), moving an entry to its new key when found. The
// worker turns it on when it finds such keys at start on a single node; a
// cluster never has them. It returns l.
func (l *Ledger) ReadLegacy(on bool) *Ledger {
	l.legacy = on
	return l
}

// moveLegacyScript renames KEYS[1] (old entry) to KEYS[2] unless KEYS[2]
// exists. Single node only: the two keys have different slots.
var moveLegacyScript = redis.NewScript(`
if redis.call('EXISTS', KEYS[2]) == 0 and redis.call('EXISTS', KEYS[1]) == 1 then
  redis.call('RENAME', KEYS[1], KEYS[2]) return 1 end
return 0`)

// Get returns the task's entry (zero when the task never attempted a send).
// to is the task's recipient.
func (l *Ledger) Get(ctx context.Context, taskID, to string) (Entry, error) {
	if l.legacy {
		if err := moveLegacyScript.Run(ctx, l.rdb, []string{legacyEntryKey(taskID), entryKey(taskID, to)}).Err(); err != nil {
			return Entry{}, fmt.Errorf("read send ledger: %w", err)
		}
	}
	m, err := l.rdb.HGetAll(ctx, entryKey(taskID, to)).Result()
	if err != nil {
		return Entry{}, fmt.Errorf("read send ledger: %w", err)
	}
	return entryOf(taskID, to, m), nil
}

// Begin records that an attempt starts now. The first attempt's start is
// kept: reconciliation must look back to it. With WithDurability, it returns
// only once the replicas confirmed it (an error wrapping
// redisconn.ErrNotReplicated otherwise: the caller must not send).
func (l *Ledger) Begin(ctx context.Context, taskID, to string, now time.Time) error {
	k := entryKey(taskID, to)
	err := l.dur.Durable(ctx, l.rdb, k, func(p redis.Pipeliner) error {
		p.HSetNX(ctx, k, "startedAt", strconv.FormatInt(now.UnixNano(), 10))
		p.HIncrBy(ctx, k, "attempts", 1)
		p.HIncrBy(ctx, k, "open", 1) // attempts whose outcome is not known
		p.Expire(ctx, k, TTL)
		return nil
	})
	if err != nil {
		return fmt.Errorf("record send attempt: %w", err)
	}
	return nil
}

// fromScript sets the entry's sender to ARGV[2] when it is ARGV[1] (""
// for none) and returns the sender it holds then: KEYS entry; ARGV old,
// new, ttl seconds.
var fromScript = redis.NewScript(`
local cur = redis.call('HGET', KEYS[1], 'from') or ''
if cur == ARGV[1] then
  redis.call('HSET', KEYS[1], 'from', ARGV[2])
  redis.call('EXPIRE', KEYS[1], ARGV[3])
  return ARGV[2]
end
return cur`)

// SetFrom records from as the sender chosen for the task, in place of old
// ("" for a first choice), and returns the sender recorded afterwards: when
// another run of the task recorded a different one first, that one, which
// the caller must use.
// to is the task's recipient.
func (l *Ledger) SetFrom(ctx context.Context, taskID, to, old, from string) (string, error) {
	cur, err := fromScript.Run(ctx, l.rdb, []string{entryKey(taskID, to)}, old, from, int(TTL.Seconds())).Text()
	if err != nil {
		return "", fmt.Errorf("record the chosen sender: %w", err)
	}
	return cur, nil
}

// ErrClaimed is returned by Commit when another task already owns the SID.
var ErrClaimed = errors.New("message already claimed by another task")

// commitScript claims the SID for the task and records it, in one round
// trip: KEYS claim, entry[, legacy claim]; ARGV task id, sid, ttl seconds.
// 0: another task owns the SID.
var commitScript = redis.NewScript(`
local owner = redis.call('GET', KEYS[1])
if not owner and KEYS[3] then owner = redis.call('GET', KEYS[3]) end
if owner and owner ~= ARGV[1] then return 0 end
redis.call('SET', KEYS[1], ARGV[1], 'EX', ARGV[3])
redis.call('HSET', KEYS[2], 'sid', ARGV[2])
redis.call('EXPIRE', KEYS[2], ARGV[3])
return 1`)

// Commit records that Twilio accepted the task's message as sid, and claims
// sid for the task; to is the task's recipient.
func (l *Ledger) Commit(ctx context.Context, taskID, to, sid string) error {
	keys := []string{claimKey(sid, to), entryKey(taskID, to)}
	if l.legacy {
		keys = append(keys, legacyClaimKey(sid))
	}
	ok, err := commitScript.Run(ctx, l.rdb, keys, taskID, sid, int(TTL.Seconds())).Int()
	if err != nil {
		return fmt.Errorf("record %s: %w", sid, err)
	}
	if ok == 0 {
		return ErrClaimed
	}
	return nil
}

// abandonScript closes one attempt; when no other attempt's outcome is
// unknown, the start is forgotten and the next attempt need not reconcile.
var abandonScript = redis.NewScript(`
local open = redis.call('HINCRBY', KEYS[1], 'open', -1)
if open <= 0 then redis.call('HDEL', KEYS[1], 'startedAt', 'open') end
return open`)

// Abandon records that an attempt certainly did not reach Twilio (Twilio
// answered with an error). Once no earlier attempt is left with an unknown
// outcome (a lost answer, a crash mid-request), the next attempt sends
// without reconciling; while one is, it still reconciles first.
func (l *Ledger) Abandon(ctx context.Context, taskID, to string) error {
	return abandonScript.Run(ctx, l.rdb, []string{entryKey(taskID, to)}).Err()
}

// Candidate is something Twilio has that may be the task's message or call.
type Candidate struct {
	SID     string
	Created time.Time
	Matches bool // same recipient, sender and content
}

// Reconcile looks for the task's message among candidates (what Twilio lists
// for the recipient): the first that matches, was created no earlier than the
// attempt's start less Skew, and is not claimed by another task is committed
// as the task's. It returns the SID, or "" when Twilio has none.
func (l *Ledger) Reconcile(ctx context.Context, e Entry, candidates []Candidate) (string, error) {
	since := e.StartedAt.Add(-Skew)
	// Twilio lists newest first; the oldest matching one is ours.
	for i := len(candidates) - 1; i >= 0; i-- {
		c := candidates[i]
		if !c.Matches || c.Created.Before(since) {
			continue
		}
		switch err := l.Commit(ctx, e.TaskID, e.To, c.SID); {
		case err == nil:
			return c.SID, nil
		case errors.Is(err, ErrClaimed):
			continue
		default:
			return "", err
		}
	}
	return "", nil
}

// Forget deletes the task's entry for recipient to: its id now names a new
// task (a reused idempotency key after the old task's lifetime), which must
// send afresh. An entry for another recipient has another key, so it cannot
// be taken for the new task's. The legacy key (before hash tags) goes too.
func (l *Ledger) Forget(ctx context.Context, taskID, to string) error {
	if err := l.rdb.Del(ctx, entryKey(taskID, to)).Err(); err != nil {
		return fmt.Errorf("forget the send ledger of %s: %w", taskID, err)
	}
	if err := l.rdb.Del(ctx, legacyEntryKey(taskID)).Err(); err != nil {
		return fmt.Errorf("forget the send ledger of %s: %w", taskID, err)
	}
	return nil
}

// Pipelined reports whether the ledger's reads and writes can join another
// round trip (GetIn, BeginIn, CommitIn): not while it also reads the keys of
// the earlier layout, and Begin not while it waits for replicas (BeginIn
// reports that).
func (l *Ledger) Pipelined() bool { return !l.legacy }

// GetIn queues the read of the task's entry in p; the function it returns
// gives the entry once p has run.
func (l *Ledger) GetIn(ctx context.Context, p redis.Pipeliner, taskID, to string) func() (Entry, error) {
	cmd := p.HGetAll(ctx, entryKey(taskID, to))
	return func() (Entry, error) {
		m, err := cmd.Result()
		if err != nil {
			return Entry{}, fmt.Errorf("read send ledger: %w", err)
		}
		return entryOf(taskID, to, m), nil
	}
}

func entryOf(taskID, to string, m map[string]string) Entry {
	e := Entry{TaskID: taskID, To: to, SID: m["sid"], From: m["from"]}
	if ns, err := strconv.ParseInt(m["startedAt"], 10, 64); err == nil {
		e.StartedAt = time.Unix(0, ns).UTC()
	}
	e.Attempts, _ = strconv.Atoi(m["attempts"])
	return e
}

// BeginIn queues Begin's writes in p, after whatever p already holds (a
// GetIn of the same entry reads it as it was before). It queues nothing and
// returns false when the claim must wait for replicas (WithDurability):
// then the caller calls Begin itself before the request. The commands are
// not a MULTI: one connection runs them in order, and a partial write (the
// connection cut in between) leaves at worst a start without an open
// attempt, which the next run reconciles.
func (l *Ledger) BeginIn(ctx context.Context, p redis.Pipeliner, taskID, to string, now time.Time) bool {
	if l.dur.Enabled() {
		return false
	}
	k := entryKey(taskID, to)
	p.HSetNX(ctx, k, "startedAt", strconv.FormatInt(now.UnixNano(), 10))
	p.HIncrBy(ctx, k, "attempts", 1)
	p.HIncrBy(ctx, k, "open", 1)
	p.Expire(ctx, k, TTL)
	return true
}

// CommitIn queues Commit in p; the function it returns gives Commit's
// answer once p has run (running the script by itself when the server did
// not know it yet).
func (l *Ledger) CommitIn(ctx context.Context, p redis.Pipeliner, taskID, to, sid string) func(context.Context) error {
	keys := []string{claimKey(sid, to), entryKey(taskID, to)}
	args := []any{taskID, sid, int(TTL.Seconds())}
	cmd := commitScript.EvalSha(ctx, p, keys, args...)
	return func(ctx context.Context) error {
		if redis.HasErrorPrefix(cmd.Err(), "NOSCRIPT") {
			cmd = commitScript.Run(ctx, l.rdb, keys, args...)
		}
		ok, err := cmd.Int()
		if err != nil {
			return fmt.Errorf("record %s: %w", sid, err)
		}
		if ok == 0 {
			return ErrClaimed
		}
		return nil
	}
}
