package twilioapi_test

import (
	"net/http"
	"net/http/httptest"
	"net/url"
	"strings"
	"testing"

	"github.com/sbagenthub/twilio-worker/twilioapi"
	"github.com/sbagenthub/twilio-worker/twiliosim"
)

func TestVerifyWebhook(t *testing.T) {
	t.Parallel()
	const token = "0123456789abcdef0123456789abcdef"
	const public = "https://worker.example.com"
	ran := 0
	h := twilioapi.VerifyWebhook(token, public, http.HandlerFunc(func(w http.ResponseWriter, r *http.Request) {
		ran++
		if r.PostForm.Get("Body") != "STOP" {
			t.Errorf("form not parsed: %v", r.PostForm)
		}
	}))
	form := url.Values{"From": {"+14155551234"}, "Body": {"STOP"}, "MessageSid": {"SM1"}}
	// The simulator signs as Twilio does: an independent implementation.
	good := twiliosim.Sign(token, public+"/twilio/inbound", form)
	tests := []struct {
		name, sig, path string
		want            int
	}{
		{"signed", good, "/twilio/inbound", 200},
		{"missing", "", "/twilio/inbound", 403},
		{"forged", "AAAA" + good[4:], "/twilio/inbound", 403},
		{"other path", good, "/twilio/status", 403},
	}
	for _, tt := range tests {
		req := httptest.NewRequest("POST", tt.path, strings.NewReader(form.Encode()))
		req.Header.Set("Content-Type", "application/x-www-form-urlencoded")
		if tt.sig != "" {
			req.Header.Set("X-Twilio-Signature", tt.sig)
		}
		rec := httptest.NewRecorder()
		h.ServeHTTP(rec, req)
		if rec.Code != tt.want {
			t.Errorf("%s: status %d, want %d", tt.name, rec.Code, tt.want)
		}
	}
	if ran != 1 {
		t.Fatalf("handler ran %d times, want only for the signed request", ran)
	}
	if twilioapi.ValidSignature(token, public+"/twilio/inbound", form, "") {
		t.Fatal("empty signature accepted")
	}
}
