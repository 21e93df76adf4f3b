package httpapi

import (
	"bytes"
	"context"
	"encoding/json"
	"io"
	"log/slog"
	"net/http"
	"net/http/httptest"
	"strings"
	"testing"

	"github.com/hibiken/asynq"

	"github.com/sbagenthub/twilio-worker/calls"
	"github.com/sbagenthub/twilio-worker/internal/redistest"
	"github.com/sbagenthub/twilio-worker/producer"
	"github.com/sbagenthub/twilio-worker/tasks"
)

// The seed's three examples (docs: Twilio Integration, "Available Actions").
const (
	seedSendSMS       = `{"action":"sendSMS","arguments":{"to":"+14155551234","body":"Your verification code is 123456"}}`
	seedMakeCall      = `{"action":"makeCall","arguments":{"to":"+14155551234","url":"https://your-server.com/twiml/welcome"}}`
	seedGetCallStatus = `{"action":"getCallStatus","arguments":{"callSid":"CA0123456789abcdef0123456789abcdef"}}`
)

// The error codes of the answers.
const (
	CodeMalformedJSON = producer.CodeMalformedJSON
	CodeUnknownAction = producer.CodeUnknownAction
	CodeInvalidField  = producer.CodeInvalidField
)

// apiServer is the HTTP API on a private redis-server, with no task server
// behind it: tasks stay pending, so what the API queued can be inspected.
type apiServer struct {
	*Server
	redis *redistest.Server
	url   string
}

func newAPIServer(t *testing.T, configure func(*Server)) *apiServer {
	t.Helper()
	r := redistest.Start(t)
	rdb := r.Client(t)
	s := &Server{Redis: rdb, Client: asynq.NewClientFromRedisClient(rdb), Inspector: asynq.NewInspectorFromRedisClient(rdb)}
	if configure != nil {
		configure(s)
	}
	ts := httptest.NewServer(s.Handler())
	t.Cleanup(ts.Close)
	return &apiServer{Server: s, redis: r, url: ts.URL}
}

type response struct {
	status int
	header http.Header
	body   []byte
}

func (r response) json(t *testing.T) map[string]any {
	t.Helper()
	var v map[string]any
	if err := json.Unmarshal(r.body, &v); err != nil {
		t.Fatalf("body %q is not a JSON object: %v", r.body, err)
	}
	return v
}

// apiErr returns the {"error":{…}} member, failing the test when absent.
func (r response) apiErr(t *testing.T) apiError {
	t.Helper()
	var v struct{ Error *apiError }
	if err := json.Unmarshal(r.body, &v); err != nil || v.Error == nil {
		t.Fatalf("status %d, body %q: not the error shape", r.status, r.body)
	}
	if ct := r.header.Get("Content-Type"); ct != "application/json" {
		t.Fatalf("error answered as %q", ct)
	}
	return *v.Error
}

func do(t *testing.T, method, url string, body io.Reader, header map[string]string) response {
	t.Helper()
	req, err := http.NewRequest(method, url, body)
	if err != nil {
		t.Fatal(err)
	}
	for k, v := range header {
		req.Header.Set(k, v)
	}
	resp, err := http.DefaultClient.Do(req)
	if err != nil {
		t.Fatal(err)
	}
	defer resp.Body.Close()
	b, _ := io.ReadAll(resp.Body)
	return response{resp.StatusCode, resp.Header, b}
}

func post(t *testing.T, url, body string, header map[string]string) response {
	t.Helper()
	return do(t, http.MethodPost, url, strings.NewReader(body), header)
}

