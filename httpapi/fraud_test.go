package httpapi

import (
	"encoding/json"
	"net/http"
	"strings"
	"testing"

	"github.com/sbagenthub/twilio-worker/fraud"
	"github.com/sbagenthub/twilio-worker/tasks"
)

func newFraudServer(t *testing.T, cfg fraud.Config) *apiServer {
	t.Helper()
	return newAPIServer(t, func(s *Server) { s.Guard = fraud.New(s.Redis, cfg) })
}

func TestActionsRefusedByTheGuard(t *testing.T) {
	t.Parallel()
	s := newFraudServer(t, fraud.Config{Allowed: []string{"US", "GB"}})
	for _, c := range []struct{ body, want string }{
		{`{"action":"sendSMS","arguments":{"to":"+4915123456789","body":"hi"}}`, "country DE is not in ALLOWED_COUNTRIES"},
		{`{"action":"sendSMS","arguments":{"to":"+2348031234567","body":"hi"}}`, "country NG is blocked"},
		{`{"action":"sendSMS","arguments":{"to":"+19002345678","body":"hi"}}`, "premium-rate number in US refused"},
	} {
		r := post(t, s.url+"/v1/actions", c.body, nil)
		e := r.apiErr(t)
		if r.status != http.StatusUnprocessableEntity || e.Field != "to" || !strings.Contains(e.Message, c.want) {
			t.Fatalf("%s: %d %+v", c.body, r.status, e)
		}
	}
	// What is accepted carries its source: the agent's.
	r := post(t, s.url+"/v1/actions", `{"action":"sendSMS","arguments":{"to":"+447400123456","body":"hi"}}`, nil)
	if r.status != http.StatusAccepted {
		t.Fatalf("GB: %d %s", r.status, r.body)
	}
	info, err := s.Inspector.GetTaskInfo("default", r.json(t)["taskId"].(string))
	if err != nil {
		t.Fatal(err)
	}
	var p tasks.SMSPayload
	if err := json.Unmarshal(info.Payload, &p); err != nil || p.Source != tasks.SourceAgent {
		t.Fatalf("payload %s: source %q", info.Payload, p.Source)
	}
	// A campaign counts a refused recipient as invalid and queues the rest, as the operator's.
	r = post(t, s.url+"/v1/campaigns", `{"campaign":"c1","body":"hi","recipients":["+14155550100","+4915123456789"]}`, nil)
	v := r.json(t)
	if r.status != http.StatusAccepted || v["enqueued"] != float64(1) || v["invalidCount"] != float64(1) ||
		!strings.Contains(string(r.body), "to: country DE is not in ALLOWED_COUNTRIES") {
		t.Fatalf("campaign: %d %s", r.status, r.body)
	}
	info, err = s.Inspector.GetTaskInfo("bulk", "c1:+14155550100")
	if err != nil {
		t.Fatal(err)
	}
	if err := json.Unmarshal(info.Payload, &p); err != nil || p.Source != tasks.SourceOperator {
		t.Fatalf("campaign payload %s: source %q", info.Payload, p.Source)
	}
}

func TestFraudRoutes(t *testing.T) {
	t.Parallel()
	s := newFraudServer(t, fraud.Config{})
	if r := do(t, "PUT", s.url+"/v1/fraud/safe/+1%20415%20555", nil, nil); r.status != 200 || !strings.Contains(string(r.body), `{"added":true,"entry":"+1415555"}`) {
		t.Fatalf("PUT safe: %d %s", r.status, r.body)
	}
	if r := do(t, "PUT", s.url+"/v1/fraud/safe/1415", nil, nil); r.status != 422 || r.apiErr(t).Field != "entry" {
		t.Fatalf("PUT safe without +: %d %s", r.status, r.body)
	}
	if r := do(t, "GET", s.url+"/v1/fraud/safe", nil, nil); r.status != 200 || !strings.Contains(string(r.body), `"safe":["+1415555"]`) {
		t.Fatalf("GET safe: %d %s", r.status, r.body)
	}
	if r := do(t, "DELETE", s.url+"/v1/fraud/safe/+1415555", nil, nil); r.status != 200 || !strings.Contains(string(r.body), `"removed":true`) {
		t.Fatalf("DELETE safe: %d %s", r.status, r.body)
	}
	if r := do(t, "GET", s.url+"/v1/fraud/blocks", nil, nil); r.status != 200 || !strings.Contains(string(r.body), `"blocks":[]`) {
		t.Fatalf("GET blocks: %d %s", r.status, r.body)
	}
	if r := do(t, "DELETE", s.url+"/v1/fraud/blocks/+1415555", nil, nil); r.status != 404 {
		t.Fatalf("DELETE a missing block: %d %s", r.status, r.body)
	}
	if r := do(t, "DELETE", s.url+"/v1/fraud/blocks/abc", nil, nil); r.status != 422 || r.apiErr(t).Field != "prefix" {
		t.Fatalf("DELETE a bad prefix: %d %s", r.status, r.body)
	}
}
