package producer

import (
	"context"
	"crypto/sha256"
	"encoding/hex"
	"encoding/json"
	"errors"
	"fmt"
	"time"

	"github.com/hibiken/asynq"
	"github.com/redis/go-redis/v9"
)

// ClaimKey is the Redis key that holds a client's idempotency key: one key
// names one task of one type in every queue (asynq's own ids are unique per
// queue only). Its hash tag is the key, so each claim is one slot.
func ClaimKey(key string) string { return "tw:{idem:" + key + "}" }

// claimValue is what a claim holds.
type claimValue struct {
	Type     string `json:"type"`
	Hash     string `json:"hash"` // of the type and the normalised payload
	ID       string `json:"id"`
	Queue    string `json:"queue"`
	Canceled bool   `json:"canceled,omitempty"`
	// Requeued: a retry with the key found no task and queued it (the
	// first request's enqueue was lost, or is still to come).
	Requeued bool `json:"requeued,omitempty"`
}

// claimScript sets KEYS[1] to ARGV[1] for ARGV[2] ms unless it is set, and
// returns the value it had (false when the claim is new).
var claimScript = redis.NewScript(`
local v = redis.call('GET', KEYS[1])
if v then return v end
redis.call('SET', KEYS[1], ARGV[1], 'PX', ARGV[2])
return false
`)

// unclaimScript deletes KEYS[1] if it still names task ARGV[1].
var unclaimScript = redis.NewScript(`
local v = redis.call('GET', KEYS[1])
if v and cjson.decode(v).id == ARGV[1] then redis.call('DEL', KEYS[1]) return 1 end
return 0
`)

// claim takes key for v, atomically and once for every queue. fresh: the
// key was free and is now v's; otherwise prev is what holds it.
func (p *Producer) claim(ctx context.Context, key string, v claimValue, life time.Duration) (prev claimValue, fresh bool, err error) {
	b, _ := json.Marshal(v)
	res, err := claimScript.Run(ctx, p.Redis, []string{ClaimKey(key)}, b, max(life.Milliseconds(), 1000)).Result()
	if errors.Is(err, redis.Nil) {
		return claimValue{}, true, nil
	}
	if err != nil {
		return claimValue{}, false, fmt.Errorf("claim the idempotency key: %w", err)
	}
	s, _ := res.(string)
	if err := json.Unmarshal([]byte(s), &prev); err != nil {
		return claimValue{}, false, fmt.Errorf("claim of key %q is unreadable: %w", key, err)
	}
	return prev, false, nil
}

// unclaim gives key up after its task could not be queued.
func (p *Producer) unclaim(ctx context.Context, key, id string) {
	if err := unclaimScript.Run(context.WithoutCancel(ctx), p.Redis, []string{ClaimKey(key)}, id).Err(); err != nil {
		p.logger().Warn("could not release an idempotency key", "err", err)
	}
}

// existing answers a request whose key is held: the held task when it is
// the same request, ErrConflict when the key names another.
func (p *Producer) existing(ctx context.Context, req *Request, hash string, prev claimValue) (Result, error) {
	switch {
	case prev.Type != req.Type:
		return Result{}, fmt.Errorf("%w: the key names a task of another type (%s)", ErrConflict, prev.Type)
	case prev.Hash != hash:
		return Result{}, fmt.Errorf("%w: the key names a task with other arguments; use a new key for a new message", ErrConflict)
	}
	res := Result{TaskID: prev.ID, Type: prev.Type, Queue: prev.Queue, To: req.To(), Existing: true, State: "pending"}
	if prev.Canceled {
		res.State = "canceled"
		return res, nil
	}
	info, err := p.inspector().GetTaskInfo(prev.Queue, prev.ID)
	switch {
	case err == nil:
		res.State = info.State.String()
		res.Queue = info.Queue
		// A retry is answered only with a task the replicas hold too.
		if err := p.Durability.ConfirmTask(ctx, p.Redis, info.Queue, info.ID); err != nil {
			return Result{}, fmt.Errorf("enqueue: %w", err)
		}
	case errors.Is(err, asynq.ErrTaskNotFound), errors.Is(err, asynq.ErrQueueNotFound):
		// No task holds the key: the first request is enqueueing right now,
		// or its enqueue was lost (a failover discarded it while the claim,
		// written first, had reached the replicas; that request then failed
		// and this is its retry). Enqueue it here under the claim's id and
		// queue: asynq refuses a second task of that id, so if the first
		// request got there meanwhile, this answers with its task.
		if err := p.markClaim(ctx, req.Key, func(v *claimValue) { v.Requeued = true }); err != nil {
			return Result{}, fmt.Errorf("claim the idempotency key: %w", err)
		}
		again := *req
		again.Queue = prev.Queue
		res, err := p.checkAndEnqueue(ctx, &again, prev.ID)
		if err == nil {
			res.Existing = true
			return res, nil
		}
		if !errors.Is(err, ErrConflict) {
			return Result{}, err
		}
		return p.held(ctx, req, prev.Queue, prev.ID)
	default:
		return Result{}, fmt.Errorf("look up task %s: %w", prev.ID, err)
	}
	return res, nil
}

