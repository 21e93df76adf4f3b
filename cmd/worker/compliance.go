package main

import (
	"errors"
	"fmt"
	"strconv"
	"strings"
	"unicode/utf8"

	"github.com/sbagenthub/twilio-worker/quiet"
	"github.com/sbagenthub/twilio-worker/segment"
	"github.com/sbagenthub/twilio-worker/tasks"
)

// Compliance is the opt-out, consent and quiet-hours part of the configuration.
type Compliance struct {
	QuietHours     quiet.Window // QUIET_HOURS
	RequireConsent bool         // MARKETING_REQUIRES_CONSENT
	HelpText       string       // HELP_TEXT; "" means httpapi.HelpTextDefault
}

// Marketing is what the sms handler needs of it.
func (c Compliance) Marketing() tasks.Marketing {
	w := c.QuietHours
	return tasks.Marketing{QuietHours: &w, RequireConsent: c.RequireConsent}
}

// parseCompliance reads QUIET_HOURS, MARKETING_REQUIRES_CONSENT and
// HELP_TEXT; every error names its variable.
func parseCompliance(get func(string) string) (Compliance, error) {
	var c Compliance
	var errs []error
	w, err := quiet.Parse(get("QUIET_HOURS"))
	if err != nil {
		errs = append(errs, fmt.Errorf("QUIET_HOURS: must be HH:MM-HH:MM, e.g. 21:00-08:00 (00:00-00:00 turns quiet hours off): %v", err))
	}
	c.QuietHours = w
	if v := get("MARKETING_REQUIRES_CONSENT"); v != "" {
		if c.RequireConsent, err = strconv.ParseBool(v); err != nil {
			errs = append(errs, errors.New("MARKETING_REQUIRES_CONSENT: must be true or false"))
		}
	}
	c.HelpText = strings.TrimSpace(get("HELP_TEXT"))
	if n := utf8.RuneCountInString(c.HelpText); n > segment.MaxChars {
		errs = append(errs, fmt.Errorf("HELP_TEXT: has %d characters, over Twilio's limit of %d", n, segment.MaxChars))
	}
	return c, errors.Join(errs...)
}
