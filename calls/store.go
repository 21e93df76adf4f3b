// Package calls keeps the record of each outbound call (tw:call:{sid}): who
// was called, the status history with times, duration and answered-by. The
// call:poll task and Twilio's status callbacks both write to it; duplicate
// and out-of-order updates are harmless because a status never moves back
// and a terminal status is final.
package calls

import (
	"context"
	"encoding/json"
	"errors"
	"fmt"
	"strings"
	"time"

	"github.com/redis/go-redis/v9"

	"github.com/sbagenthub/twilio-worker/commlog"
)

// ErrNotFound is returned when no record exists for a call SID.
var ErrNotFound = errors.New("call record not found")

// RecordTTL is how long a call record is kept after its last change.
const RecordTTL = 30 * 24 * time.Hour

// StatusUnknown is recorded when a call could not be followed to its end.
const StatusUnknown = "unknown"

// StatusEnded is the final status of a call a VAPI assistant conducts
// (VAPI's statuses are scheduled, queued, ringing, in-progress, forwarding
// and ended; the reason is in EndedReason).
const StatusEnded = "ended"

// rank orders statuses, Twilio's and VAPI's: an update to a lower rank is
// ignored.
var rank = map[string]int{
	"scheduled": 1, "queued": 1, "initiated": 2, "ringing": 3, "in-progress": 4, "forwarding": 5,
	"completed": 9, "busy": 9, "failed": 9, "no-answer": 9, "canceled": 9, StatusEnded: 9, StatusUnknown: 8,
}

// Terminal reports whether status is final.
func Terminal(status string) bool { return rank[status] == 9 || status == StatusUnknown }

// Change is one status change.
type Change struct {
	Status string    `json:"status"`
	At     time.Time `json:"at"`
	Source string    `json:"source"` // "create", "poll", "callback", "timeout", "vapi"
}

// Providers of a call.
const (
	ProviderTwilio = "twilio"
	ProviderVAPI   = "vapi"
)

// Record is what is known of a call.
type Record struct {
	SID        string     `json:"callSid"`
	To         string     `json:"to"`
	From       string     `json:"from"`
	Status     string     `json:"status"`
	Duration   int        `json:"duration"` // seconds
	AnsweredBy string     `json:"answeredBy,omitempty"`
	StartTime  *time.Time `json:"startTime,omitempty"`
	EndTime    *time.Time `json:"endTime,omitempty"`
	CreatedAt  time.Time  `json:"createdAt"`
	TaskID     string     `json:"taskId,omitempty"`
	Polls      int        `json:"polls"`
	History    []Change   `json:"history"`

	// Provider is who placed the call: ProviderTwilio (empty in records
	// written before VAPI) or ProviderVAPI, whose calls are keyed by their
	// VAPI call id.
	Provider string `json:"provider,omitempty"`
	// Linked is the call's id at the other provider: the Twilio CallSid of a
	// VAPI call (phoneCallProviderId), or the VAPI call id of a Twilio call
	// an assistant takes part in.
	Linked      string   `json:"linked,omitempty"`
	AssistantID string   `json:"assistantId,omitempty"`
	ControlURL  string   `json:"controlUrl,omitempty"` // VAPI's live call control (monitor.controlUrl)
	EndedReason string   `json:"endedReason,omitempty"`
	Cost        *float64 `json:"cost,omitempty"` // USD, as VAPI reports it
}

// Terminal reports whether the recorded status is final.
func (r *Record) Terminal() bool { return Terminal(r.Status) }

// Update is a new observation of a call.
type Update struct {
	Status     string
	At         time.Time
	Source     string
	Duration   int
	AnsweredBy string
	StartTime  time.Time
	EndTime    time.Time
	// TaskID names the task that placed the call, when the record was made
	// before it knew (a status update that came first).
	TaskID string
	// VAPI's details; empty fields change nothing.
	EndedReason string
	Cost        *float64
	Linked      string
	ControlURL  string
}

