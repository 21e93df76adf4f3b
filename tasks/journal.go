package tasks

import (
	"context"
	"errors"
	"log/slog"
	"time"

	"github.com/hibiken/asynq"
	"github.com/redis/go-redis/v9"

	"github.com/sbagenthub/twilio-worker/commlog"
	"github.com/sbagenthub/twilio-worker/ratelimit"
	"github.com/sbagenthub/twilio-worker/twilioapi"
)

// journal carries what one handler run learns into the communications log:
// the handler fills in the recipient, and its outcome — a result written,
// or the error that decides the task's fate — becomes one entry.
type journal struct {
	log     *commlog.Log
	entry   commlog.Entry // the fields every entry of this run shares
	settled bool          // a result was written and logged
}

type journalKey struct{}

func withJournal(ctx context.Context, j *journal) context.Context {
	return context.WithValue(ctx, journalKey{}, j)
}

// journalOf returns the run's journal; a throwaway one outside a run.
func journalOf(ctx context.Context) *journal {
	if j, ok := ctx.Value(journalKey{}).(*journal); ok {
		return j
	}
	return &journal{}
}

func (j *journal) append(ctx context.Context, log *slog.Logger, e commlog.Entry) {
	if j.log == nil {
		return
	}
	if err := appendDetached(ctx, j.log, j.with(e)); err != nil {
		log.Warn("communications log append failed", "err", err)
	}
}

// appendIn queues the entry in pipe (the handler's round trip after a send).
func (j *journal) appendIn(ctx context.Context, pipe redis.Pipeliner, e commlog.Entry) {
	if j.log == nil {
		return
	}
	j.log.AppendIn(ctx, pipe, j.with(e))
}

// with is e with the fields every entry of the run shares.
func (j *journal) with(e commlog.Entry) commlog.Entry {
	base := j.entry
	base.Event, base.Body, base.SID, base.Status, base.Reason, base.Code, base.Until, base.Slot, base.At =
		e.Event, e.Body, e.SID, e.Status, e.Reason, e.Code, e.Until, e.Slot, e.At
	if base.Channel == "" {
		base.Channel = "sms"
	}
	return base
}

// LogAppendTimeout bounds one append to the communications log.
const LogAppendTimeout = 5 * time.Second

// appendDetached appends e with a context of its own: the entry that says
// how a run ended must be written even when the run's context is already
// canceled (the lease expired, the worker is shutting down).
func appendDetached(ctx context.Context, l *commlog.Log, e commlog.Entry) error {
	actx, cancel := context.WithTimeout(context.WithoutCancel(ctx), LogAppendTimeout)
	defer cancel()
	return l.Append(actx, e)
}

// result logs a written result: sent (with its SID), scheduled at Twilio
// (with its SID and send time) or skipped (with why).
func (j *journal) result(ctx context.Context, log *slog.Logger, res SMSResult) {
	j.settled = true
	if res.Status == "skipped" {
		j.append(ctx, log, commlog.Entry{Event: commlog.Skipped, Reason: res.Reason})
		return
	}
	if res.Status == StatusScheduled {
		j.append(ctx, log, commlog.Entry{Event: commlog.Scheduled, SID: res.MessageSID, Status: res.Status, Until: res.SendAt})
		return
	}
	j.append(ctx, log, commlog.Entry{Event: commlog.Sent, SID: res.MessageSID, Status: res.Status})
}

// outcome logs the fate an error gives the task: deferred, archived, or
// failed for now (it will be retried).
func (j *journal) outcome(ctx context.Context, log *slog.Logger, err error) {
	if err == nil || j.settled {
		return
	}
	var d *ratelimit.DeferError
	switch {
	case errors.As(err, &d):
		j.append(ctx, log, commlog.Entry{Event: commlog.Deferred, Reason: d.Reason, Until: d.Until.UTC().Format(time.RFC3339Nano)})
	case errors.Is(err, asynq.SkipRetry):
		j.append(ctx, log, commlog.Entry{Event: commlog.Failed, Status: "archived", Code: twilioapi.CodeOf(err), Reason: err.Error()})
	default:
		j.append(ctx, log, commlog.Entry{Event: commlog.Failed, Status: "retrying", Code: twilioapi.CodeOf(err), Reason: err.Error()})
	}
}
