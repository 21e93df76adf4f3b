// Package delivery follows each message after Twilio accepted it, until the
// carrier reports it delivered, undelivered or failed. Twilio's status
// callbacks and the sms:track task both feed one record per message,
// tw:msg:{sid}; a status never moves back, so duplicate and reordered
// callbacks are harmless, and exactly one update makes a message final.
package delivery

import (
	"context"
	"errors"
	"fmt"
	"strconv"
	"time"

	"github.com/redis/go-redis/v9"
)

// ErrNotFound is returned for a message that is not tracked.
var ErrNotFound = errors.New("message not tracked")

// TTL is how long a message record is kept after its last change. It holds
// the message's payload (for a redelivery), so it is kept no longer than a
// carrier takes to report and the resends take: two days.
const TTL = 48 * time.Hour

// RedeliverMaxDefault is REDELIVER_MAX's default.
const RedeliverMaxDefault = 2

var rank = map[string]int{
	"accepted": 1, "scheduled": 1, "queued": 2, "sending": 3, "sent": 4,
	"delivered": 9, "undelivered": 9, "failed": 9, "canceled": 9, "read": 10,
}

// Final reports whether a message status is final.
func Final(status string) bool { return rank[status] >= 9 }

// transientCodes are carrier errors after which sending again may work.
var transientCodes = map[int]bool{30001: true, 30003: true, 30008: true}

// Transient reports whether an undelivered/failed message with this error
// code is worth sending again.
func Transient(code int) bool { return transientCodes[code] }

func key(sid string) string { return "tw:msg:" + sid }

// Record is what is known of a sent message.
type Record struct {
	SID       string `json:"messageSid"`
	TaskID    string `json:"taskId,omitempty"`
	To        string `json:"to"`
	Campaign  string `json:"campaign,omitempty"`
	Attempt   int    `json:"attempt"` // 0 for the first send, n for the n-th redelivery
	Queue     string `json:"queue,omitempty"`
	Payload   []byte `json:"-"` // the sms:send payload, for redelivery
	Status    string `json:"status"`
	ErrorCode int    `json:"errorCode,omitempty"`
	// Settled: the final status was acted on (logged, resent when
	// transient). Set only after that succeeded, so a failure is retried.
	Settled   bool      `json:"settled,omitempty"`
	UpdatedAt time.Time `json:"updatedAt"`
}

// Final reports whether the record's status is final.
func (r Record) Final() bool { return Final(r.Status) }

// Store keeps message records.
type Store struct{ rdb redis.UniversalClient }

// NewStore returns a Store on rdb.
func NewStore(rdb redis.UniversalClient) *Store { return &Store{rdb: rdb} }

// Track starts the record of a message Twilio accepted. An existing record
// is kept (a callback may have arrived first).
func (s *Store) Track(ctx context.Context, r Record) error {
	_, err := s.rdb.TxPipelined(ctx, func(p redis.Pipeliner) error {
		TrackIn(ctx, p, r)
		return nil
	})
	if err != nil {
		return fmt.Errorf("track message: %w", err)
	}
	return nil
}

// TrackIn queues Track's writes in p (the handler's round trip after a
// send). Outside a MULTI a status callback may be applied between them:
// each field that callback sets is kept (HSETNX), so the record ends as
// after Track then the callback.
func TrackIn(ctx context.Context, p redis.Pipeliner, r Record) {
	if r.UpdatedAt.IsZero() {
		r.UpdatedAt = time.Now()
	}
	k := key(r.SID)
	p.HSetNX(ctx, k, "status", r.Status)
	p.HSetNX(ctx, k, "rank", rank[r.Status])
	p.HSetNX(ctx, k, "updatedAt", r.UpdatedAt.UTC().Format(time.RFC3339Nano))
	if r.ErrorCode != 0 {
		// A recovered message may already be final: keep why.
		p.HSetNX(ctx, k, "errorCode", r.ErrorCode)
	}
	p.HSet(ctx, k, "taskId", r.TaskID, "to", r.To, "campaign", r.Campaign, "attempt", r.Attempt,
		"queue", r.Queue, "payload", r.Payload)
	p.Expire(ctx, k, TTL)
}