func key(sid string) string { return "tw:call:" + sid }

// earlyKey holds status callbacks of one of our calls that arrived before
// its record existed (the create's answer was lost or slow), as a list of
// JSON Updates, until Merge applies them.
func earlyKey(sid string) string { return "tw:call:early:" + sid }

// EarlyTTL is how long early callbacks wait for their call's record: longer
// than a call:make task takes to reconcile a lost answer.
const EarlyTTL = 24 * time.Hour

// Store is the call record store.
type Store struct {
	rdb redis.UniversalClient
	// Comms, when set, gets every call's placing, each status change with its
	// time, and its end (commlog.CallPlaced, CallStatus, CallEnded), so that
	// `enqueue log` follows a call as it follows a message.
	Comms *commlog.Log
}

// NewStore returns a Store on rdb.
func NewStore(rdb redis.UniversalClient) *Store { return &Store{rdb: rdb} }

// Create records a new call. An existing record is left as it is (a
// re-run of call:make after a crash must not reset a call's history).
func (s *Store) Create(ctx context.Context, r Record) error {
	if r.CreatedAt.IsZero() {
		r.CreatedAt = time.Now().UTC()
	}
	if len(r.History) == 0 {
		r.History = []Change{{Status: r.Status, At: r.CreatedAt, Source: "create"}}
	}
	b, err := json.Marshal(r)
	if err != nil {
		return err
	}
	created, err := s.rdb.SetNX(ctx, key(r.SID), b, RecordTTL).Result()
	if err != nil {
		return fmt.Errorf("create call record: %w", err)
	}
	if created {
		s.log(ctx, &r, commlog.CallPlaced, r.Status, r.CreatedAt)
	}
	return nil
}

// log appends an event of the call to Comms; a failure only loses the line.
func (s *Store) log(ctx context.Context, r *Record, event, status string, at time.Time) {
	e := commlog.Entry{At: at, Event: event, Channel: "voice", TaskID: r.TaskID, SID: r.SID, To: r.To, From: r.From, Status: status}
	if event == commlog.CallEnded {
		var why []string
		if r.EndedReason != "" {
			why = append(why, r.EndedReason)
		}
		if r.Duration > 0 {
			why = append(why, fmt.Sprintf("duration %ds", r.Duration))
		}
		e.Reason = strings.Join(why, "; ")
	}
	_ = s.Comms.Append(ctx, e)
}

// Early keeps u, a status callback for one of our calls whose record does
// not exist yet, for Merge. When the record appeared meanwhile it is merged
// at once; the result is then that of Merge.
func (s *Store) Early(ctx context.Context, sid string, u Update) (*Record, bool, error) {
	b, err := json.Marshal(u)
	if err != nil {
		return nil, false, err
	}
	_, err = s.rdb.TxPipelined(ctx, func(p redis.Pipeliner) error {
		p.RPush(ctx, earlyKey(sid), b)
		p.Expire(ctx, earlyKey(sid), EarlyTTL)
		return nil
	})
	if err != nil {
		return nil, false, fmt.Errorf("keep early call status: %w", err)
	}
	n, err := s.rdb.Exists(ctx, key(sid)).Result()
	if err != nil || n == 0 {
		return nil, false, err // merged when the record is made
	}
	return s.Merge(ctx, sid)
}

// Merge applies the early callbacks kept for sid (Early) to its record and
// returns the record and whether they made it terminal. Each is taken once
// (read and deleted in one transaction), so two merges apply nothing twice.
func (s *Store) Merge(ctx context.Context, sid string) (*Record, bool, error) {
	var lr *redis.StringSliceCmd
	_, err := s.rdb.TxPipelined(ctx, func(p redis.Pipeliner) error {
		lr = p.LRange(ctx, earlyKey(sid), 0, -1)
		p.Del(ctx, earlyKey(sid))
		return nil
	})
	if err != nil {
		return nil, false, fmt.Errorf("merge early call status: %w", err)
	}
	var rec *Record
	became := false
	for _, raw := range lr.Val() {
		var u Update
		if json.Unmarshal([]byte(raw), &u) != nil {
			continue
		}
		r, b, err := s.Apply(ctx, sid, u)
		if err != nil {
			return nil, false, err
		}
		rec, became = r, became || b
	}
	return rec, became, nil
}

