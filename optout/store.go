// Package optout keeps the do-not-contact lists and the marketing consents:
// Redis sets tw:{optout}:optout:sms and tw:{optout}:optout:voice, checked
// immediately before every send and call, and tw:{optout}:consent:sms,
// checked before marketing. Every change is recorded with where it came from
// (keyword, API, CLI, import, Twilio 21610) and when, and can be listed per
// number.
//
// # Keys
//
// All under the hash tag {optout} (one Redis Cluster slot, so a change and
// its history are one transaction):
//
//	tw:{optout}:optout:sms, …:optout:voice    sets of E.164 numbers that opted out
//	tw:{optout}:consent:sms, …:consent:voice  sets of E.164 numbers that consented to marketing
//	tw:{optout}:history:NUMBER                list of that number's changes (JSON Event), newest first, capped
//	tw:{optout}:imports                       list of import ids, newest first, capped
//	tw:{optout}:import:ID                     one import's record (lists, source, name, time, counts)
//	tw:{optout}:imported:BUCKET               hashes number → id of the last import that held it
//
// A check is one SISMEMBER: O(1) however long the list. An import of a
// million numbers writes one import record and, per number, one field in a
// bucketed hash (about 25 bytes of Redis memory, compact listpack encoding
// up to some 8 million numbers) rather than a history list per number
// (some 200 bytes each); History shows the import from that field.
package optout

import (
	"context"
	"encoding/json"
	"errors"
	"fmt"
	"slices"
	"strings"
	"time"

	"github.com/redis/go-redis/v9"

	"github.com/sbagenthub/twilio-worker/commlog"
)

// ErrOptedOut is the condition of a recipient who asked not to be contacted.
var ErrOptedOut = errors.New("recipient opted out")

// ErrNoConsent is the condition of a marketing recipient without recorded consent.
var ErrNoConsent = errors.New("no consent")

// Channel is what a number opted out of or consented to.
type Channel string

const (
	SMS   Channel = "sms"
	Voice Channel = "voice"
)

// Channels lists every channel.
var Channels = []Channel{SMS, Voice}

// Key is the Redis set of the channel's opted-out numbers.
func (c Channel) Key() string { return OptOutList(c).Key() }

// Valid reports whether c is a known channel.
func (c Channel) Valid() bool { return c == SMS || c == Voice }

// Kind says what a list records.
type Kind string

const (
	KindOptOut  Kind = "optout"  // do not contact
	KindConsent Kind = "consent" // may receive marketing
)

// List is one of the store's sets: the opt-outs or the consents of a channel.
type List struct {
	Kind    Kind
	Channel Channel
}

// OptOutList is the channel's opt-out set.
func OptOutList(ch Channel) List { return List{KindOptOut, ch} }

// ConsentList is the channel's marketing-consent set.
func ConsentList(ch Channel) List { return List{KindConsent, ch} }

// Key is the list's Redis set: tw:{optout}:optout:sms,
// tw:{optout}:consent:sms, ….
func (l List) Key() string { return key(string(l.Kind), string(l.Channel)) }

// key names every key of the store. The hash tag {optout} puts them all in
// one Redis Cluster slot, so that a change and its history (and an import's
// sets, markers and record) are one transaction: tw:{optout}:optout:sms,
// tw:{optout}:consent:sms, tw:{optout}:history:NUMBER, tw:{optout}:imports,
// tw:{optout}:import:ID, tw:{optout}:imported:BUCKET.
func key(parts ...string) string { return "tw:{optout}:" + strings.Join(parts, ":") }

func (l List) String() string { return string(l.Kind) + ":" + string(l.Channel) }

func (l List) valid() error {
	if !l.Channel.Valid() {
		return fmt.Errorf("channel %q: must be sms or voice", l.Channel)
	}
	if l.Kind != KindOptOut && l.Kind != KindConsent {
		return fmt.Errorf("list kind %q: must be optout or consent", l.Kind)
	}
	return nil
}

// Actions recorded in the history.
const (
	ActionOptOut         = "opt-out"
	ActionOptIn          = "opt-in"
	ActionConsent        = "consent"
	ActionConsentRevoked = "consent-withdrawn"
)

// actions returns what adding to and removing from l are called.
func (l List) actions() (add, remove string) {
	if l.Kind == KindConsent {
		return ActionConsent, ActionConsentRevoked
	}
	return ActionOptOut, ActionOptIn
}

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
	Action  string    `json:"action"` // opt-out, opt-in, consent, consent-withdrawn
	Source  Source    `json:"source"`
	At      time.Time `json:"at"`
	Import  string    `json:"import,omitempty"` // the import's id, for Source import
}

// historyMax bounds the history kept per number.
const historyMax = 100

func historyKey(number string) string { return key("history", number) }

// Store is the opt-out and consent store. It is safe for concurrent use.
type Store struct {
	rdb redis.UniversalClient
	now func() time.Time
	log *commlog.Log
}

// WithLog returns s recording every change in the communications log too.
func (s *Store) WithLog(l *commlog.Log) *Store {
	c := *s
	c.log = l
	return &c
}

// NewStore returns a Store on rdb.
func NewStore(rdb redis.UniversalClient) *Store {
	return &Store{rdb: rdb, now: time.Now}
}

// OptedOut reports whether number (E.164) is in the channel's set: one O(1)
// SISMEMBER.
func (s *Store) OptedOut(ctx context.Context, ch Channel, number string) (bool, error) {
	return s.Contains(ctx, OptOutList(ch), number)
}

