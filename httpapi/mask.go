package httpapi

import (
	"bytes"
	"encoding/json"
	"strings"
	"unicode/utf8"

	"github.com/sbagenthub/twilio-worker/phone"
)

// numberKeys are JSON members whose whole value is a phone number.
var numberKeys = map[string]bool{"to": true, "from": true, "number": true, "phone": true, "callerId": true}

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
		return phone.MaskText(string(b))
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
		return phone.MaskText(v)
	case json.Number:
		if numberKeys[key] || digits(v.String()) >= 10 {
			return phone.Mask(v.String())
		}
		return v
	}
	return v
}