func TestSendSMSActionIsQueued(t *testing.T) {
	t.Parallel()
	s := newAPIServer(t, nil)
	r := post(t, s.url+"/v1/actions", seedSendSMS, nil)
	if r.status != http.StatusAccepted {
		t.Fatalf("status %d %s", r.status, r.body)
	}
	v := r.json(t)
	id, _ := v["taskId"].(string)
	if id == "" || v["queue"] != "default" || v["state"] != "pending" || len(v) != 3 {
		t.Fatalf("answer %v, want {taskId, queue: default, state: pending}", v)
	}
	if loc := r.header.Get("Location"); loc != "/v1/tasks/"+id {
		t.Fatalf("Location %q", loc)
	}
	info, err := s.Inspector.GetTaskInfo("default", id)
	if err != nil {
		t.Fatal(err)
	}
	var p tasks.SMSPayload
	if err := json.Unmarshal(info.Payload, &p); err != nil || info.Type != tasks.TypeSendSMS || p.To != "+14155551234" || p.Body != "Your verification code is 123456" {
		t.Fatalf("queued %s %s", info.Type, info.Payload)
	}

	st := do(t, http.MethodGet, s.url+"/v1/tasks/"+id, nil, nil)
	var status tasks.Status
	if err := json.Unmarshal(st.body, &status); st.status != 200 || err != nil || status.TaskID != id || status.State != "pending" || status.Type != "sms:send" {
		t.Fatalf("GET task: %d %s", st.status, st.body)
	}

	// ?wait with no worker running: the result cannot arrive, so the answer
	// is the same 202 as without wait.
	r = post(t, s.url+"/v1/actions?wait=30ms", seedSendSMS, nil)
	if v := r.json(t); r.status != http.StatusAccepted || v["state"] != "pending" {
		t.Fatalf("wait without a worker: %d %s", r.status, r.body)
	}
}

func TestPriorityPicksTheQueue(t *testing.T) {
	t.Parallel()
	s := newAPIServer(t, nil)
	for _, q := range []string{"critical", "default", "bulk"} {
		body := `{"action":"sendSMS","arguments":{"to":"+14155551234","body":"hi","priority":"` + q + `"}}`
		r := post(t, s.url+"/v1/actions", body, nil)
		if v := r.json(t); r.status != 202 || v["queue"] != q {
			t.Fatalf("priority %s: %d %s", q, r.status, r.body)
		}
		if n, _ := s.Inspector.GetQueueInfo(q); n == nil || n.Pending != 1 {
			t.Fatalf("queue %s: %+v", q, n)
		}
	}
}

func TestIdempotencyKeyReturnsTheSameTask(t *testing.T) {
	t.Parallel()
	s := newAPIServer(t, nil)
	h := map[string]string{"Idempotency-Key": "order-42-shipped"}
	first := post(t, s.url+"/v1/actions", seedSendSMS, h)
	if first.status != 202 || first.json(t)["taskId"] != "order-42-shipped" {
		t.Fatalf("first: %d %s", first.status, first.body)
	}
	// Retried, also with another priority: the same task, 200, nothing new queued.
	for _, body := range []string{seedSendSMS, strings.Replace(seedSendSMS, `"to"`, `"priority":"critical","to"`, 1)} {
		again := post(t, s.url+"/v1/actions", body, h)
		if v := again.json(t); again.status != 200 || v["taskId"] != "order-42-shipped" || v["queue"] != "default" {
			t.Fatalf("retry: %d %s", again.status, again.body)
		}
	}
	for _, q := range []string{"critical", "default"} {
		if info, err := s.Inspector.GetQueueInfo(q); err == nil && info.Size > 1 || (q == "critical" && err == nil && info.Size != 0) {
			t.Fatalf("queue %s holds %d tasks; a retried request queued another", q, info.Size)
		}
	}
	bad := post(t, s.url+"/v1/actions", seedSendSMS, map[string]string{"Idempotency-Key": "has space"})
	if e := bad.apiErr(t); bad.status != 422 || e.Field != "Idempotency-Key" {
		t.Fatalf("bad key: %d %+v", bad.status, e)
	}
}

