package tasks

import (
	"context"
	"encoding/json"
	"errors"
	"log/slog"
	"strings"
	"time"

	"github.com/hibiken/asynq"

	"github.com/sbagenthub/twilio-worker/optout"
)

// Campaigns is what the SMS handler needs of bulk campaigns (package
// campaign): whether one was canceled, checked right before each send, and
// a place to count each message's final outcome. *campaign.Store is one.
type Campaigns interface {
	Canceled(ctx context.Context, id string) (bool, error)
	// Record counts the outcome of the campaign's message to number once,
	// however often it is called for that recipient.
	Record(ctx context.Context, id, number, outcome string) (bool, error)
}

// Final outcomes of a campaign's message, as counted in tw:campaign:{id};
// a skipped message counts as OutcomeSkipped(reason).
const (
	OutcomeSent     = "sent"
	OutcomeFailed   = "failed" // archived
	OutcomeCanceled = "canceled"
)

// ReasonCanceled is the reason of a skipped result whose campaign was canceled.
const ReasonCanceled = "campaign canceled"

// OutcomeSkipped is the outcome of a message skipped for reason, as a
// short name: "skipped:optout" for the opt-out list.
func OutcomeSkipped(reason string) string {
	if reason == optout.ErrOptedOut.Error() {
		reason = "optout"
	}
	return "skipped:" + strings.Map(func(r rune) rune {
		if r == ' ' || r == ':' {
			return '_'
		}
		return r
	}, strings.ToLower(reason))
}

// recordTimeout bounds counting an outcome: the task's own context may be
// over by then.
const recordTimeout = 5 * time.Second

// campaignCanceled is checked right before the send: a message of a
// canceled campaign completes as skipped ("campaign canceled") and is
// counted as canceled. stop says the handler is done, with err its result
// (a Redis error: retry).
func (h *SMSHandler) campaignCanceled(ctx context.Context, log *slog.Logger, t *asynq.Task, p SMSPayload) (stop bool, err error) {
	if h.Campaigns == nil || p.Campaign == "" {
		return false, nil
	}
	canceled, err := h.Campaigns.Canceled(ctx, p.Campaign)
	if err != nil {
		return true, err
	}
	if !canceled {
		return false, nil
	}
	return true, h.skipCanceled(ctx, log, t, p)
}

// skipCanceled completes a message of a canceled campaign as skipped.
func (h *SMSHandler) skipCanceled(ctx context.Context, log *slog.Logger, t *asynq.Task, p SMSPayload) error {
	h.Metrics.Skipped("canceled")
	log.Info("sms skipped: campaign canceled", "campaign", p.Campaign)
	return h.writeResult(ctx, t, SMSResult{Status: "skipped", Reason: ReasonCanceled})
}

// countCompleted counts a completed campaign message (sent or skipped).
func (h *SMSHandler) countCompleted(t *asynq.Task, res SMSResult) {
	outcome := OutcomeSent
	switch {
	case res.Status != "skipped":
	case res.Reason == ReasonCanceled:
		outcome = OutcomeCanceled
	default:
		outcome = OutcomeSkipped(res.Reason)
	}
	h.countOutcome(context.Background(), t, outcome)
}

// countFailure counts a campaign message whose task asynq archives because
// of err, by asynq's own rule: a final error, or no retries left.
func (h *SMSHandler) countFailure(ctx context.Context, t *asynq.Task, err error) {
	if err == nil {
		return
	}
	retried, _ := asynq.GetRetryCount(ctx)
	maxRetry, ok := asynq.GetMaxRetry(ctx)
	if errors.Is(err, asynq.SkipRetry) || (ok && retried >= maxRetry) {
		h.countOutcome(context.WithoutCancel(ctx), t, OutcomeFailed)
	}
}

func (h *SMSHandler) countOutcome(ctx context.Context, t *asynq.Task, outcome string) {
	if h.Campaigns == nil {
		return
	}
	var p struct{ To, Campaign string }
	if json.Unmarshal(t.Payload(), &p) != nil || p.Campaign == "" {
		return
	}
	ctx, cancel := context.WithTimeout(ctx, recordTimeout)
	defer cancel()
	if _, err := h.Campaigns.Record(ctx, p.Campaign, p.To, outcome); err != nil {
		// Progress only: the message's own fate stands.
		h.logger().Warn("could not count the campaign's outcome", "campaign", p.Campaign, "outcome", outcome, "err", err)
	}
}
