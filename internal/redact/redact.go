// Package redact hides personal data and credentials in what the worker
// shows to people: its logs, `enqueue log` and the dashboard. Phone numbers
// are masked (phone.MaskText), URLs lose their userinfo and query, and
// message bodies and spoken text are replaced by their length.
package redact

import (
	"fmt"
	"net/url"
	"regexp"
	"strings"
	"unicode/utf8"

	"github.com/sbagenthub/twilio-worker/phone"
)

// urlLike finds absolute URLs in free text.
var urlLike = regexp.MustCompile(`[A-Za-z][A-Za-z0-9+.\-]*://[^\s"'<>]+`)

// URL returns u without what may be a secret or personal: the userinfo
// (user:password@) and the query and fragment are replaced by REDACTED. A
// value that does not parse as a URL is masked as free text.
func URL(u string) string {
	p, err := url.Parse(u)
	if err != nil || p.Scheme == "" || p.Host == "" {
		return phone.MaskText(u)
	}
	changed := false
	if p.User != nil {
		p.User = url.User("REDACTED")
		changed = true
	}
	if p.RawQuery != "" {
		p.RawQuery = "REDACTED"
		changed = true
	}
	if p.Fragment != "" {
		p.Fragment, p.RawFragment = "REDACTED", ""
		changed = true
	}
	if !changed {
		return phone.MaskText(u)
	}
	return phone.MaskText(p.String())
}

// Text masks free text: phone numbers, and the userinfo and query of any
// URL in it.
func Text(s string) string {
	if strings.Contains(s, "://") {
		s = urlLike.ReplaceAllStringFunc(s, URL)
	}
	return phone.MaskText(s)
}

// Body replaces message text (an SMS body, a call's say text, TwiML) by its
// length: it may hold a verification code or anything else personal.
func Body(s string) string {
	if s == "" {
		return ""
	}
	return fmt.Sprintf("[redacted, %d characters]", utf8.RuneCountInString(s))
}