// TestMalformedRequests: every bad request gets its 4xx in the error shape,
// naming the field when one is at fault; none crashes anything.
func TestMalformedRequests(t *testing.T) {
	t.Parallel()
	s := newAPIServer(t, func(s *Server) { s.APIToken = "t0ken-for-tests" })
	auth := map[string]string{"Authorization": "Bearer t0ken-for-tests"}
	sms := func(args string) string { return `{"action":"sendSMS","arguments":{` + args + `}}` }
	tests := []struct {
		name, method, path, body string
		header                   map[string]string
		status                   int
		code, field              string
	}{
		{"no token", "POST", "/v1/actions", seedSendSMS, map[string]string{}, 401, "unauthorized", "Authorization"},
		{"wrong token", "POST", "/v1/actions", seedSendSMS, map[string]string{"Authorization": "Bearer nope"}, 401, "unauthorized", "Authorization"},
		{"basic instead of bearer", "POST", "/v1/actions", seedSendSMS, map[string]string{"Authorization": "Basic dDBrZW4tZm9yLXRlc3Rz"}, 401, "unauthorized", "Authorization"},
		{"token prefix", "POST", "/v1/actions", seedSendSMS, map[string]string{"Authorization": "Bearer t0ken"}, 401, "unauthorized", "Authorization"},
		{"no token on GET task", "GET", "/v1/tasks/x", "", map[string]string{}, 401, "unauthorized", "Authorization"},
		{"empty body", "POST", "/v1/actions", "", nil, 400, CodeMalformedJSON, ""},
		{"not JSON", "POST", "/v1/actions", "action=sendSMS", nil, 400, CodeMalformedJSON, ""},
		{"truncated", "POST", "/v1/actions", seedSendSMS[:30], nil, 400, CodeMalformedJSON, ""},
		{"array", "POST", "/v1/actions", "[" + seedSendSMS + "]", nil, 400, CodeMalformedJSON, ""},
		{"unknown action", "POST", "/v1/actions", `{"action":"sendFax","arguments":{}}`, nil, 422, CodeUnknownAction, "action"},
		{"no action", "POST", "/v1/actions", `{"arguments":{}}`, nil, 422, CodeInvalidField, "action"},
		{"no arguments", "POST", "/v1/actions", `{"action":"sendSMS"}`, nil, 422, CodeInvalidField, "arguments"},
		{"no to", "POST", "/v1/actions", sms(`"body":"hi"`), nil, 422, CodeInvalidField, "to"},
		{"short to", "POST", "/v1/actions", sms(`"to":"+1415","body":"hi"`), nil, 422, CodeInvalidField, "to"},
		{"letters in to", "POST", "/v1/actions", sms(`"to":"+1 415 CALL NOW","body":"hi"`), nil, 422, CodeInvalidField, "to"},
		{"national to", "POST", "/v1/actions", sms(`"to":"(415) 555-1234","body":"hi"`), nil, 422, CodeInvalidField, "to"},
		{"bad from", "POST", "/v1/actions", sms(`"to":"+14155551234","from":"+1","body":"hi"`), nil, 422, CodeInvalidField, "from"},
		{"blank body", "POST", "/v1/actions", sms(`"to":"+14155551234","body":"   "`), nil, 422, CodeInvalidField, "body"},
		{"2000-char body", "POST", "/v1/actions", sms(`"to":"+14155551234","body":"` + strings.Repeat("x", 2000) + `"`), nil, 422, CodeInvalidField, "body"},
		{"bad class", "POST", "/v1/actions", sms(`"to":"+14155551234","body":"hi","class":"spam"`), nil, 422, CodeInvalidField, "class"},
		{"bad validFor", "POST", "/v1/actions", sms(`"to":"+14155551234","body":"hi","validFor":"soon"`), nil, 422, CodeInvalidField, "validFor"},
		{"bad priority", "POST", "/v1/actions", sms(`"to":"+14155551234","body":"hi","priority":"urgent"`), nil, 422, CodeInvalidField, "priority"},
		{"typo", "POST", "/v1/actions", sms(`"to":"+14155551234","bdy":"hi"`), nil, 422, CodeInvalidField, "bdy"},
		{"bad callSid", "POST", "/v1/actions", `{"action":"getCallStatus","arguments":{"callSid":"nope"}}`, nil, 422, CodeInvalidField, "callSid"},
		{"bad wait", "POST", "/v1/actions?wait=forever", seedSendSMS, nil, 422, CodeInvalidField, "wait"},
		{"wait too long", "POST", "/v1/actions?wait=1h", seedSendSMS, nil, 422, CodeInvalidField, "wait"},
		{"over 64 KiB", "POST", "/v1/actions", sms(`"to":"+14155551234","body":"` + strings.Repeat("x", 70<<10) + `"`), nil, 413, "too_large", ""},
		{"GET actions", "GET", "/v1/actions", "", nil, 405, "method_not_allowed", ""},
		{"PUT task", "PUT", "/v1/tasks/x", "", nil, 405, "method_not_allowed", ""},
		{"unknown task", "GET", "/v1/tasks/no-such-task", "", nil, 404, "not_found", "id"},
		{"unknown endpoint", "GET", "/v1/nothing", "", nil, 404, "not_found", ""},
		{"makeCall without calls", "POST", "/v1/actions", seedMakeCall, nil, 501, "not_implemented", "action"},
		{"getCallStatus without calls", "POST", "/v1/actions", seedGetCallStatus, nil, 501, "not_implemented", "action"},
	}
	for _, tt := range tests {
		t.Run(tt.name, func(t *testing.T) {
			h := tt.header
			if h == nil {
				h = auth
			}
			r := do(t, tt.method, s.url+tt.path, strings.NewReader(tt.body), h)
			e := r.apiErr(t)
			if r.status != tt.status || e.Code != tt.code || e.Field != tt.field || e.Message == "" {
				t.Fatalf("got %d %+v, want %d code %s field %q", r.status, e, tt.status, tt.code, tt.field)
			}
			if strings.Contains(string(r.body), "t0ken-for-tests") || strings.Contains(string(r.body), "goroutine") {
				t.Fatalf("answer leaks: %s", r.body)
			}
		})
	}
	for _, q := range tasks.QueueOrder {
		if info, err := s.Inspector.GetQueueInfo(q); err == nil && info.Size != 0 {
			t.Fatalf("queue %s has %d tasks: a refused request queued one", q, info.Size)
		}
	}
	// And with the token, the same request goes through.
	if r := post(t, s.url+"/v1/actions", seedSendSMS, auth); r.status != 202 {
		t.Fatalf("with the token: %d %s", r.status, r.body)
	}
}