// Check returns an error wrapping ErrOptedOut when number opted out of ch:
// what a sender calls immediately before it sends or calls.
func (s *Store) Check(ctx context.Context, ch Channel, number string) error {
	out, err := s.OptedOut(ctx, ch, number)
	if err != nil {
		return err
	}
	if out {
		return fmt.Errorf("%s: %w", ch, ErrOptedOut)
	}
	return nil
}

// Add puts number in the channel's opt-out set and records the change. It
// reports whether the number was not there before.
func (s *Store) Add(ctx context.Context, ch Channel, number string, src Source) (bool, error) {
	return s.Put(ctx, OptOutList(ch), number, src)
}

// Remove takes number out of the channel's opt-out set (the recipient opted
// back in) and records the change. It reports whether the number was there.
func (s *Store) Remove(ctx context.Context, ch Channel, number string, src Source) (bool, error) {
	return s.Delete(ctx, OptOutList(ch), number, src)
}

// Count returns how many numbers opted out of the channel.
func (s *Store) Count(ctx context.Context, ch Channel) (int64, error) {
	return s.Size(ctx, OptOutList(ch))
}

// HasConsent reports whether number consented to marketing on ch.
func (s *Store) HasConsent(ctx context.Context, ch Channel, number string) (bool, error) {
	return s.Contains(ctx, ConsentList(ch), number)
}

// AddConsent records number's consent to marketing on ch.
func (s *Store) AddConsent(ctx context.Context, ch Channel, number string, src Source) (bool, error) {
	return s.Put(ctx, ConsentList(ch), number, src)
}

// RemoveConsent records that number withdrew its consent to marketing on ch.
func (s *Store) RemoveConsent(ctx context.Context, ch Channel, number string, src Source) (bool, error) {
	return s.Delete(ctx, ConsentList(ch), number, src)
}

// Contains reports whether number is in l: one SISMEMBER.
func (s *Store) Contains(ctx context.Context, l List, number string) (bool, error) {
	if err := l.valid(); err != nil {
		return false, err
	}
	ok, err := s.rdb.SIsMember(ctx, l.Key(), number).Result()
	if err != nil {
		return false, fmt.Errorf("check %s: %w", l, err)
	}
	return ok, nil
}

// Put adds number to l and records the change; it reports whether the
// number was not there before. The change is recorded either way: a second
// STOP is still something the recipient said.
func (s *Store) Put(ctx context.Context, l List, number string, src Source) (bool, error) {
	add, _ := l.actions()
	return s.change(ctx, l, number, src, add)
}

// Delete takes number out of l and records the change; it reports whether
// the number was there.
func (s *Store) Delete(ctx context.Context, l List, number string, src Source) (bool, error) {
	_, remove := l.actions()
	return s.change(ctx, l, number, src, remove)
}

func (s *Store) change(ctx context.Context, l List, number string, src Source, action string) (bool, error) {
	if err := l.valid(); err != nil {
		return false, err
	}
	add, _ := l.actions()
	ev, _ := json.Marshal(Event{Channel: l.Channel, Action: action, Source: src, At: s.now().UTC()})
	var changed *redis.IntCmd
	_, err := s.rdb.TxPipelined(ctx, func(p redis.Pipeliner) error {
		if action == add {
			changed = p.SAdd(ctx, l.Key(), number)
		} else {
			changed = p.SRem(ctx, l.Key(), number)
		}
		p.LPush(ctx, historyKey(number), ev)
		p.LTrim(ctx, historyKey(number), 0, historyMax-1)
		return nil
	})
	if err != nil {
		return false, fmt.Errorf("%s: %w", action, err)
	}
	if changed.Val() == 1 && s.log != nil {
		event := commlog.OptIn
		if action == add {
			event = commlog.OptOut
		}
		// A failed append never undoes the change; the set is the truth.
		_ = s.log.Append(ctx, commlog.Entry{Event: event, Channel: string(l.Channel), To: number,
			Source: string(src), Reason: string(l.Kind) + " " + action})
	}
	return changed.Val() == 1, nil
}

// Size returns how many numbers l holds: one SCARD.
func (s *Store) Size(ctx context.Context, l List) (int64, error) {
	if err := l.valid(); err != nil {
		return 0, err
	}
	return s.rdb.SCard(ctx, l.Key()).Result()
}

// History returns the recorded changes of number, newest first: its own
// history list, and the last import that held it.
func (s *Store) History(ctx context.Context, number string) ([]Event, error) {
	var (
		list   *redis.StringSliceCmd
		marker *redis.StringCmd
	)
	_, err := s.rdb.Pipelined(ctx, func(p redis.Pipeliner) error {
		list = p.LRange(ctx, historyKey(number), 0, -1)
		marker = p.HGet(ctx, markerKey(number), number)
		return nil
	})
	if err != nil && !errors.Is(err, redis.Nil) {
		return nil, fmt.Errorf("opt-out history: %w", err)
	}
	out := make([]Event, 0, len(list.Val())+2)
	for _, r := range list.Val() {
		var ev Event
		if json.Unmarshal([]byte(r), &ev) == nil {
			out = append(out, ev)
		}
	}
	if id := marker.Val(); id != "" {
		imp, err := s.Import(ctx, id)
		if err != nil && !errors.Is(err, ErrNoImport) {
			return nil, err
		}
		if err == nil {
			for _, l := range imp.Lists {
				add, _ := l.actions()
				out = append(out, Event{Channel: l.Channel, Action: add, Source: imp.Source, At: imp.Started, Import: imp.ID})
			}
		}
	}
	slices.SortStableFunc(out, func(a, b Event) int { return b.At.Compare(a.At) })
	return out, nil
}