// applyScript moves a record forward: KEYS[1] the record; ARGV status,
// rank, error code, time, ttl seconds, and '1' when a missing record may be
// created. It returns 2 when this update made the message final, 1 when it
// moved it, 0 when it changed nothing, -1 when there is no record to move.
var applyScript = redis.NewScript(`
if ARGV[6] ~= '1' and redis.call('EXISTS', KEYS[1]) == 0 then return -1 end
local cur = tonumber(redis.call('HGET', KEYS[1], 'rank') or '0')
local new = tonumber(ARGV[2])
if new <= cur or cur >= 9 then
  if redis.call('EXISTS', KEYS[1]) == 1 then redis.call('EXPIRE', KEYS[1], ARGV[5]) end
  return 0
end
redis.call('HSET', KEYS[1], 'status', ARGV[1], 'rank', new, 'updatedAt', ARGV[4])
if ARGV[3] ~= '0' then redis.call('HSET', KEYS[1], 'errorCode', ARGV[3]) end
redis.call('EXPIRE', KEYS[1], ARGV[5])
if new >= 9 then return 2 end
return 1`)

// Apply records a status report for sid and returns the record after it and
// whether this report made the message final. A message that is not tracked
// gets no record: ErrNotFound (a callback for a SID we never sent).
func (s *Store) Apply(ctx context.Context, sid, status string, code int, at time.Time) (Record, bool, error) {
	return s.apply(ctx, sid, status, code, at, false)
}

// ApplyEarly is Apply for a message known to be ours whose record may not
// exist yet (its status callback came before Twilio's answer to the create
// was handled): the record is started with the status, and Track completes
// it.
func (s *Store) ApplyEarly(ctx context.Context, sid, status string, code int, at time.Time) (Record, bool, error) {
	return s.apply(ctx, sid, status, code, at, true)
}

func (s *Store) apply(ctx context.Context, sid, status string, code int, at time.Time, create bool) (Record, bool, error) {
	mayCreate := "0"
	if create {
		mayCreate = "1"
	}
	r, ok := rank[status]
	if !ok {
		r = 0 // unknown statuses change nothing
	}
	res, err := applyScript.Run(ctx, s.rdb, []string{key(sid)}, status, r, code,
		at.UTC().Format(time.RFC3339Nano), int(TTL.Seconds()), mayCreate).Int()
	if err != nil {
		return Record{}, false, fmt.Errorf("record message status: %w", err)
	}
	if res == -1 {
		return Record{}, false, ErrNotFound
	}
	rec, err := s.Get(ctx, sid)
	if err != nil {
		return Record{}, false, err
	}
	return rec, res == 2, nil
}

// Get returns the record of sid.
func (s *Store) Get(ctx context.Context, sid string) (Record, error) {
	m, err := s.rdb.HGetAll(ctx, key(sid)).Result()
	if err != nil {
		return Record{}, fmt.Errorf("read message record: %w", err)
	}
	if len(m) == 0 {
		return Record{}, ErrNotFound
	}
	r := Record{SID: sid, TaskID: m["taskId"], To: m["to"], Campaign: m["campaign"], Status: m["status"],
		Queue: m["queue"], Payload: []byte(m["payload"])}
	r.Attempt, _ = strconv.Atoi(m["attempt"])
	r.Settled = m["settled"] == "1"
	r.ErrorCode, _ = strconv.Atoi(m["errorCode"])
	r.UpdatedAt, _ = time.Parse(time.RFC3339Nano, m["updatedAt"])
	return r, nil
}

// Polled counts one poll of sid and returns how many there were.
func (s *Store) Polled(ctx context.Context, sid string) (int, error) {
	n, err := s.rdb.HIncrBy(ctx, key(sid), "polls", 1).Result()
	return int(n), err
}

// MarkSettled records that sid's final status was acted on.
func (s *Store) MarkSettled(ctx context.Context, sid string) error {
	return s.rdb.HSet(ctx, key(sid), "settled", "1").Err()
}
