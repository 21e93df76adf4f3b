package tasks

import (
	"context"
	"errors"
	"fmt"
	"log/slog"
	"strings"
	"time"

	"github.com/hibiken/asynq"
	"github.com/redis/go-redis/v9"

	"github.com/sbagenthub/twilio-worker/ledger"
	"github.com/sbagenthub/twilio-worker/optout"
	"github.com/sbagenthub/twilio-worker/ratelimit"
	"github.com/sbagenthub/twilio-worker/twilioapi"
)

// Twilio-side scheduling. With a Messaging Service, a sendSMS whose sendAt
// is at least TWILIO_SCHEDULE_MIN ahead is queued to run at once with
// SMSPayload.SendAt set (the producer decides: HandsOff); its handler hands
// it to Twilio as a scheduled message (ScheduleType=fixed) through the same
// send ledger as any send, so a task that runs twice schedules once.
//
// Checked at hand-off: the payload, the fraud guard (static rules and the
// velocity check, which counts the message now), the opt-out list, and that
// validFor has not run out (it counts from sendAt, so it has not). Not
// checked: the rate limits (Twilio's Messaging Service queue paces what it
// releases) and quiet hours (marketing is never handed off: it waits in the
// queue for its sendAt, where quiet hours and consent are checked as
// usual). The SID is recorded under the recipient (ScheduledKey): a STOP
// that arrives after the hand-off cancels the message at Twilio
// (CancelScheduledFor, where the worker records the opt-out).
//
// A task with SendAt that cannot be handed off when it runs (the worker has
// no Messaging Service or TWILIO_SCHEDULE_MIN is off, it names a sender, it
// is marketing, or it ran so late that sendAt is nearer than the minimum)
// waits in the queue until sendAt (a DeferError, no retry consumed) and is
// then sent as any other message.

// ScheduleMinDefault is TWILIO_SCHEDULE_MIN's default: Twilio schedules
// messages 15 minutes to 35 days ahead.
const ScheduleMinDefault = 15 * time.Minute

// ScheduleMaxAhead is the furthest Twilio schedules a message.
const ScheduleMaxAhead = 35 * 24 * time.Hour

// StatusScheduled is the result status of a message Twilio holds.
const StatusScheduled = "scheduled"

// HandsOff reports whether an sms:send with sendAt is handed to Twilio to
// schedule when min (TWILIO_SCHEDULE_MIN; 0: never) applies: not
// marketing, no sender of its own, sendAt between min and 35 days after now.
func HandsOff(p SMSPayload, sendAt, now time.Time, min time.Duration) bool {
	if min <= 0 || p.From != "" || p.Class == ClassMarketing {
		return false
	}
	ahead := sendAt.Sub(now)
	return ahead >= min && ahead <= ScheduleMaxAhead
}

// scheduleMin is the handler's ScheduleMin; 0 when the Messenger cannot
// schedule.
func (h *SMSHandler) scheduleMin() time.Duration {
	if s, ok := h.Messenger.(interface{ Schedules() bool }); ok && !s.Schedules() {
		return 0
	}
	return h.ScheduleMin
}

