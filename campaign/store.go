// Package campaign fans one message out to many recipients ("bulk alert
// fan-out"): an incident texts every affected customer, an operator texts
// all on-call staff. [Submit] and [SubmitFile] turn a recipient list into one
// sms:send task per recipient on the bulk queue, exactly once per campaign;
// [Store] keeps each campaign's progress, answers the handlers' "was it
// canceled?" right before they send, and cancels.
//
// # Redis keys
//
//   - tw:campaign:{id} (hash): the counts. total (recipients accepted into
//     the campaign), enqueued (tasks created), sent, failed, canceled,
//     skipped:{reason}; createdAt and, once canceled, canceledAt (Unix
//     seconds). canceledAt is the flag the handler checks.
//   - tw:campaign:{id}:to (hash): one field per recipient (E.164), whose
//     value is where that recipient is: "r:{run}" reserved by a submission,
//     "q" queued, or its final outcome ("sent", "failed", "canceled",
//     "skipped:{reason}"). It de-duplicates across submissions and guards
//     the counts: an outcome is counted only when it replaces "q" or "r:…",
//     so a task that runs twice is counted once.
//   - tw:campaign:{id}:to:r:{run} (set): the numbers one submission has met,
//     to tell a duplicate line from a recipient an earlier submission queued;
//     deleted when the submission ends (expires after an hour otherwise).
//
// The first two expire [TTL] after the last submission or outcome.
//
// # Exactly once
//
// Each recipient's task has the id "{campaign}:{+E164}". A submission
// reserves recipients in batches (one Lua script per batch: the same
// recipient twice in one input is a duplicate, one already in the campaign
// is "already queued", an opted-out one is skipped), enqueues the reserved
// ones, and marks them queued. A submission that dies between reserving and
// enqueueing leaves "r:{run}" behind; the next submission of the campaign
// enqueues those again, and asynq's task-id conflict tells it which ones
// were in fact queued. Nothing is held in process memory per recipient: the
// de-duplication lives in Redis.
package campaign

import (
	"context"
	"errors"
	"fmt"
	"regexp"
	"strconv"
	"strings"
	"sync"
	"time"

	"github.com/hibiken/asynq"
	"github.com/redis/go-redis/v9"

	"github.com/sbagenthub/twilio-worker/tasks"
)

// TTL is how long a campaign's keys live after its last submission or
// outcome.
const TTL = 7 * 24 * time.Hour

// Sentinel conditions.
var (
	ErrNotFound = errors.New("campaign not found")
	ErrCanceled = errors.New("campaign was canceled")
)

var idPattern = regexp.MustCompile(`^[A-Za-z0-9._-]{1,64}$`) // as tasks.SMSPayload.Campaign

// ValidID reports whether id may name a campaign: 1-64 letters, digits,
// '.', '_' or '-' (the rule of the sms:send payload's campaign field).
func ValidID(id string) bool { return idPattern.MatchString(id) }

// TaskID is the id of the campaign's task for recipient to (E.164).
func TaskID(campaign, to string) string { return campaign + ":" + to }

// key names the campaign's keys, all under the hash tag {id} so that every
// script touches one Redis Cluster slot: tw:campaign:{id} (progress),
// tw:campaign:{id}:to (one field per recipient) and tw:campaign:{id}:to:RUN
// (a submission's numbers seen).
func key(id string, parts ...string) string {
	k := "tw:campaign:{" + id + "}"
	for _, p := range parts {
		k += ":" + p
	}
	return k
}

func statsKey(id string) string      { return key(id) }
func recipientsKey(id string) string { return key(id, "to") }

// Values of a recipient's field in tw:campaign:{id}:to before an outcome.
const (
	stateQueued   = "q"
	reservePrefix = "r:"
)

// Hash fields of tw:campaign:{id}.
const (
	fieldTotal      = "total"
	fieldEnqueued   = "enqueued"
	fieldCreatedAt  = "createdAt"
	fieldCanceledAt = "canceledAt"
	skippedPrefix   = "skipped:"
)

// record counts a recipient's final outcome once: only when the recipient
// is in the campaign and has no outcome yet. KEYS: stats, recipients.
// ARGV: number, outcome, ttl seconds. Returns 1 counted, 0 already
// counted, -1 not in the campaign.
var recordScript = redis.NewScript(`
local v = redis.call('HGET', KEYS[2], ARGV[1])
if not v then return -1 end
if v ~= 'q' and string.sub(v, 1, 2) ~= 'r:' then return 0 end
redis.call('HSET', KEYS[2], ARGV[1], ARGV[2])
redis.call('HINCRBY', KEYS[1], ARGV[2], 1)
redis.call('EXPIRE', KEYS[1], ARGV[3])
redis.call('EXPIRE', KEYS[2], ARGV[3])
return 1
`)

