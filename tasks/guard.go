package tasks

import (
	"context"
	"fmt"
	"log/slog"
	"slices"

	"github.com/redis/go-redis/v9"

	"github.com/sbagenthub/twilio-worker/optout"
	"github.com/sbagenthub/twilio-worker/twilioapi"
)

// Guard is the fraud guard as the handlers need it. *fraud.Guard is one.
type Guard interface {
	// Refused re-checks the static rules (country, number type): the
	// reason to archive a task to number with, or "".
	Refused(number string) string
	// PreSend decides whether c may go now, in one Redis round trip with the
	// commands also queues (the opt-out check): the reason to archive the
	// task with, or "".
	PreSend(ctx context.Context, c GuardCheck, also func(redis.Pipeliner)) (string, error)
	// Strike counts Twilio's fraud refusal (30450, 21408, 30649) toward the
	// destination's prefix and returns the reason to archive the task with.
	Strike(ctx context.Context, c GuardCheck, code int) (string, error)
}

// GuardCheck is one send or call as the Guard sees it.
type GuardCheck struct {
	To       string // E.164
	Source   string // agent or operator ("" is operator: Go code queueing directly)
	Segments int    // SMS segments; 0 for a call
	Channel  string // sms or voice
}

// PipelinedOptOuts is an opt-out store whose check can join another
// command's round trip. *optout.Store is one.
type PipelinedOptOuts interface {
	OptedOutCmd(ctx context.Context, p redis.Pipeliner, ch optout.Channel, number string) *redis.BoolCmd
}

// preSend makes the last checks before a send or call: the guard's and the
// opt-out list's, in one round trip when the store can join the guard's
// pipeline. blocked is the guard's reason to archive, "" to go on.
func preSend(ctx context.Context, g Guard, opts OptOuts, ch optout.Channel, c GuardCheck) (out bool, blocked string, err error) {
	po, ok := opts.(PipelinedOptOuts)
	if g == nil || !ok {
		if g != nil {
			if blocked, err = g.PreSend(ctx, c, nil); err != nil || blocked != "" {
				return false, blocked, err
			}
		}
		out, err = opts.OptedOut(ctx, ch, c.To)
		if err != nil {
			return false, "", fmt.Errorf("check opt-out: %w", err)
		}
		return out, "", nil
	}
	var cmd *redis.BoolCmd
	blocked, err = g.PreSend(ctx, c, func(p redis.Pipeliner) { cmd = po.OptedOutCmd(ctx, p, ch, c.To) })
	if err != nil {
		return false, "", err // Redis trouble: retry
	}
	if cmd == nil {
		return false, blocked, fmt.Errorf("check opt-out: the guard ran no check")
	}
	if out, err = cmd.Result(); err != nil {
		return false, "", fmt.Errorf("check opt-out: %w", err)
	}
	return out, blocked, nil
}

// FraudCodes are Twilio's own fraud refusals: 30450 (SMS pumping
// protection), 21408 (permission to send to the region not enabled) and
// 30649 (blocked by Twilio's fraud detection). The task is archived with
// the reason and the refusal counts toward the destination's prefix.
var FraudCodes = []int{30450, 21408, 30649}

// IsFraudCode reports whether code is one of FraudCodes.
func IsFraudCode(code int) bool { return slices.Contains(FraudCodes, code) }

// strike archives a send Twilio refused as fraud, telling the guard.
func strike(ctx context.Context, log *slog.Logger, g Guard, c GuardCheck, te *twilioapi.Error) error {
	reason := fmt.Sprintf("fraud guard: Twilio refused it (%d)", te.Code)
	if g != nil {
		r, err := g.Strike(ctx, c, te.Code)
		if err != nil {
			log.Warn("fraud guard: could not count Twilio's refusal", "err", err)
		}
		if r != "" {
			reason = r
		}
	}
	log.Warn("refused by Twilio as fraud", "code", te.Code, "err", te.Message)
	return archive("%s: %s", reason, te.Error())
}
