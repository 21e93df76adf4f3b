// Package commlog is the communications log: every attempt and outcome
// (queued, sent, delivered, failed with its code, skipped with its reason,
// deferred, opt-out changes) appended to the Redis stream tw:log, trimmed to
// LOG_RETENTION. Bodies are kept or redacted (LOG_BODIES). The seed asks to
// "log all communications"; this is that record, queried by `enqueue log`.
package commlog

import (
	"context"
	"errors"
	"fmt"
	"strconv"
	"strings"
	"sync/atomic"
	"time"

	"github.com/redis/go-redis/v9"
)

// Key is the stream.
const Key = "tw:log"

// RetentionDefault is LOG_RETENTION's default.
const RetentionDefault = 30 * 24 * time.Hour

// MaxEntriesDefault is LOG_MAX_ENTRIES's default: the stream is trimmed to
// about this many entries whatever their age. At ~650 bytes an entry (an
// SMS's life is about four entries) it bounds tw:log near 650 MB.
const MaxEntriesDefault = 1_000_000

// Events.
const (
	Queued      = "queued"
	Sending     = "sending"
	Sent        = "sent"
	Scheduled   = "scheduled" // handed to Twilio, which sends it at Until (ScheduleType=fixed)
	Delivered   = "delivered"
	Undelivered = "undelivered"
	Failed      = "failed"
	Skipped     = "skipped"
	Deferred    = "deferred"
	Redelivery  = "redelivery"
	OptOut      = "opt-out"
	OptIn       = "opt-in"
	CallPlaced  = "call-placed" // Twilio created the call
	CallStatus  = "call-status" // the call moved on: initiated, ringing, in-progress
	CallEnded   = "call-ended"  // its final status (completed, busy, no-answer, failed, canceled, unknown)
)

// Entry is one line of the log.
type Entry struct {
	ID      string    `json:"id,omitempty"` // stream id, set when read
	At      time.Time `json:"at"`
	Event   string    `json:"event"`
	Channel string    `json:"channel,omitempty"` // sms, voice
	TaskID  string    `json:"taskId,omitempty"`
	SID     string    `json:"sid,omitempty"`
	To      string    `json:"to,omitempty"`
	From    string    `json:"from,omitempty"`
	Body    string    `json:"body,omitempty"`
	Status  string    `json:"status,omitempty"`
	Code    int       `json:"code,omitempty"`
	Reason  string    `json:"reason,omitempty"`
	Until   string    `json:"until,omitempty"`
	Source  string    `json:"source,omitempty"`
	// Slot is the rate limiter's decision time for a "sending" entry: the
	// moment the limits let the message go (At is when the worker started
	// the request, at or after it). Zero when no limit applied.
	Slot time.Time `json:"slot,omitzero"`
}

// Log appends to and reads the stream. A nil *Log records nothing.
type Log struct {
	rdb        redis.UniversalClient
	retention  time.Duration
	maxEntries int64
	keepBodies bool
	now        func() time.Time
	lastTrim   atomic.Int64 // Unix ns of the last age trim this process sent
}

// Config configures a Log.
type Config struct {
	Retention  time.Duration // LOG_RETENTION; RetentionDefault when zero
	MaxEntries int64         // LOG_MAX_ENTRIES; MaxEntriesDefault when zero
	KeepBodies bool          // LOG_BODIES=keep; bodies are redacted otherwise
}

// New returns a Log on rdb.
func New(rdb redis.UniversalClient, cfg Config) *Log {
	if cfg.Retention <= 0 {
		cfg.Retention = RetentionDefault
	}
	if cfg.MaxEntries <= 0 {
		cfg.MaxEntries = MaxEntriesDefault
	}
	return &Log{rdb: rdb, retention: cfg.Retention, maxEntries: cfg.MaxEntries, keepBodies: cfg.KeepBodies, now: time.Now}
}

// Append records e. Errors are returned for the caller to log; a failure to
// write the log never changes a message's fate.
func (l *Log) Append(ctx context.Context, e Entry) error {
	if l == nil {
		return nil
	}
	_, err := l.rdb.Pipelined(ctx, func(p redis.Pipeliner) error {
		l.AppendIn(ctx, p, e)
		return nil
	})
	return err
}

