package httpapi_test

import (
	"net/http"
	"net/http/httptest"
	"net/url"
	"strings"
	"testing"

	"github.com/sbagenthub/twilio-worker/calls"
	"github.com/sbagenthub/twilio-worker/delivery"
	"github.com/sbagenthub/twilio-worker/httpapi"
	"github.com/sbagenthub/twilio-worker/internal/redistest"
	"github.com/sbagenthub/twilio-worker/optout"
	"github.com/sbagenthub/twilio-worker/tasks"
	"github.com/sbagenthub/twilio-worker/twiliosim"
)

// fuzzPublicURL is PUBLIC_URL in the webhook fuzz targets.
const fuzzPublicURL = "https://hooks.example.test"

// webhookServer is the real handler with every webhook route on: inbound
// (opt-outs), status callbacks for calls and messages.
func webhookServer(f *testing.F) http.Handler {
	f.Helper()
	rdb := redistest.Start(f).Client(f)
	s := &httpapi.Server{
		Redis: rdb, OptOuts: optout.NewStore(rdb), Calls: calls.NewStore(rdb),
		Tracker:   &tasks.Tracker{Store: delivery.NewStore(rdb)},
		AuthToken: token, PublicURL: fuzzPublicURL,
	}
	return s.Handler()
}

// fuzzWebhook posts body to path, signed as Twilio would sign it, and fails
// on a 5xx (a panic fails by itself).
func fuzzWebhook(t *testing.T, h http.Handler, path, body string) {
	form, _ := url.ParseQuery(body) // what parses is what the server sees and checks
	req := httptest.NewRequest(http.MethodPost, path, strings.NewReader(body))
	req.Header.Set("Content-Type", "application/x-www-form-urlencoded")
	req.Header.Set("X-Twilio-Signature", twiliosim.Sign(token, fuzzPublicURL+path, form))
	rec := httptest.NewRecorder()
	h.ServeHTTP(rec, req)
	if rec.Code >= 500 {
		t.Fatalf("POST %s %q: %d %s", path, body, rec.Code, rec.Body.String())
	}
}

func webhookSeeds(f *testing.F, seeds ...url.Values) {
	for _, v := range seeds {
		f.Add(v.Encode())
	}
	f.Add("")
	f.Add("Body=%ZZ")
	f.Add("From=%2B1415555&From=+&Body=stop&Body=start")
	f.Add(strings.Repeat("a=b&", 500))
	f.Add("MessageSid=SM1&MessageStatus=delivered&ErrorCode=-99999999999999999999")
	f.Add("CallSid=CA1&CallStatus=completed&CallDuration=NaN")
	f.Add("MessageSid=SM%00&SmsStatus=\xff\xfe")
}

func FuzzInboundWebhook(f *testing.F) {
	webhookSeeds(f,
		url.Values{"From": {"+14155551234"}, "To": {"+15005550006"}, "Body": {"STOP"}, "MessageSid": {"SM1"}},
		url.Values{"From": {"+14155551234"}, "Body": {" stopall "}, "OptOutType": {"STOP"}},
		url.Values{"From": {"not a number"}, "Body": {"HELP"}},
		url.Values{"From": {"+800 1234 5678"}, "Body": {"START"}, "OptOutType": {"bogus"}},
		url.Values{"Body": {"UNSTOP"}},
	)
	h := webhookServer(f)
	f.Fuzz(func(t *testing.T, body string) { fuzzWebhook(t, h, "/twilio/inbound", body) })
}

func FuzzStatusWebhook(f *testing.F) {
	webhookSeeds(f,
		url.Values{"MessageSid": {"SMdeadbeef"}, "MessageStatus": {"delivered"}},
		url.Values{"MessageSid": {"SMdeadbeef"}, "MessageStatus": {"undelivered"}, "ErrorCode": {"30003"}},
		url.Values{"MessageSid": {"SMunknown"}, "SmsStatus": {"whatever"}},
		url.Values{"CallSid": {"CAdeadbeef"}, "CallStatus": {"completed"}, "CallDuration": {"12"}},
		url.Values{"CallSid": {"CA1"}, "MessageSid": {"SM1"}, "CallStatus": {"ringing"}},
	)
	h := webhookServer(f)
	f.Fuzz(func(t *testing.T, body string) { fuzzWebhook(t, h, "/twilio/status", body) })
}
