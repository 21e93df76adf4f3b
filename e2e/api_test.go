package e2e

import (
	"encoding/json"
	"io"
	"net/http"
	"strings"
	"testing"
	"time"
)

const apiToken = "e2e-api-token-0123456789"

type httpResult struct {
	status int
	body   string
	header http.Header
}

func (r httpResult) json(t *testing.T) map[string]any {
	t.Helper()
	var v map[string]any
	if err := json.Unmarshal([]byte(r.body), &v); err != nil {
		t.Fatalf("status %d, body %q is not a JSON object", r.status, r.body)
	}
	return v
}

func call(t *testing.T, method, url, body string, header map[string]string) httpResult {
	t.Helper()
	req, err := http.NewRequest(method, url, strings.NewReader(body))
	if err != nil {
		t.Fatal(err)
	}
	for k, v := range header {
		req.Header.Set(k, v)
	}
	c := &http.Client{Timeout: 60 * time.Second} // longer than ?wait=30s
	resp, err := c.Do(req)
	if err != nil {
		t.Fatal(err)
	}
	defer resp.Body.Close()
	b, _ := io.ReadAll(resp.Body)
	return httpResult{resp.StatusCode, string(b), resp.Header}
}

// TestAgentHubActionsOverHTTP: the seed's actions through POST /v1/actions
// of the real worker, against twiliosim.
func TestAgentHubActionsOverHTTP(t *testing.T) {
	t.Parallel()
	s := newStack(t, nil, "API_TOKEN="+apiToken)
	base := "http://" + s.http
	auth := map[string]string{"Authorization": "Bearer " + apiToken}
	const seedSMS = `{"action":"sendSMS","arguments":{"to":"+14155551234","body":"Your verification code is 123456"}}`

	// ?wait=30s (the longest; a backstop): the seed's response shape, with the SID Twilio gave.
	r := call(t, "POST", base+"/v1/actions?wait=30s", seedSMS, auth)
	if r.status != 200 {
		t.Fatalf("sendSMS with wait: %d %s", r.status, r.body)
	}
	res := r.json(t)
	msgs := simMessages(t, s.simURL)
	if len(res) != 3 || len(msgs) != 1 || res["messageSid"] != msgs[0].Sid || res["status"] != "queued" {
		t.Fatalf("answer %v, simulator %+v; want {messageSid,status,dateCreated} of the one message", res, msgs)
	}
	if _, err := time.Parse(time.RFC3339, res["dateCreated"].(string)); err != nil {
		t.Fatalf("dateCreated %v", res["dateCreated"])
	}
	if m := msgs[0]; m.To != "+14155551234" || m.Body != "Your verification code is 123456" || m.From != "+15005550006" {
		t.Fatalf("simulator got %+v", m)
	}

	// Without wait: 202 and a task to follow; with an Idempotency-Key a
	// retried request is the same task, and one message is sent.
	hdr := map[string]string{"Authorization": auth["Authorization"], "Idempotency-Key": "hub-order-42"}
	body := `{"action":"sendSMS","arguments":{"to":"+14155550000","body":"Order 42 shipped","priority":"critical"}}`
	r = call(t, "POST", base+"/v1/actions", body, hdr)
	if v := r.json(t); r.status != 202 || v["taskId"] != "hub-order-42" || v["queue"] != "critical" {
		t.Fatalf("sendSMS: %d %s", r.status, r.body)
	}
	r = call(t, "POST", base+"/v1/actions?wait=30s", body, hdr)
	if v := r.json(t); r.status != 200 || v["messageSid"] == nil {
		t.Fatalf("retried with wait: %d %s", r.status, r.body)
	}
	r = call(t, "POST", base+"/v1/actions", body, hdr)
	if v := r.json(t); r.status != 200 || v["taskId"] != "hub-order-42" || v["state"] != "completed" {
		t.Fatalf("retried: %d %s", r.status, r.body)
	}
	if n := len(simMessages(t, s.simURL)); n != 2 {
		t.Fatalf("simulator has %d messages, want 2: a retried request sent again", n)
	}
	r = call(t, "GET", base+"/v1/tasks/hub-order-42", "", auth)
	var st status
	if err := json.Unmarshal([]byte(r.body), &st); err != nil || r.status != 200 || st.State != "completed" || st.Queue != "critical" || !strings.Contains(string(st.Result), "messageSid") {
		t.Fatalf("GET task: %d %s", r.status, r.body)
	}

	// A permanent failure within the wait: 502 with Twilio's reason, masked.
	r = call(t, "POST", base+"/v1/actions?wait=30s", `{"action":"sendSMS","arguments":{"to":"+15005550001","body":"hi"}}`, auth)
	if v := r.json(t); r.status != 502 || !strings.Contains(r.body, "21211") || strings.Contains(r.body, "5005550001") || v["taskId"] == nil {
		t.Fatalf("invalid recipient: %d %s", r.status, r.body)
	}

	// The seed's makeCall, then getCallStatus for the call it placed.
	r = call(t, "POST", base+"/v1/actions", `{"action":"makeCall","arguments":{"to":"+14155551234","url":"https://your-server.com/twiml/welcome"}}`, auth)
	if v := r.json(t); r.status != 202 || v["taskId"] == nil {
		t.Fatalf("makeCall: %d %s", r.status, r.body)
	}
	callTask := waitStatus(t, s.env, r.json(t)["taskId"].(string))
	var placed struct{ CallSid string }
	if err := json.Unmarshal(callTask.Result, &placed); err != nil || !strings.HasPrefix(placed.CallSid, "CA") {
		t.Fatalf("call:make result %s", callTask.Result)
	}
	r = call(t, "POST", base+"/v1/actions", `{"action":"getCallStatus","arguments":{"callSid":"`+placed.CallSid+`"}}`, auth)
	if v := r.json(t); r.status != 200 || v["callSid"] != placed.CallSid || v["to"] != "+14155551234" || v["status"] == "" {
		t.Fatalf("getCallStatus: %d %s", r.status, r.body)
	}
	r = call(t, "POST", base+"/v1/actions", `{"action":"getCallStatus","arguments":{"callSid":"CA0123456789abcdef0123456789abcdef"}}`, auth)
	if r.status != 404 {
		t.Fatalf("getCallStatus of an unknown call: %d %s", r.status, r.body)
	}

	// Refused requests: the field is named and the worker lives on.
	for _, c := range []struct {
		body   string
		header map[string]string
		status int
		field  string
	}{
		{seedSMS, nil, 401, `"field":"Authorization"`},
		{`{"action":"sendSMS","arguments":{"to":"+1415","body":"hi"}}`, auth, 422, `"field":"to"`},
		{`{"action":"sendSMS","arguments":{"to":"+14155551234"}}`, auth, 422, `"field":"body"`},
		{`{"action":"sendFax"}`, auth, 422, `"field":"action"`},
		{`{"action":`, auth, 400, `"code":"malformed_json"`},
		{`{"action":"sendSMS","arguments":{"to":"+14155551234","body":"` + strings.Repeat("x", 65<<10) + `"}}`, auth, 413, `"code":"too_large"`},
	} {
		r := call(t, "POST", base+"/v1/actions", c.body, c.header)
		if r.status != c.status || !strings.Contains(r.body, c.field) {
			t.Fatalf("%.60s: %d %s; want %d with %s", c.body, r.status, r.body, c.status, c.field)
		}
	}
	if r := call(t, "GET", base+"/readyz", "", nil); r.status != 200 {
		t.Fatalf("readyz: %d %s", r.status, r.body)
	}
	if n := len(simMessages(t, s.simURL)); n != 2 {
		t.Fatalf("simulator has %d messages, want 2 (refused ones are not kept)", n)
	}
	if strings.Contains(s.worker.output(), "4155551234") || strings.Contains(s.worker.output(), apiToken) {
		t.Fatal("the worker logged a full phone number or the API token")
	}
}

