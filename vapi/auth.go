package vapi

import (
	"crypto/hmac"
	"crypto/sha256"
	"crypto/subtle"
	"encoding/hex"
	"errors"
	"net/http"
	"strconv"
	"strings"
	"time"

	"github.com/sbagenthub/twilio-worker/twilioapi"
)

// Headers VAPI authenticates with.
const (
	HeaderSecret    = "X-Vapi-Secret" // legacy: the shared secret itself
	HeaderSignature = "X-Signature"   // HMAC: hex HMAC-SHA256 of "{timestamp}.{body}"
	HeaderTimestamp = "X-Timestamp"
)

// MaxSkew is how far an HMAC timestamp may be from now, either way.
const MaxSkew = 5 * time.Minute

// ErrUnauthorized is the error of a request without valid authentication.
var ErrUnauthorized = errors.New("missing or invalid VAPI authentication")

// Auth checks that a server message comes from VAPI: Token
// (VAPI_SERVER_TOKEN) as "Authorization: Bearer <token>" or as
// X-Vapi-Secret, or an HMAC signature with HMACSecret (VAPI_HMAC_SECRET).
// When both are set either one suffices. Comparisons take constant time.
type Auth struct {
	Token      twilioapi.Secret
	HMACSecret twilioapi.Secret
	Now        func() time.Time // nil: time.Now
}

// Enabled reports whether any authentication is configured; without it the
// Server URL refuses every request.
func (a Auth) Enabled() bool { return a.Token != "" || a.HMACSecret != "" }

// Check returns nil when h and body carry valid authentication, else
// ErrUnauthorized (or an error saying why the signature's timestamp was
// refused, which wraps it).
func (a Auth) Check(h http.Header, body []byte) error {
	if a.Token != "" {
		token := a.Token.Reveal()
		if bearer, ok := strings.CutPrefix(h.Get("Authorization"), "Bearer "); ok && equal(strings.TrimSpace(bearer), token) {
			return nil
		}
		if s := h.Get(HeaderSecret); s != "" && equal(s, token) {
			return nil
		}
	}
	if a.HMACSecret != "" && h.Get(HeaderSignature) != "" {
		return a.checkSignature(h, body)
	}
	return ErrUnauthorized
}

func (a Auth) checkSignature(h http.Header, body []byte) error {
	ts := strings.TrimSpace(h.Get(HeaderTimestamp))
	at, ok := parseTimestamp(ts)
	if !ok {
		return ErrUnauthorized
	}
	now := time.Now()
	if a.Now != nil {
		now = a.Now()
	}
	if d := now.Sub(at); d > MaxSkew || d < -MaxSkew {
		return errors.Join(ErrUnauthorized, errors.New("signature timestamp is more than 5 minutes from now"))
	}
	sig := strings.TrimPrefix(strings.TrimSpace(h.Get(HeaderSignature)), "sha256=")
	want := Sign(a.HMACSecret.Reveal(), ts, body)
	if !equal(strings.ToLower(sig), want) {
		return ErrUnauthorized
	}
	return nil
}

// parseTimestamp reads x-timestamp: Unix seconds or milliseconds (VAPI's
// documentation does not say which; a value past the year 33658 in seconds
// is taken as milliseconds).
func parseTimestamp(s string) (time.Time, bool) {
	n, err := strconv.ParseInt(s, 10, 64)
	if err != nil || n <= 0 {
		return time.Time{}, false
	}
	if n > 1e12 {
		return time.UnixMilli(n), true
	}
	return time.Unix(n, 0), true
}

// Sign returns the hex HMAC-SHA256 of "{timestamp}.{body}" with secret, as
// VAPI's HMAC credential sends it in X-Signature.
func Sign(secret, timestamp string, body []byte) string {
	m := hmac.New(sha256.New, []byte(secret))
	m.Write([]byte(timestamp))
	m.Write([]byte("."))
	m.Write(body)
	return hex.EncodeToString(m.Sum(nil))
}

func equal(a, b string) bool { return subtle.ConstantTimeCompare([]byte(a), []byte(b)) == 1 }