// payloadHash identifies a request's content: its type, its normalised
// payload and sendAt, but not its queue (a retry may change the priority),
// a validFor's expiry instant (it counts from when the request came), nor
// who asked (the same message from the CLI and then over HTTP is one task).
func payloadHash(req *Request) string {
	h := sha256.New()
	h.Write([]byte(req.Type + "\n"))
	enc := json.NewEncoder(h)
	switch {
	case req.SMS != nil:
		p := *req.SMS
		p.ExpiresAt, p.Source = nil, ""
		_ = enc.Encode(p)
	case req.Call != nil:
		c := *req.Call
		c.Source = ""
		_ = enc.Encode(c)
	}
	if !req.SendAt.IsZero() {
		h.Write([]byte(req.SendAt.UTC().Format(time.RFC3339Nano)))
	}
	return hex.EncodeToString(h.Sum(nil)[:16])
}

// markCanceled records in the key's claim that its task was canceled, so
// that a retry with the key answers "canceled" instead of queueing again.
func (p *Producer) markCanceled(ctx context.Context, key string) error {
	return p.markClaim(ctx, key, func(v *claimValue) { v.Canceled = true })
}

// markClaim changes the key's claim with mark, keeping its lifetime; a
// claim that is gone, or names another task, is left alone.
func (p *Producer) markClaim(ctx context.Context, key string, mark func(*claimValue)) error {
	k := ClaimKey(key)
	change := func(tx *redis.Tx) error {
		s, err := tx.Get(ctx, k).Result()
		if errors.Is(err, redis.Nil) {
			return nil
		}
		if err != nil {
			return err
		}
		var v claimValue
		if json.Unmarshal([]byte(s), &v) != nil || v.ID != key {
			return nil
		}
		mark(&v)
		b, _ := json.Marshal(v)
		_, err = tx.TxPipelined(ctx, func(pipe redis.Pipeliner) error {
			pipe.SetArgs(ctx, k, b, redis.SetArgs{KeepTTL: true, Mode: "XX"})
			return nil
		})
		return err
	}
	var err error
	for range 10 { // another mark came between the read and the write
		if err = p.Redis.Watch(ctx, change, k); !errors.Is(err, redis.TxFailedErr) {
			return err
		}
	}
	return err
}

// held answers a request with the task its key's claim names, id in queue,
// which another request with the key has just queued: once the replicas
// hold it too.
func (p *Producer) held(ctx context.Context, req *Request, queue, id string) (Result, error) {
	info, err := p.inspector().GetTaskInfo(queue, id)
	if err != nil {
		return Result{}, fmt.Errorf("look up task %s: %w", id, err)
	}
	if err := p.Durability.ConfirmTask(ctx, p.Redis, info.Queue, info.ID); err != nil {
		return Result{}, fmt.Errorf("enqueue: %w", err)
	}
	return Result{TaskID: id, Type: info.Type, Queue: info.Queue, To: req.To(), Existing: true, State: info.State.String()}, nil
}

// requeued reports whether a retry with key has queued the task its claim
// names (existing).
func (p *Producer) requeued(ctx context.Context, key string) bool {
	s, err := p.Redis.Get(ctx, ClaimKey(key)).Result()
	var v claimValue
	return err == nil && json.Unmarshal([]byte(s), &v) == nil && v.Requeued
}