// Store reads and writes campaigns' progress. It is safe for concurrent
// use; *Store is the tasks.Campaigns of the worker's SMS handler.
type Store struct {
	rdb redis.UniversalClient
	now func() time.Time
}

var _ tasks.Campaigns = (*Store)(nil)

// NewStore returns a Store on rdb.
func NewStore(rdb redis.UniversalClient) *Store { return &Store{rdb: rdb, now: time.Now} }

// Canceled reports whether the campaign was canceled: one HEXISTS.
func (s *Store) Canceled(ctx context.Context, id string) (bool, error) {
	ok, err := s.rdb.HExists(ctx, statsKey(id), fieldCanceledAt).Result()
	if err != nil {
		return false, fmt.Errorf("check campaign %s canceled: %w", id, err)
	}
	return ok, nil
}

// CanceledIn queues Canceled's check in p, so that it shares the round trip
// of the handler's other checks before a send; the function it returns
// gives the answer once p has run.
func (s *Store) CanceledIn(ctx context.Context, p redis.Pipeliner, id string) func() (bool, error) {
	cmd := p.HExists(ctx, statsKey(id), fieldCanceledAt)
	return func() (bool, error) {
		ok, err := cmd.Result()
		if err != nil {
			return false, fmt.Errorf("check campaign %s canceled: %w", id, err)
		}
		return ok, nil
	}
}

// Record counts the final outcome of the campaign's message to number
// (tasks.OutcomeSent, OutcomeFailed, OutcomeCanceled or "skipped:{reason}"),
// once per recipient however often it is called. It reports whether this
// call counted it.
func (s *Store) Record(ctx context.Context, id, number, outcome string) (bool, error) {
	n, err := recordScript.Run(ctx, s.rdb, []string{statsKey(id), recipientsKey(id)},
		number, outcome, int64(TTL/time.Second)).Int64()
	if err != nil {
		return false, fmt.Errorf("count campaign %s outcome: %w", id, err)
	}
	return n == 1, nil
}

// Status is a campaign's progress, as `enqueue campaign status` and
// GET /v1/campaigns/{id} show it.
type Status struct {
	Campaign string           `json:"campaign"`
	State    string           `json:"state"` // running, done, canceled
	Total    int64            `json:"total"`
	Enqueued int64            `json:"enqueued"`
	Sent     int64            `json:"sent"`
	Failed   int64            `json:"failed"`
	Skipped  map[string]int64 `json:"skipped"` // by reason: optout, …
	Canceled int64            `json:"canceled"`
	Done     int64            `json:"done"`    // sent + failed + skipped + canceled
	Pending  int64            `json:"pending"` // total - done
	// CreatedAt and CanceledAt are RFC 3339.
	CreatedAt  string `json:"createdAt,omitempty"`
	CanceledAt string `json:"canceledAt,omitempty"`
}

// States of a campaign.
const (
	StateRunning  = "running"
	StateDone     = "done"
	StateCanceled = "canceled"
)

// Status reads the campaign's progress; ErrNotFound when there is none.
func (s *Store) Status(ctx context.Context, id string) (Status, error) {
	m, err := s.rdb.HGetAll(ctx, statsKey(id)).Result()
	if err != nil {
		return Status{}, fmt.Errorf("read campaign %s: %w", id, err)
	}
	if len(m) == 0 {
		return Status{}, fmt.Errorf("%w: %q", ErrNotFound, id)
	}
	st := Status{Campaign: id, Skipped: map[string]int64{}}
	num := func(k string) int64 { n, _ := strconv.ParseInt(m[k], 10, 64); return n }
	st.Total, st.Enqueued = num(fieldTotal), num(fieldEnqueued)
	st.Sent, st.Failed, st.Canceled = num(tasks.OutcomeSent), num(tasks.OutcomeFailed), num(tasks.OutcomeCanceled)
	st.Done = st.Sent + st.Failed + st.Canceled
	for k := range m {
		if reason, ok := strings.CutPrefix(k, skippedPrefix); ok {
			st.Skipped[reason] = num(k)
			st.Done += num(k)
		}
	}
	st.Pending = max(st.Total-st.Done, 0)
	if t := num(fieldCreatedAt); t > 0 {
		st.CreatedAt = time.Unix(t, 0).UTC().Format(time.RFC3339)
	}
	switch {
	case m[fieldCanceledAt] != "":
		st.State = StateCanceled
		st.CanceledAt = time.Unix(num(fieldCanceledAt), 0).UTC().Format(time.RFC3339)
	case st.Pending == 0 && st.Total > 0:
		st.State = StateDone
	default:
		st.State = StateRunning
	}
	return st, nil
}

