package httpapi

import (
	"bytes"
	"encoding/json"
	"strings"
	"unicode/utf8"

	"github.com/sbagenthub/twilio-worker/internal/redact"
	"github.com/sbagenthub/twilio-worker/phone"
)

// numberKeys are JSON members whose whole value is a phone number.
var numberKeys = map[string]bool{"to": true, "from": true, "number": true, "phone": true, "callerId": true}

// textKeys are JSON members whose value is what a message says or a call
// speaks (a 2FA code, say): shown only as their length.
var textKeys = map[string]bool{"body": true, "say": true, "twiml": true, "Body": true}

// MaskJSON masks every string in a JSON document as MaskPayload masks a
// payload's, and returns the document again; ok is false when b is not
// JSON. The dashboard's API answers go through it, so task ids (campaign
// tasks are {campaign}:{E.164}), error messages and payloads are masked
// whatever asynqmon puts them in.
func MaskJSON(b []byte) (out []byte, ok bool) {
	dec := json.NewDecoder(bytes.NewReader(b))
	dec.UseNumber()
	var v any
	if err := dec.Decode(&v); err != nil || dec.More() {
		return nil, false
	}
	var buf bytes.Buffer
	enc := json.NewEncoder(&buf)
	enc.SetEscapeHTML(false)
	if err := enc.Encode(maskValue("", v)); err != nil {
		return nil, false
	}
	return buf.Bytes(), true
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
// personal data hidden: in JSON, every value of a member named like a number
// ("to", "from", …) masked, bodies, say text and TwiML replaced by their
// length, URLs without userinfo and query, and every number-like run in
// other strings masked; other bytes as text, masked the same way.
func MaskPayload(_ string, b []byte) string {
	dec := json.NewDecoder(bytes.NewReader(b))
	dec.UseNumber()
	var v any
	if err := dec.Decode(&v); err != nil || dec.More() {
		if !utf8.Valid(b) {
			return "non-printable bytes"
		}
		return redact.Text(string(b))
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
		if textKeys[key] {
			return redact.Body(v)
		}
		return redact.Text(v)
	case json.Number:
		if numberKeys[key] || digits(v.String()) >= 10 {
			return phone.Mask(v.String())
		}
		return v
	}
	return v
}
