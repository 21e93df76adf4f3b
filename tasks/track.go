package tasks

import (
	"context"
	"encoding/json"
	"errors"
	"fmt"
	"log/slog"
	"net/url"
	"strconv"
	"strings"
	"time"

	"github.com/hibiken/asynq"
	"github.com/redis/go-redis/v9"

	"github.com/sbagenthub/twilio-worker/commlog"
	"github.com/sbagenthub/twilio-worker/delivery"
	"github.com/sbagenthub/twilio-worker/metrics"
	"github.com/sbagenthub/twilio-worker/phone"
	"github.com/sbagenthub/twilio-worker/ratelimit"
	"github.com/sbagenthub/twilio-worker/twilioapi"
)

// TypeTrackSMS follows a sent message until the carrier reports on it.
const TypeTrackSMS = "sms:track"

// Delivery tracking defaults.
const (
	// TrackFollowMax: a message with no final status after this long is
	// left alone (Twilio gives up on undeliverable messages well before).
	TrackFollowMax = 24 * time.Hour
	// RedeliverBackoffDefault is the wait before the first redelivery,
	// doubled for each next one.
	RedeliverBackoffDefault = 30 * time.Second
)

// MessageFetcher reads a message from Twilio. *twilioapi.Client is one.
type MessageFetcher interface {
	FetchMessage(ctx context.Context, sid string) (*twilioapi.Message, error)
}

// TrackPayload is the payload of an sms:track task.
type TrackPayload struct {
	MessageSID string `json:"messageSid"`
}

// TrackTaskID is the id of a message's tracking task.
func TrackTaskID(sid string) string { return "sms-track:" + sid }

// Tracker follows messages to delivery: it starts tracking when a message is
// accepted, polls (sms:track) when no status callback arrives, and settles a
// message once it is final, sending it again after a transient carrier
// failure (30001, 30003, 30008) at most RedeliverMax times.
type Tracker struct {
	Store            *delivery.Store
	Fetcher          MessageFetcher
	FollowUps        FollowUps // queues the polls and redeliveries
	Rules            Rules
	Polling          Polling       // waits between polls of a message
	FirstPoll        time.Duration // first wait; longer when status callbacks are expected
	RedeliverMax     int           // REDELIVER_MAX; 0 means none
	RedeliverBackoff time.Duration // first redelivery wait; doubled after
	Comms            *commlog.Log  // the communications log; nil records nothing
	Logger           *slog.Logger  // the process's own log
	Metrics          *metrics.Metrics
	// Guard, when set, counts a carrier verdict with one of Twilio's fraud
	// codes (FraudCodes) toward the message's prefix.
	Guard Guard
}

// Start records an accepted message and schedules its follow-up.
func (tr *Tracker) Start(ctx context.Context, taskID, queue string, p SMSPayload, msg *twilioapi.Message) error {
	if tr == nil {
		return nil
	}
	if err := tr.Store.Track(ctx, tr.record(taskID, queue, p, msg)); err != nil {
		return err
	}
	return tr.schedule(ctx, queue, msg.SID)
}

// StartIn is Start with the record's writes queued in pipe (the handler's
// round trip after a send); once pipe has run, the function it returns
// schedules the follow-up (when pipe failed, the record is written again
// first).
func (tr *Tracker) StartIn(ctx context.Context, pipe redis.Pipeliner, taskID, queue string, p SMSPayload, msg *twilioapi.Message) func(ctx context.Context, pipeErr error) error {
	if tr == nil {
		return func(context.Context, error) error { return nil }
	}
	rec := tr.record(taskID, queue, p, msg)
	delivery.TrackIn(ctx, pipe, rec)
	return func(ctx context.Context, pipeErr error) error {
		if pipeErr != nil {
			if err := tr.Store.Track(ctx, rec); err != nil {
				return err
			}
		}
		return tr.schedule(ctx, queue, msg.SID)
	}
}

func (tr *Tracker) record(taskID, queue string, p SMSPayload, msg *twilioapi.Message) delivery.Record {
	payload, _ := json.Marshal(p)
	return delivery.Record{SID: msg.SID, TaskID: taskID, To: p.To, Campaign: p.Campaign, Attempt: p.Redelivery,
		Queue: queue, Payload: payload, Status: msg.Status, ErrorCode: msg.ErrorCode}
}