// TestMetricsAndDashboard: /metrics has DESIGN.md's metrics, asynq's queue
// metrics and Go's; /monitoring/ serves the dashboard.
func TestMetricsAndDashboard(t *testing.T) {
	t.Parallel()
	s := newStack(t, nil)
	base := "http://" + s.http
	r := call(t, "POST", base+"/v1/actions?wait=30s", `{"action":"sendSMS","arguments":{"to":"+14155551234","body":"hi"}}`, nil)
	if r.status != 200 {
		t.Fatalf("sendSMS (open /v1 on loopback): %d %s", r.status, r.body)
	}
	r = call(t, "GET", base+"/metrics", "", nil)
	for _, name := range []string{
		"twilioworker_task_runs_total{type=\"sms:send\"} 1", "twilioworker_sms_sent_total 1",
		"twilioworker_sms_skipped_total{reason=\"optout\"} 0", "twilioworker_twilio_requests_total{",
		"twilioworker_twilio_request_duration_seconds_bucket{", "twilioworker_ratelimit_deferred_total{scope=\"sender\"} 0",
		"twilioworker_calls_total{status=\"completed\"} 0",
		"asynq_queue_size{queue=\"default\"}", "asynq_tasks_enqueued_total{queue=\"default\",state=\"pending\"}", "asynq_queue_latency_seconds{",
		"asynq_tasks_processed_total{", "asynq_tasks_failed_total{", "asynq_queue_paused_total{", "asynq_queue_memory_usage_approx_bytes{",
		"go_goroutines ",
	} {
		if !strings.Contains(r.body, name) {
			t.Errorf("/metrics lacks %s", name)
		}
	}
	r = call(t, "GET", base+"/monitoring/", "", nil)
	if r.status != 200 || !strings.Contains(r.body, "/monitoring") {
		t.Fatalf("dashboard: %d %.300s", r.status, r.body)
	}
	r = call(t, "GET", base+"/monitoring/api/queues", "", nil)
	if r.status != 200 || !strings.Contains(r.body, `"queue":"default"`) {
		t.Fatalf("dashboard API: %d %.300s", r.status, r.body)
	}
}
