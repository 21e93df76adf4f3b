// Package optout keeps the do-not-contact lists: Redis sets tw:optout:sms and
// tw:optout:voice, checked immediately before every send and call, with a
// history of every change (who or what changed it, and when) per number.
package optout

import (
	"context"
	"encoding/json"
	"errors"
	"fmt"
	"time"

	"github.com/redis/go-redis/v9"
)

// ErrOptedOut is the condition of a recipient who asked not to be contacted.
var ErrOptedOut = errors.New("recipient opted out")

// Channel is what a number opted out of.
type Channel string

const (
	SMS   Channel = "sms"
	Voice Channel = "voice"
)

// Key is the Redis set of the channel's opted-out numbers.
func (c Channel) Key() string { return "tw:optout:" + string(c) }

// Valid reports whether c is a known channel.
func (c Channel) Valid() bool { return c == SMS || c == Voice }

// Source says where a change came from.
type Source string

const (
	SourceKeyword Source = "keyword"      // the recipient texted STOP/START
	SourceAPI     Source = "api"          // the HTTP API
	SourceCLI     Source = "cli"          // enqueue optout
	SourceImport  Source = "import"       // a bulk import
	SourceTwilio  Source = "twilio-21610" // Twilio refused a send: recipient unsubscribed
)

// Event is one recorded change of a number's state.
type Event struct {
	Channel Channel   `json:"channel"`
	Action  string    `json:"action"` // "opt-out", "opt-in"
	Source  Source    `json:"source"`
	At      time.Time `json:"at"`
}

// historyMax bounds the history kept per number.
const historyMax = 100

func historyKey(number string) string { return "tw:optout:history:" + number }

// Store is the opt-out store. It is safe for concurrent use.
type Store struct {
	rdb redis.UniversalClient
	now func() time.Time
}

// NewStore returns a Store on rdb.
func NewStore(rdb redis.UniversalClient) *Store {
	return &Store{rdb: rdb, now: time.Now}
}

// OptedOut reports whether number (E.164) is in the channel's set: one O(1)
// SISMEMBER.
func (s *Store) OptedOut(ctx context.Context, ch Channel, number string) (bool, error) {
	ok, err := s.rdb.SIsMember(ctx, ch.Key(), number).Result()
	if err != nil {
		return false, fmt.Errorf("check opt-out: %w", err)
	}
	return ok, nil
}

// Add puts number in the channel's set and records the change. It reports
// whether the number was not there before.
func (s *Store) Add(ctx context.Context, ch Channel, number string, src Source) (bool, error) {
	return s.change(ctx, ch, number, src, "opt-out")
}

// Remove takes number out of the channel's set (the recipient opted back in)
// and records the change. It reports whether the number was there.
func (s *Store) Remove(ctx context.Context, ch Channel, number string, src Source) (bool, error) {
	return s.change(ctx, ch, number, src, "opt-in")
}

func (s *Store) change(ctx context.Context, ch Channel, number string, src Source, action string) (bool, error) {
	if !ch.Valid() {
		return false, fmt.Errorf("channel %q: must be sms or voice", ch)
	}
	ev, _ := json.Marshal(Event{Channel: ch, Action: action, Source: src, At: s.now().UTC()})
	var changed *redis.IntCmd
	_, err := s.rdb.TxPipelined(ctx, func(p redis.Pipeliner) error {
		if action == "opt-out" {
			changed = p.SAdd(ctx, ch.Key(), number)
		} else {
			changed = p.SRem(ctx, ch.Key(), number)
		}
		p.LPush(ctx, historyKey(number), ev)
		p.LTrim(ctx, historyKey(number), 0, historyMax-1)
		return nil
	})
	if err != nil {
		return false, fmt.Errorf("%s: %w", action, err)
	}
	return changed.Val() == 1, nil
}

// Count returns how many numbers opted out of the channel.
func (s *Store) Count(ctx context.Context, ch Channel) (int64, error) {
	return s.rdb.SCard(ctx, ch.Key()).Result()
}

// History returns the recorded changes of number, newest first.
func (s *Store) History(ctx context.Context, number string) ([]Event, error) {
	raw, err := s.rdb.LRange(ctx, historyKey(number), 0, -1).Result()
	if err != nil {
		return nil, fmt.Errorf("opt-out history: %w", err)
	}
	out := make([]Event, 0, len(raw))
	for _, r := range raw {
		var ev Event
		if json.Unmarshal([]byte(r), &ev) == nil {
			out = append(out, ev)
		}
	}
	return out, nil
}
