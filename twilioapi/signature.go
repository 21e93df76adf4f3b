package twilioapi

import (
	"net/http"
	"net/url"
	"strings"

	"github.com/twilio/twilio-go/client"
)

// ValidSignature reports whether sig (the X-Twilio-Signature header) is
// Twilio's signature of a webhook POSTed to fullURL with form, using the
// account's auth token (webhooks are signed with it even under API-key auth).
func ValidSignature(authToken Secret, fullURL string, form url.Values, sig string) bool {
	if sig == "" || authToken == "" {
		return false
	}
	params := make(map[string]string, len(form))
	for k, v := range form {
		if len(v) > 0 {
			params[k] = v[0]
		}
	}
	v := client.NewRequestValidator(authToken.Reveal())
	return v.Validate(fullURL, params, sig)
}

// MaxWebhookBytes bounds a webhook's body.
const MaxWebhookBytes = 64 << 10

// VerifyWebhook returns middleware that lets through only POSTs signed by
// Twilio for publicURL + the request's path and query. Anything else gets 403
// and the wrapped handler never runs. The form is parsed (r.PostForm is set).
func VerifyWebhook(authToken Secret, publicURL string, next http.Handler) http.Handler {
	base := strings.TrimRight(publicURL, "/")
	return http.HandlerFunc(func(w http.ResponseWriter, r *http.Request) {
		r.Body = http.MaxBytesReader(w, r.Body, MaxWebhookBytes)
		if err := r.ParseForm(); err != nil {
			http.Error(w, "malformed form", http.StatusBadRequest)
			return
		}
		if base == "" || !ValidSignature(authToken, base+r.URL.RequestURI(), r.PostForm, r.Header.Get("X-Twilio-Signature")) {
			http.Error(w, "invalid or missing X-Twilio-Signature", http.StatusForbidden)
			return
		}
		next.ServeHTTP(w, r)
	})
}