func TestCallActions(t *testing.T) {
	t.Parallel()
	s := newAPIServer(t, func(s *Server) { s.Calls = calls.NewStore(s.Redis) })
	r := post(t, s.url+"/v1/actions", strings.Replace(seedMakeCall, `"to"`, `"priority":"critical","to"`, 1), nil)
	if v := r.json(t); r.status != 202 || v["queue"] != "critical" {
		t.Fatalf("makeCall: %d %s", r.status, r.body)
	}
	info, err := s.Inspector.GetTaskInfo("critical", r.json(t)["taskId"].(string))
	if err != nil || info.Type != tasks.TypeMakeCall || !strings.Contains(string(info.Payload), "https://your-server.com/twiml/welcome") {
		t.Fatalf("queued %+v %v", info, err)
	}
	r = post(t, s.url+"/v1/actions", `{"action":"makeCall","arguments":{"to":"+14155551234"}}`, nil)
	if e := r.apiErr(t); r.status != 422 || e.Field != "url" {
		t.Fatalf("makeCall without url: %d %s", r.status, r.body)
	}
	r = post(t, s.url+"/v1/actions", `{"action":"makeCall","arguments":{"to":"+14155551234","url":"ftp://x.example/t"}}`, nil)
	if e := r.apiErr(t); r.status != 422 || e.Field != "url" {
		t.Fatalf("makeCall with an ftp url: %d %s", r.status, r.body)
	}
	// An Idempotency-Key of an sms:send task is not a call.
	post(t, s.url+"/v1/actions", seedSendSMS, map[string]string{"Idempotency-Key": "k1"})
	r = post(t, s.url+"/v1/actions", seedMakeCall, map[string]string{"Idempotency-Key": "k1"})
	if e := r.apiErr(t); r.status != 409 || e.Field != "Idempotency-Key" {
		t.Fatalf("key reused for another type: %d %s", r.status, r.body)
	}

	sid := "CA0123456789abcdef0123456789abcdef"
	if err := s.Calls.Create(context.Background(), calls.Record{SID: sid, To: "+14155551234", From: "+15005550006", Status: "completed", Duration: 42}); err != nil {
		t.Fatal(err)
	}
	r = post(t, s.url+"/v1/actions", seedGetCallStatus, nil)
	if v := r.json(t); r.status != 200 || v["callSid"] != sid || v["status"] != "completed" || v["duration"] != float64(42) || v["to"] != "+14155551234" {
		t.Fatalf("getCallStatus: %d %s", r.status, r.body)
	}
	r = post(t, s.url+"/v1/actions", `{"action":"getCallStatus","arguments":{"callSid":"CA00000000000000000000000000000404"}}`, nil)
	if e := r.apiErr(t); r.status != 404 || e.Field != "callSid" {
		t.Fatalf("unknown call: %d %s", r.status, r.body)
	}
}

