package tasks

import (
	"context"
	"errors"
	"fmt"
	"log/slog"
	"regexp"
	"strings"
	"time"

	"github.com/hibiken/asynq"

	"github.com/sbagenthub/twilio-worker/optout"
	"github.com/sbagenthub/twilio-worker/phone"
	"github.com/sbagenthub/twilio-worker/quiet"
	"github.com/sbagenthub/twilio-worker/ratelimit"
)

// OptOutFooter is appended to marketing bodies that carry no opt-out
// instruction of their own.
const OptOutFooter = "Reply STOP to unsubscribe."

// optOutInstruction recognises a body that already tells the recipient how
// to opt out: STOP as a word in capitals, or "unsubscribe" / "opt out" in
// any case. A lower-case "stop" ("don't stop now") is not an instruction.
var optOutInstruction = regexp.MustCompile(`\bSTOP\b|(?i:\bunsubscribe\b|\bopt[- ]?out\b)`)

// WithOptOutFooter returns body with OptOutFooter on a line of its own,
// unless body already has an opt-out instruction. Applying it twice changes
// nothing.
func WithOptOutFooter(body string) string {
	if optOutInstruction.MatchString(body) {
		return body
	}
	return strings.TrimRight(body, " \t\r\n") + "\n" + OptOutFooter
}

// Consents tells whether a number consented to marketing. *optout.Store is one.
type Consents interface {
	HasConsent(ctx context.Context, ch optout.Channel, number string) (bool, error)
}

// Marketing holds the rules only marketing messages obey; transactional
// and alert messages are exempt.
type Marketing struct {
	// QuietHours is the recipient-local window in which marketing is
	// deferred (QUIET_HOURS); nil means quiet.Default. An empty window
	// (00:00-00:00) turns quiet hours off.
	QuietHours *quiet.Window
	// RequireConsent sends marketing only to numbers with recorded consent
	// (MARKETING_REQUIRES_CONSENT); others end skipped, "no consent".
	RequireConsent bool
	// Consents is where consent is looked up; when nil, the handler's
	// OptOuts if it is one.
	Consents Consents
}

var defaultQuietHours = quiet.MustParse(quiet.Default)

// Skip reasons of marketing (the result's reason; the metric label in brackets).
const (
	ReasonNoConsent   = "no consent"                                              // no_consent
	ReasonUnknownZone = "quiet hours: the recipient's local time cannot be known" // unknown_timezone
)

// checkMarketing applies Marketing to p. It returns done = true when the
// task ends here: err is then what ProcessTask returns (nil after a skipped
// result was written, a *ratelimit.DeferError until the quiet hours end, or
// an archive error). Called before the rate limits and the opt-out check
// (SMSHandler.process): a message that waits for the morning gives back the
// slot it was booked at enqueue and takes none.
func (h *SMSHandler) checkMarketing(ctx context.Context, log *slog.Logger, t *asynq.Task, p SMSPayload, now time.Time) (done bool, err error) {
	if p.Class != ClassMarketing {
		return false, nil
	}
	m := h.Marketing
	if m.RequireConsent {
		c := m.Consents
		if c == nil {
			c, _ = h.OptOuts.(Consents)
		}
		if c == nil {
			return true, errors.New("marketing requires consent but no consent store is configured")
		}
		ok, err := c.HasConsent(ctx, optout.SMS, p.To)
		if err != nil {
			return true, fmt.Errorf("check consent: %w", err) // Redis trouble: retry
		}
		if !ok {
			h.Metrics.Skipped("no_consent")
			log.Info("marketing sms skipped: no recorded consent")
			return true, h.writeResult(ctx, t, SMSResult{Status: "skipped", Reason: ReasonNoConsent})
		}
	}

	w := defaultQuietHours
	if m.QuietHours != nil {
		w = *m.QuietHours
	}
	if w.Empty() {
		return false, nil
	}
	zones := phone.Number(p.To).TimeZones()
	locs, err := quiet.Load(zones)
	var next time.Time
	if err == nil {
		next, err = w.Next(now, locs)
	}
	if err != nil {
		// Etc/Unknown (a number with no zone) or zones with no common
		// daytime: we cannot tell it is not the middle of the night.
		h.Metrics.Skipped("unknown_timezone")
		log.Info("marketing sms skipped: recipient's local time unknown", "zones", len(zones), "err", err)
		return true, h.writeResult(ctx, t, SMSResult{Status: "skipped", Reason: ReasonUnknownZone})
	}
	if !next.After(now) {
		return false, nil
	}
	var quietIn []string
	for i, loc := range locs {
		if w.Inside(now, loc) {
			quietIn = append(quietIn, zones[i])
		}
	}
	if len(quietIn) > 3 {
		quietIn = append(quietIn[:3], fmt.Sprintf("%d more", len(quietIn)-3))
	}
	if p.ExpiresAt != nil && next.After(*p.ExpiresAt) {
		h.Metrics.Skipped("expired")
		return true, archive("expired: quiet hours %s would delay it past %s", w, p.ExpiresAt.Format(time.RFC3339))
	}
	h.Metrics.Skipped("quiet_hours")
	log.Info("marketing sms deferred: quiet hours in the recipient's time zone", "window", w.String(), "zones", quietIn, "until", next)
	return true, &ratelimit.DeferError{Until: next, Reason: fmt.Sprintf("quiet hours %s in %s", w, strings.Join(quietIn, ", "))}
}