// handOff deals with a task whose payload has SendAt: done is false when
// sendAt has come (the message is sent now, as any other).
func (h *SMSHandler) handOff(ctx context.Context, log *slog.Logger, t *asynq.Task, id string, p SMSPayload, now time.Time, lean bool) (done bool, err error) {
	at := p.SendAt.UTC()
	if !at.After(now) {
		return false, nil
	}
	if h.Pool != nil || !HandsOff(p, at, now, h.scheduleMin()) {
		log.Info("sms waits in the queue for its sendAt", "sendAt", at)
		return true, &ratelimit.DeferError{Until: at, Reason: "sendAt " + at.Format(time.RFC3339) + " (not scheduled at Twilio)"}
	}
	if lean {
		// The lean path reads the ledger in its own round trip; this one
		// reads it here.
		res, err := h.alreadySent(ctx, log, id, p)
		if err != nil {
			return true, err
		}
		if res != nil {
			return true, h.writeResult(ctx, t, *res)
		}
	}
	out, blocked, err := preSend(ctx, h.Guard, h.OptOuts, optout.SMS, h.guardCheck(p))
	if err != nil {
		return true, err // Redis trouble: retry
	}
	if out {
		h.Metrics.Skipped("optout")
		log.Info("sms skipped: recipient opted out")
		return true, h.writeResult(ctx, t, SMSResult{Status: "skipped", Reason: optout.ErrOptedOut.Error()})
	}
	if blocked != "" {
		log.Warn("sms refused by the fraud guard", "reason", blocked)
		return true, archive("%s", blocked)
	}
	if h.Ledger != nil {
		if err := h.Ledger.Begin(ctx, id, p.To, now); err != nil {
			return true, err // without the record a crash could schedule twice: retry
		}
	}
	params := twilioapi.SendParams{To: p.To, Body: p.Body, StatusCallback: StatusCallbackFor(h.StatusCallback, id), SendAt: at}
	msg, err := h.Messenger.SendSMS(ctx, params)
	if err != nil {
		if h.Ledger != nil && twilioapi.ClassOf(err) != twilioapi.ClassAmbiguous {
			if aerr := h.Ledger.Abandon(ctx, id, p.To); aerr != nil {
				log.Warn("could not clear the send attempt; the next run will reconcile", "err", aerr)
			}
		}
		if code := twilioapi.CodeOf(err); code == 35114 || code == 35115 {
			// sendAt came too near while the request was on its way:
			// the message waits in the queue for its time instead.
			log.Info("Twilio would not schedule the sms; it waits in the queue for its sendAt", "code", code)
			return true, &ratelimit.DeferError{Until: at, Reason: fmt.Sprintf("sendAt %s (Twilio %d: not scheduled there)", at.Format(time.RFC3339), code)}
		}
		return true, h.failed(ctx, log, p, now, err)
	}
	if h.Ledger != nil {
		if err := h.Ledger.Commit(ctx, id, p.To, msg.SID); err != nil {
			log.Warn("could not record the scheduled message in the ledger", "sid", msg.SID, "err", err)
		}
	}
	h.recordScheduled(ctx, log, id, p.To, msg.SID, at, now)
	log.Info("sms scheduled at Twilio", "sid", msg.SID, "sendAt", at)
	created := msg.DateCreated
	if created.IsZero() {
		created = now
	}
	return true, h.writeResult(ctx, t, SMSResult{MessageSID: msg.SID, Status: StatusScheduled,
		DateCreated: created.UTC().Format(time.RFC3339), SendAt: at.Format(time.RFC3339)})
}

// scheduledResult is the result of a run that finds, in the ledger, the
// message an earlier run handed to Twilio to schedule: its sendAt is after
// the moment that run began.
func scheduledResult(p SMSPayload, e ledger.Entry) (SMSResult, bool) {
	if p.SendAt == nil || !p.SendAt.After(e.StartedAt) {
		return SMSResult{}, false
	}
	return SMSResult{MessageSID: e.SID, Status: StatusScheduled, DateCreated: e.StartedAt.UTC().Format(time.RFC3339),
		SendAt: p.SendAt.UTC().Format(time.RFC3339)}, true
}

// ErrNotScheduled is a cancel of a task whose message Twilio no longer
// holds as scheduled (it has been sent, or canceled).
var ErrNotScheduled = errors.New("the message is no longer scheduled at Twilio")

// MessageCanceler cancels a message Twilio holds as scheduled.
// *twilioapi.Client is one.
type MessageCanceler interface {
	CancelMessage(ctx context.Context, sid string) (*twilioapi.Message, error)
}

// CancelScheduled cancels at Twilio the message of a task whose result says
// it is scheduled there. Twilio's 30409 (sent meanwhile) is ErrNotScheduled.
func CancelScheduled(ctx context.Context, c MessageCanceler, res SMSResult) error {
	if res.Status != StatusScheduled || res.MessageSID == "" {
		return ErrNotScheduled
	}
	if _, err := c.CancelMessage(ctx, res.MessageSID); err != nil {
		if twilioapi.CodeOf(err) == twilioapi.CodeNotCancelable {
			return fmt.Errorf("%w: %w", ErrNotScheduled, err)
		}
		return fmt.Errorf("cancel the scheduled message: %w", err)
	}
	return nil
}

