package httpapi

import (
	"bytes"
	"encoding/json"
	"regexp"
	"strings"
	"unicode"
	"unicode/utf8"

	"github.com/sbagenthub/twilio-worker/phone"
)

// numberLike matches what may be a phone number in free text (as twilioapi's
// scrub does): seven or more digits, possibly with +, spaces, dashes, dots
// and parentheses.
var (
	numberLike = regexp.MustCompile(`\+?\d[\d \-().]{5,}\d`)
	isoDate    = regexp.MustCompile(`^\d{4}-\d{2}-\d{2}`)
)

// numberKeys are JSON members whose whole value is a phone number.
var numberKeys = map[string]bool{"to": true, "from": true, "number": true, "phone": true, "callerId": true}

// MaskNumbers hides phone numbers in free text: a run of at least seven
// digits (with the usual separators) that is not part of a longer word, such
// as a SID, and is not a date, becomes phone.Mask of itself (+141***234).
// Six-digit verification codes are left alone.
func MaskNumbers(s string) string {
	idx := numberLike.FindAllStringIndex(s, -1)
	if idx == nil {
		return s
	}
	var b strings.Builder
	last := 0
	for _, m := range idx {
		start, end := m[0], m[1]
		match := s[start:end]
		if wordChar(lastRune(s[:start])) || wordChar(firstRune(s[end:])) || isoDate.MatchString(match) || digits(match) < 7 {
			continue
		}
		b.WriteString(s[last:start])
		b.WriteString(phone.Mask(match))
		last = end
	}
	b.WriteString(s[last:])
	return b.String()
}

func wordChar(r rune) bool { return r == '_' || unicode.IsLetter(r) || unicode.IsDigit(r) }

func firstRune(s string) rune {
	r, _ := utf8.DecodeRuneInString(s)
	return r
}

func lastRune(s string) rune {
	r, _ := utf8.DecodeLastRuneInString(s)
	return r
}

func digits(s string) int {
	n := 0
	for _, r := range s {
		if r >= '0' && r <= '9' {
			n++
		}
	}
	return n
}

// MaskPayload renders a task's payload or result for the dashboard with
// phone numbers masked: in JSON, every value of a member named like a number
// ("to", "from", …) and every number-like run in other strings; other
// bytes as text with number-like runs masked.
func MaskPayload(_ string, b []byte) string {
	dec := json.NewDecoder(bytes.NewReader(b))
	dec.UseNumber()
	var v any
	if err := dec.Decode(&v); err != nil || dec.More() {
		if !utf8.Valid(b) {
			return "non-printable bytes"
		}
		return MaskNumbers(string(b))
	}
	var out bytes.Buffer
	enc := json.NewEncoder(&out)
	enc.SetEscapeHTML(false)
	if err := enc.Encode(maskValue("", v)); err != nil {
		return "unprintable payload"
	}
	return strings.TrimSuffix(out.String(), "\n")
}

func maskValue(key string, v any) any {
	switch v := v.(type) {
	case map[string]any:
		for k, x := range v {
			v[k] = maskValue(k, x)
		}
		return v
	case []any:
		for i, x := range v {
			v[i] = maskValue(key, x)
		}
		return v
	case string:
		if numberKeys[key] && strings.ContainsAny(v, "0123456789") {
			return phone.Mask(v)
		}
		return MaskNumbers(v)
	case json.Number:
		if numberKeys[key] || digits(v.String()) >= 10 {
			return phone.Mask(v.String())
		}
		return v
	}
	return v
}