// CancelResult is what Cancel did.
type CancelResult struct {
	Status
	// Removed counts tasks taken out of the bulk queue (scheduled or waiting
	// for a retry); the pending ones end as "canceled" when a worker takes
	// them, without sending.
	Removed int `json:"removed"`
}

// Cancel stops the campaign: messages not yet sent are not sent. It sets
// the canceled flag, which every handler checks right before sending (the
// guarantee), and deletes the campaign's scheduled and retry tasks from the
// bulk queue (cheap: sorted sets), counting them as canceled. Pending tasks
// stay in the queue's list, where deleting one costs a scan of the list;
// workers end each of them as canceled in a few milliseconds. Canceling
// twice is harmless.
func (s *Store) Cancel(ctx context.Context, insp *asynq.Inspector, id string) (CancelResult, error) {
	n, err := s.rdb.Exists(ctx, statsKey(id)).Result()
	if err != nil {
		return CancelResult{}, fmt.Errorf("cancel campaign %s: %w", id, err)
	}
	if n == 0 {
		return CancelResult{}, fmt.Errorf("%w: %q", ErrNotFound, id)
	}
	if err := s.rdb.HSetNX(ctx, statsKey(id), fieldCanceledAt, s.now().Unix()).Err(); err != nil {
		return CancelResult{}, fmt.Errorf("cancel campaign %s: %w", id, err)
	}
	var res CancelResult
	if insp != nil {
		if res.Removed, err = s.removeWaiting(ctx, insp, id); err != nil {
			return res, err
		}
	}
	res.Status, err = s.Status(ctx, id)
	return res, err
}

// removeWaiting deletes the campaign's scheduled and retry tasks.
func (s *Store) removeWaiting(ctx context.Context, insp *asynq.Inspector, id string) (int, error) {
	prefix := id + ":"
	removed := 0
	lists := []func(string, ...asynq.ListOption) ([]*asynq.TaskInfo, error){insp.ListScheduledTasks, insp.ListRetryTasks}
	for _, list := range lists {
		// Deleting shifts the pages: collect first, then delete.
		var ids []string
		for page := 1; ; page++ {
			infos, err := list(tasks.QueueBulk, asynq.Page(page), asynq.PageSize(1000))
			if errors.Is(err, asynq.ErrQueueNotFound) {
				break
			}
			if err != nil {
				return removed, fmt.Errorf("list bulk tasks: %w", err)
			}
			for _, info := range infos {
				if strings.HasPrefix(info.ID, prefix) {
					ids = append(ids, info.ID)
				}
			}
			if len(infos) < 1000 {
				break
			}
		}
		n, err := s.deleteTasks(ctx, insp, id, ids)
		removed += n
		if err != nil {
			return removed, err
		}
	}
	return removed, nil
}

func (s *Store) deleteTasks(ctx context.Context, insp *asynq.Inspector, id string, ids []string) (int, error) {
	const workers = 4
	var (
		mu       sync.Mutex
		removed  int
		firstErr error
		wg       sync.WaitGroup
		next     = make(chan string)
	)
	for range workers {
		wg.Add(1)
		go func() {
			defer wg.Done()
			for tid := range next {
				if insp.DeleteTask(tasks.QueueBulk, tid) != nil {
					continue // gone, or running by now: the flag stops it
				}
				_, err := s.Record(ctx, id, strings.TrimPrefix(tid, id+":"), tasks.OutcomeCanceled)
				mu.Lock()
				if err == nil {
					removed++
				} else if firstErr == nil {
					firstErr = err
				}
				mu.Unlock()
			}
		}()
	}
	for _, tid := range ids {
		if ctx.Err() != nil {
			break
		}
		next <- tid
	}
	close(next)
	wg.Wait()
	if firstErr == nil {
		firstErr = ctx.Err()
	}
	return removed, firstErr
}