func (tr *Tracker) schedule(ctx context.Context, queue, sid string) error {
	first := tr.FirstPoll
	if first <= 0 {
		first = tr.Polling.WithDefaults().First
	}
	pl, _ := json.Marshal(TrackPayload{MessageSID: sid})
	task := asynq.NewTask(TypeTrackSMS, pl, asynq.Queue(queueOr(queue)), asynq.TaskID(TrackTaskID(sid)),
		asynq.ProcessIn(first), asynq.MaxRetry(asynqMaxRetry), asynq.Retention(tr.Rules.WithDefaults().ResultTTL), asynq.Timeout(time.Minute))
	if err := tr.FollowUps.FollowUp(ctx, task); err != nil {
		return fmt.Errorf("schedule delivery tracking: %w", err)
	}
	return nil
}

// CallbackTaskParam is the query parameter of a status callback URL that
// names the task which sent the message or placed the call.
const CallbackTaskParam = "task"

// StatusCallbackFor is the status callback URL for a task's message or
// call: base (PUBLIC_URL + "/twilio/status") naming the task, so a callback
// that arrives before its record exists can be told to be ours (the task's
// send ledger shows the attempt) from one for a SID we never sent. Twilio
// signs the whole URL, so the task cannot be forged. Empty base: none.
func StatusCallbackFor(base, taskID string) string {
	if base == "" || taskID == "" {
		return base
	}
	sep := "?"
	if strings.Contains(base, "?") {
		sep = "&"
	}
	return base + sep + CallbackTaskParam + "=" + url.QueryEscape(taskID)
}

func queueOr(q string) string {
	if ValidQueue(q) {
		return q
	}
	return QueueDefault
}

// ProcessTask implements asynq.Handler for sms:track.
func (tr *Tracker) ProcessTask(ctx context.Context, t *asynq.Task) error {
	return giveUp(ctx, tr.process(ctx, t))
}

func (tr *Tracker) process(ctx context.Context, t *asynq.Task) error {
	tr.Metrics.TaskRun(TypeTrackSMS)
	now := tr.Rules.WithDefaults().Now()
	var p TrackPayload
	if err := json.Unmarshal(t.Payload(), &p); err != nil || p.MessageSID == "" {
		return archive("invalid payload: want {\"messageSid\":\"SM…\"}")
	}
	if err := twilioapi.CheckMessageSID("messageSid", p.MessageSID); err != nil {
		return archive("invalid payload: %v", err)
	}
	log := logger(tr.Logger).With("sid", p.MessageSID)
	rec, err := tr.Store.Get(ctx, p.MessageSID)
	if errors.Is(err, delivery.ErrNotFound) {
		return archive("message %s is not tracked (record expired?)", p.MessageSID)
	}
	if err != nil {
		return &ratelimit.DeferError{Until: now.Add(time.Second), Reason: err.Error()}
	}
	if rec.Final() {
		// A status callback made it final; settle it here if that failed.
		if err := tr.settle(ctx, rec); err != nil {
			return err
		}
		return writeResult(t, log, rec)
	}
	polls, _ := tr.Store.Polled(ctx, p.MessageSID)
	if polls > 0 && time.Duration(polls)*tr.Polling.WithDefaults().Max > TrackFollowMax {
		log.Warn("message never reached a final status; no longer followed", "status", rec.Status)
		return writeResult(t, log, rec)
	}
	msg, err := tr.Fetcher.FetchMessage(ctx, p.MessageSID)
	if err != nil {
		wait := tr.Polling.Wait(polls)
		return &ratelimit.DeferError{Until: now.Add(wait), Reason: "fetch failed: " + err.Error()}
	}
	rec, _, err = tr.Store.Apply(ctx, p.MessageSID, msg.Status, msg.ErrorCode, now)
	if err != nil {
		return &ratelimit.DeferError{Until: now.Add(time.Second), Reason: err.Error()}
	}
	if err := tr.settle(ctx, rec); err != nil {
		return err
	}
	if rec.Final() {
		return writeResult(t, log, rec)
	}
	wait := tr.Polling.Wait(polls)
	return &ratelimit.DeferError{Until: now.Add(wait), Reason: fmt.Sprintf("message %s is %s; next check in %s", p.MessageSID, rec.Status, wait)}
}