// Get returns the record of sid, or ErrNotFound.
func (s *Store) Get(ctx context.Context, sid string) (*Record, error) {
	b, err := s.rdb.Get(ctx, key(sid)).Bytes()
	if errors.Is(err, redis.Nil) {
		return nil, ErrNotFound
	}
	if err != nil {
		return nil, fmt.Errorf("read call record: %w", err)
	}
	var r Record
	if err := json.Unmarshal(b, &r); err != nil {
		return nil, fmt.Errorf("decode call record: %w", err)
	}
	return &r, nil
}

// Apply merges u into the record of sid atomically (optimistic transaction)
// and returns the record after it and whether this update made it terminal.
// A status of lower rank than the recorded one only fills missing details.
func (s *Store) Apply(ctx context.Context, sid string, u Update) (*Record, bool, error) {
	var out *Record
	var became, moved bool
	txf := func(tx *redis.Tx) error {
		moved = false
		b, err := tx.Get(ctx, key(sid)).Bytes()
		if errors.Is(err, redis.Nil) {
			return ErrNotFound
		}
		if err != nil {
			return err
		}
		var r Record
		if err := json.Unmarshal(b, &r); err != nil {
			return err
		}
		wasTerminal := r.Terminal()
		if !wasTerminal && rank[u.Status] > rank[r.Status] {
			r.Status = u.Status
			r.History = append(r.History, Change{Status: u.Status, At: u.At.UTC(), Source: u.Source})
			moved = true
		}
		if u.Duration > r.Duration {
			r.Duration = u.Duration
		}
		if u.AnsweredBy != "" && r.AnsweredBy == "" {
			r.AnsweredBy = u.AnsweredBy
		}
		if !u.StartTime.IsZero() && r.StartTime == nil {
			t := u.StartTime.UTC()
			r.StartTime = &t
		}
		if !u.EndTime.IsZero() && r.EndTime == nil {
			t := u.EndTime.UTC()
			r.EndTime = &t
		}
		if u.EndedReason != "" && r.EndedReason == "" {
			r.EndedReason = u.EndedReason
		}
		if u.Cost != nil {
			r.Cost = u.Cost
		}
		if u.TaskID != "" && r.TaskID == "" {
			r.TaskID = u.TaskID
		}
		if u.Linked != "" && r.Linked == "" {
			r.Linked = u.Linked
		}
		if u.ControlURL != "" && r.ControlURL == "" {
			r.ControlURL = u.ControlURL
		}
		if u.Source == "poll" {
			r.Polls++
		}
		nb, err := json.Marshal(r)
		if err != nil {
			return err
		}
		_, err = tx.TxPipelined(ctx, func(p redis.Pipeliner) error {
			p.Set(ctx, key(sid), nb, RecordTTL)
			return nil
		})
		out, became = &r, !wasTerminal && r.Terminal()
		return err
	}
	for i := 0; i < 20; i++ {
		err := s.rdb.Watch(ctx, txf, key(sid))
		if errors.Is(err, redis.TxFailedErr) {
			continue
		}
		if err != nil {
			return nil, false, fmt.Errorf("update call record: %w", err)
		}
		switch {
		case became:
			s.log(ctx, out, commlog.CallEnded, out.Status, u.At.UTC())
		case moved:
			s.log(ctx, out, commlog.CallStatus, out.Status, u.At.UTC())
		}
		return out, became, nil
	}
	return nil, false, fmt.Errorf("update call record: too much contention")
}