// AppendIn queues Append's writes in p, so that the entry shares the round
// trip of the handler's other writes; p's error is Append's.
func (l *Log) AppendIn(ctx context.Context, p redis.Pipeliner, e Entry) {
	if l == nil {
		return
	}
	if e.At.IsZero() {
		e.At = l.now()
	}
	if e.Body != "" && !l.keepBodies {
		e.Body = fmt.Sprintf("[redacted, %d characters]", len([]rune(e.Body)))
	}
	values := map[string]any{"at": e.At.UTC().Format(time.RFC3339Nano), "event": e.Event}
	set := func(k, v string) {
		if v != "" {
			values[k] = v
		}
	}
	set("channel", e.Channel)
	set("taskId", e.TaskID)
	set("sid", e.SID)
	set("to", e.To)
	set("from", e.From)
	set("body", e.Body)
	set("status", e.Status)
	set("reason", e.Reason)
	set("until", e.Until)
	set("source", e.Source)
	if e.Code != 0 {
		values["code"] = strconv.Itoa(e.Code)
	}
	if !e.Slot.IsZero() {
		values["slot"] = e.Slot.UTC().Format(time.RFC3339Nano)
	}
	// Bounded by count as the entry is added (MAXLEN ~, so Redis trims
	// whole nodes), and by age: stream ids are the time of appending. XADD
	// takes one trim strategy only, so the age trim is a command of its own,
	// sent with at most one append in each trimEvery of this process.
	p.XAdd(ctx, &redis.XAddArgs{Stream: Key, MaxLen: l.maxEntries, Approx: true, Values: values})
	now := l.now()
	if last := l.lastTrim.Load(); now.UnixNano()-last >= int64(l.trimEvery()) && l.lastTrim.CompareAndSwap(last, now.UnixNano()) {
		p.XTrimMinIDApprox(ctx, Key, strconv.FormatInt(now.Add(-l.retention).UnixMilli(), 10), 0)
	}
}

// trimEvery is how often a process trims the stream by age: a tenth of
// the retention, at most a second, so entries outlive it by at most that.
func (l *Log) trimEvery() time.Duration { return min(l.retention/10, time.Second) }

// Len returns the number of entries in the stream.
func (l *Log) Len(ctx context.Context) (int64, error) {
	if l == nil {
		return 0, nil
	}
	return l.rdb.XLen(ctx, Key).Result()
}

// Filter selects entries. Zero fields select everything.
type Filter struct {
	To     string // E.164
	TaskID string
	SID    string
	Since  time.Time
}

func (f Filter) match(e Entry) bool {
	return (f.To == "" || e.To == f.To) && (f.TaskID == "" || e.TaskID == f.TaskID) &&
		(f.SID == "" || e.SID == f.SID) && !e.At.Before(f.Since)
}

func decode(m redis.XMessage) Entry {
	s := func(k string) string { v, _ := m.Values[k].(string); return v }
	e := Entry{ID: m.ID, Event: s("event"), Channel: s("channel"), TaskID: s("taskId"), SID: s("sid"),
		To: s("to"), From: s("from"), Body: s("body"), Status: s("status"), Reason: s("reason"),
		Until: s("until"), Source: s("source")}
	e.At, _ = time.Parse(time.RFC3339Nano, s("at"))
	e.Code, _ = strconv.Atoi(s("code"))
	if v := s("slot"); v != "" {
		e.Slot, _ = time.Parse(time.RFC3339Nano, v)
	}
	return e
}

func startID(since time.Time) string {
	if since.IsZero() {
		return "-"
	}
	return strconv.FormatInt(since.UnixMilli(), 10)
}

// Read calls fn for each entry matching f, oldest first, reading the stream
// in pages so memory stays bounded. fn returning an error stops the read.
func (l *Log) Read(ctx context.Context, f Filter, fn func(Entry) error) (last string, err error) {
	start := startID(f.Since)
	last = "0"
	for {
		msgs, err := l.rdb.XRangeN(ctx, Key, start, "+", 500).Result()
		if err != nil {
			return last, fmt.Errorf("read %s: %w", Key, err)
		}
		for _, m := range msgs {
			last = m.ID
			if e := decode(m); f.match(e) {
				if err := fn(e); err != nil {
					return last, err
				}
			}
		}
		if len(msgs) < 500 {
			return last, nil
		}
		start = "(" + msgs[len(msgs)-1].ID
	}
}

// Follow calls fn for entries matching f appended after the stream id
// after, until ctx ends.
func (l *Log) Follow(ctx context.Context, f Filter, after string, fn func(Entry) error) error {
	if after == "" {
		after = "$"
	}
	for {
		res, err := l.rdb.XRead(ctx, &redis.XReadArgs{Streams: []string{Key, after}, Block: time.Second, Count: 500}).Result()
		switch {
		case errors.Is(err, redis.Nil):
			continue
		case ctx.Err() != nil:
			return nil
		case err != nil:
			return fmt.Errorf("follow %s: %w", Key, err)
		}
		for _, stream := range res {
			for _, m := range stream.Messages {
				after = m.ID
				if e := decode(m); f.match(e) {
					if err := fn(e); err != nil {
						return err
					}
				}
			}
		}
	}
}

// ParseBodies reads LOG_BODIES: keep or redact.
func ParseBodies(s string) (keep bool, err error) {
	switch strings.ToLower(strings.TrimSpace(s)) {
	case "", "redact":
		return false, nil
	case "keep":
		return true, nil
	}
	return false, errors.New("must be keep or redact")
}