func TestRedisDownAnswers503(t *testing.T) {
	t.Parallel()
	s := newAPIServer(t, nil)
	s.redis.Stop(t)
	for _, req := range []struct{ method, path, body string }{
		{"POST", "/v1/actions", seedSendSMS},
		{"GET", "/v1/tasks/some-task", ""},
	} {
		r := do(t, req.method, s.url+req.path, strings.NewReader(req.body), nil)
		if e := r.apiErr(t); r.status != 503 || e.Code != "unavailable" {
			t.Fatalf("%s %s with Redis down: %d %s", req.method, req.path, r.status, r.body)
		}
	}
	r := do(t, "GET", s.url+"/readyz", nil, nil)
	if v := r.json(t); r.status != 503 || !strings.Contains(string(r.body), `"redis":"PING failed`) {
		t.Fatalf("readyz with Redis down: %d %v", r.status, v)
	}
}

func TestPanicAnswers500AndIsLogged(t *testing.T) {
	t.Parallel()
	var logs bytes.Buffer
	s := &Server{Logger: slog.New(slog.NewTextHandler(&logs, nil))}
	h := s.middleware(http.HandlerFunc(func(http.ResponseWriter, *http.Request) { panic("boom: secret-ish detail") }))
	rec := httptest.NewRecorder()
	h.ServeHTTP(rec, httptest.NewRequest("POST", "/v1/actions", strings.NewReader(seedSendSMS)))
	r := response{rec.Code, rec.Header(), rec.Body.Bytes()}
	if e := r.apiErr(t); r.status != 500 || e.Code != "internal" || strings.Contains(string(r.body), "boom") {
		t.Fatalf("panic answered %d %s", r.status, r.body)
	}
	if !strings.Contains(logs.String(), "boom") || !strings.Contains(logs.String(), "stack") {
		t.Fatalf("panic not logged: %s", logs.String())
	}
}

func TestSendBulkSMSAction(t *testing.T) {
	t.Parallel()
	s := newAPIServer(t, nil)
	body := `{"action":"sendBulkSMS","arguments":{"campaign":"incident-7","body":"Service restored",
		"recipients":["+14155550101","+1 415 555 0102","+14155550101","12"]}}`
	r := post(t, s.url+"/v1/actions", body, nil)
	v := r.json(t)
	if r.status != 202 || v["campaign"] != "incident-7" || v["total"] != float64(4) || v["enqueued"] != float64(2) || v["duplicates"] != float64(1) {
		t.Fatalf("sendBulkSMS: %d %s", r.status, r.body)
	}
	info, err := s.Inspector.GetTaskInfo("bulk", "incident-7:+14155550102")
	if err != nil || info.Type != tasks.TypeSendSMS {
		t.Fatalf("recipient task: %+v %v", info, err)
	}
	if r := post(t, s.url+"/v1/actions", body, nil); r.json(t)["enqueued"] != float64(0) {
		t.Fatalf("a repeated submission queued again: %s", r.body)
	}
	for _, c := range []struct{ body, field string }{
		{`{"action":"sendBulkSMS","arguments":{"campaign":"c","body":"b","recipients":"+14155550101"}}`, "recipients"},
		{`{"action":"sendBulkSMS","arguments":{"campaign":"c","body":"b","recipients":["+14155550101"],"priority":"critical"}}`, "priority"},
		{`{"action":"sendBulkSMS","arguments":{"campaign":"c","body":"b","recipients":[]}}`, "recipients"},
		{`{"action":"sendBulkSMS","arguments":{"campaign":"c","recipients":["+14155550101"]}}`, "body"},
		{`{"action":"sendBulkSMS"}`, "arguments"},
	} {
		r := post(t, s.url+"/v1/actions", c.body, nil)
		if e := r.apiErr(t); r.status != 422 || e.Field != c.field {
			t.Errorf("%s: %d %s, want 422 naming %s", c.body, r.status, r.body, c.field)
		}
	}
}