// ScheduledKey is the sorted set of the messages Twilio holds as scheduled
// for recipient to (E.164): members "SID TASK", scores their sendAt in Unix
// ms. It shares the opt-out lists' hash tag: a STOP for to cancels them
// (CancelScheduledFor).
func ScheduledKey(to string) string { return "tw:{optout}:scheduled:" + to }

// recordScheduledScript adds ARGV[2] with score ARGV[1] to KEYS[1], drops
// members whose sendAt passed before ARGV[3], and keeps the set an hour
// past its last sendAt.
var recordScheduledScript = redis.NewScript(`
redis.call('ZREMRANGEBYSCORE', KEYS[1], '-inf', '(' .. ARGV[3])
redis.call('ZADD', KEYS[1], ARGV[1], ARGV[2])
local top = redis.call('ZRANGE', KEYS[1], -1, -1, 'WITHSCORES')
redis.call('PEXPIREAT', KEYS[1], math.floor(tonumber(top[2])) + 3600000)
return 1
`)

// recordScheduled remembers a message Twilio holds for p.To, so that a STOP
// from the recipient cancels it. A failure is logged: the message stays
// scheduled, and can still be canceled by its task.
func (h *SMSHandler) recordScheduled(ctx context.Context, log *slog.Logger, id, to, sid string, at, now time.Time) {
	if h.Redis == nil {
		return
	}
	err := recordScheduledScript.Run(ctx, h.Redis, []string{ScheduledKey(to)}, at.UnixMilli(), sid+" "+id, now.UnixMilli()).Err()
	if err != nil {
		log.Warn("could not record the scheduled message for its recipient; a STOP will not cancel it", "sid", sid, "err", err)
	}
}

// ScheduledMessage is a message Twilio held as scheduled for a recipient.
type ScheduledMessage struct {
	SID, TaskID string
	SendAt      time.Time
}

// CancelScheduledFor cancels at Twilio every message it holds as scheduled
// for to (recorded at hand-off) whose sendAt is still ahead, and returns
// those it canceled. A message Twilio no longer holds (sent, canceled,
// unknown) is forgotten; one whose cancel failed otherwise stays recorded
// and the error is returned.
func CancelScheduledFor(ctx context.Context, rdb redis.UniversalClient, c MessageCanceler, to string, now time.Time) ([]ScheduledMessage, error) {
	key := ScheduledKey(to)
	zs, err := rdb.ZRangeByScoreWithScores(ctx, key, &redis.ZRangeBy{Min: fmt.Sprint(now.UnixMilli()), Max: "+inf"}).Result()
	if err != nil {
		return nil, fmt.Errorf("read the recipient's scheduled messages: %w", err)
	}
	var canceled []ScheduledMessage
	var done []any
	var errs []error
	for _, z := range zs {
		member, _ := z.Member.(string)
		sid, task, _ := strings.Cut(member, " ")
		_, err := c.CancelMessage(ctx, sid)
		switch {
		case err == nil:
			canceled = append(canceled, ScheduledMessage{SID: sid, TaskID: task, SendAt: time.UnixMilli(int64(z.Score)).UTC()})
			done = append(done, member)
		case twilioapi.CodeOf(err) == twilioapi.CodeNotCancelable || twilioapi.ClassOf(err) == twilioapi.ClassNotFound:
			done = append(done, member)
		default:
			errs = append(errs, fmt.Errorf("cancel %s: %w", sid, err))
		}
	}
	if len(done) > 0 {
		if err := rdb.ZRem(ctx, key, done...).Err(); err != nil {
			errs = append(errs, fmt.Errorf("forget canceled messages: %w", err))
		}
	}
	return canceled, errors.Join(errs...)
}