// settle settles rec if it is final, tracked and not settled yet, and then
// records that it was. Whoever sees it first (callback or poll) does it; a
// failure leaves it for the next one. Two at once are harmless: the resend's
// task id is fixed, so it is queued once.
func (tr *Tracker) settle(ctx context.Context, rec delivery.Record) error {
	if !rec.Final() || rec.Settled || rec.To == "" {
		return nil
	}
	if err := tr.Settle(ctx, rec); err != nil {
		return err
	}
	return tr.Store.MarkSettled(ctx, rec.SID)
}

// SettleIfFinal is settle for callers outside the package (the status
// callback).
func (tr *Tracker) SettleIfFinal(ctx context.Context, rec delivery.Record) error {
	return tr.settle(ctx, rec)
}

// Settle acts on a message that has just become final: it logs the outcome
// and sends the message again after a transient carrier failure. Whichever
// of the status callback and the poll sees the final status settles it, and
// settles it again until MarkSettled succeeds; so it may run more than once
// for one message: the resend's task id ({id}~redeliver-{n}) makes it queue once.
func (tr *Tracker) Settle(ctx context.Context, rec delivery.Record) error {
	log := logger(tr.Logger).With("sid", rec.SID, "to", phone.Number(rec.To))
	entry := commlog.Entry{Channel: "sms", TaskID: rec.TaskID, SID: rec.SID, To: rec.To, Status: rec.Status, Code: rec.ErrorCode}
	if rec.Status == "delivered" || rec.Status == "read" {
		entry.Event = commlog.Delivered
		tr.logEntry(ctx, log, entry)
		log.Info("sms delivered")
		return nil
	}
	entry.Event = commlog.Undelivered
	if rec.Status == "failed" {
		entry.Event = commlog.Failed
	}
	if IsFraudCode(rec.ErrorCode) && tr.Guard != nil {
		var p SMSPayload
		_ = json.Unmarshal(rec.Payload, &p)
		reason, err := tr.Guard.Strike(ctx, GuardCheck{To: rec.To, Source: p.Source, Channel: "sms"}, rec.ErrorCode)
		if err != nil {
			log.Warn("fraud guard: could not count Twilio's refusal", "err", err)
		}
		entry.Reason = reason
	}
	tr.logEntry(ctx, log, entry)
	if !delivery.Transient(rec.ErrorCode) || rec.Attempt >= tr.RedeliverMax {
		log.Warn("sms not delivered; final", "status", rec.Status, "code", rec.ErrorCode, "redeliveries", rec.Attempt)
		return nil
	}
	var p SMSPayload
	if err := json.Unmarshal(rec.Payload, &p); err != nil {
		log.Error("cannot redeliver: payload unreadable", "err", err)
		return nil
	}
	if expired(p, tr.Rules.WithDefaults().Now()) {
		log.Warn("not redelivered: past its validity", "code", rec.ErrorCode)
		return nil
	}
	p.Redelivery = rec.Attempt + 1
	backoff := tr.RedeliverBackoff
	if backoff <= 0 {
		backoff = RedeliverBackoffDefault
	}
	wait := backoff << (p.Redelivery - 1)
	origin, _, _ := strings.Cut(rec.TaskID, RedeliverySep) // keep ids flat: x~redeliver-1, x~redeliver-2
	task, err := NewSendSMSTask(p, tr.Rules, asynq.Queue(queueOr(rec.Queue)),
		asynq.TaskID(origin+RedeliverySep+strconv.Itoa(p.Redelivery)), asynq.ProcessIn(wait))
	if err != nil {
		log.Error("cannot redeliver", "err", err)
		return nil
	}
	if err := tr.FollowUps.FollowUp(ctx, task); err != nil {
		return fmt.Errorf("enqueue redelivery: %w", err)
	}
	tr.logEntry(ctx, log, commlog.Entry{Event: commlog.Redelivery, Channel: "sms", TaskID: rec.TaskID, SID: rec.SID,
		To: rec.To, Code: rec.ErrorCode, Reason: fmt.Sprintf("attempt %d of %d in %s", p.Redelivery, tr.RedeliverMax, wait)})
	log.Info("sms undelivered with a transient carrier error; sending it again", "code", rec.ErrorCode, "redelivery", p.Redelivery, "in", wait)
	return nil
}

func (tr *Tracker) logEntry(ctx context.Context, log *slog.Logger, e commlog.Entry) {
	if err := appendDetached(ctx, tr.Comms, e); err != nil {
		log.Warn("communications log append failed", "err", err)
	}
}
