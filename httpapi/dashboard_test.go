package httpapi

import (
	"net/http"
	"strings"
	"testing"

	"github.com/hibiken/asynq"

	"github.com/sbagenthub/twilio-worker/tasks"
)

func TestMaskNumbers(t *testing.T) {
	tests := []struct{ in, want string }{
		{"call +14155551234 now", "call +14***234 now"},
		{"(415) 555-1234", "(41***1234"},
		{"Your verification code is 123456", "Your verification code is 123456"},
		{"SM0123456789abcdef0123456789abcdef", "SM0123456789abcdef0123456789abcdef"},
		{"2025-01-15T10:30:00Z", "2025-01-15T10:30:00Z"},
		{"due 2025-01-15 10:30", "due 2025-01-15 10:30"},
		{"no digits", "no digits"},
		{"+1 415 555 1234 and +44 20 7123 4567", "+1 ***1234 and +44 ***4567"},
	}
	for _, tt := range tests {
		if got := MaskNumbers(tt.in); got != tt.want {
			t.Errorf("MaskNumbers(%q) = %q, want %q", tt.in, got, tt.want)
		}
	}
}

func TestMaskPayload(t *testing.T) {
	tests := []struct{ name, in, want string }{
		{"sms payload", `{"to":"+14155551234","from":"+15005550006","body":"Call me at +1 415 555 9876","class":"transactional"}`,
			`{"body":"[redacted, 26 characters]","class":"transactional","from":"+15***006","to":"+14***234"}`},
		{"sender id kept", `{"to":"+14155551234","from":"ACME","body":"hi"}`, `{"body":"[redacted, 2 characters]","from":"ACME","to":"+14***234"}`},
		{"call say and url", `{"to":"+14155551234","say":"Your code is 123456","url":"https://u:tok@hub.example/twiml?key=abc"}`,
			`{"say":"[redacted, 19 characters]","to":"+14***234","url":"https://REDACTED@hub.example/twiml?REDACTED"}`},
		{"result kept", `{"messageSid":"SM0123456789abcdef0123456789abcdef","status":"queued","dateCreated":"2025-01-15T10:30:00Z"}`,
			`{"dateCreated":"2025-01-15T10:30:00Z","messageSid":"SM0123456789abcdef0123456789abcdef","status":"queued"}`},
		{"numeric number", `{"to":14155551234,"n":[3,14155551234]}`, `{"n":[3,"14***234"],"to":"14***234"}`},
		{"not JSON", `to=+14155551234`, `to=+14***234`},
		{"binary", "\xff\xfe", "non-printable bytes"},
		{"html kept", `{"reason":"<b>&</b>"}`, `{"reason":"<b>&</b>"}`},
	}
	for _, tt := range tests {
		t.Run(tt.name, func(t *testing.T) {
			if got := MaskPayload(tasks.TypeSendSMS, []byte(tt.in)); got != tt.want {
				t.Fatalf("got  %s\nwant %s", got, tt.want)
			}
		})
	}
}

func TestDashboardAuthReadOnlyAndMasking(t *testing.T) {
	t.Parallel()
	s := newAPIServer(t, func(s *Server) { s.Dashboard = Dashboard{User: "ops", Password: "pa55word"} })
	task, err := tasks.NewSendSMSTask(tasks.SMSPayload{To: "+14155551234", Body: "hi"}, tasks.Rules{}, asynq.TaskID("t1"))
	if err != nil {
		t.Fatal(err)
	}
	if _, err := s.Client.Enqueue(task); err != nil {
		t.Fatal(err)
	}
	get := func(path, user, pass string) response {
		t.Helper()
		req, _ := http.NewRequest("GET", s.url+path, nil)
		if user != "" {
			req.SetBasicAuth(user, pass)
		}
		return doReq(t, req)
	}
	for _, c := range []struct{ user, pass string }{{"", ""}, {"ops", "wrong"}, {"root", "pa55word"}} {
		r := get("/monitoring/", c.user, c.pass)
		if r.status != 401 || !strings.HasPrefix(r.header.Get("WWW-Authenticate"), "Basic") {
			t.Fatalf("%s/%s: %d", c.user, c.pass, r.status)
		}
	}
	r := get("/monitoring/", "ops", "pa55word")
	if r.status != 200 || !strings.Contains(string(r.body), "<div id=\"root\">") && !strings.Contains(string(r.body), "asynq") {
		t.Fatalf("the UI: %d %.200s", r.status, r.body)
	}
	r = get("/monitoring/api/queues/default/pending_tasks", "ops", "pa55word")
	if r.status != 200 || !strings.Contains(string(r.body), `+14***234`) || strings.Contains(string(r.body), "4155551234") {
		t.Fatalf("pending tasks: %d %s", r.status, r.body)
	}
	// Read-only by default: the dashboard's API refuses to delete.
	req, _ := http.NewRequest("DELETE", s.url+"/monitoring/api/queues/default/pending_tasks/t1", nil)
	req.SetBasicAuth("ops", "pa55word")
	if r := doReq(t, req); r.status != http.StatusMethodNotAllowed {
		t.Fatalf("DELETE in read-only mode: %d %s", r.status, r.body)
	}
	if _, err := s.Inspector.GetTaskInfo("default", "t1"); err != nil {
		t.Fatalf("the task is gone: %v", err)
	}
}

func TestDashboardDisabled(t *testing.T) {
	t.Parallel()
	s := newAPIServer(t, func(s *Server) { s.Dashboard.Disabled = true })
	if r := do(t, "GET", s.url+"/monitoring/", nil, nil); r.status != 404 {
		t.Fatalf("disabled dashboard answered %d", r.status)
	}
}

func doReq(t *testing.T, req *http.Request) response {
	t.Helper()
	resp, err := http.DefaultClient.Do(req)
	if err != nil {
		t.Fatal(err)
	}
	defer resp.Body.Close()
	var b strings.Builder
	buf := make([]byte, 32<<10)
	for {
		n, err := resp.Body.Read(buf)
		b.Write(buf[:n])
		if err != nil {
			break
		}
	}
	return response{resp.StatusCode, resp.Header, []byte(b.String())}
}

// TestDashboardAPIMasksEverything: everything asynqmon's API serves is
// masked: campaign task ids (they embed the E.164), bodies (2FA codes),
// spoken text and credentials in URLs.
func TestDashboardAPIMasksEverything(t *testing.T) {
	t.Parallel()
	s := newAPIServer(t, nil)
	sms, err := tasks.NewSendSMSTask(tasks.SMSPayload{To: "+14155558103", Body: "Your verification code is 834271"},
		tasks.Rules{}, asynq.TaskID("c1:+14155558103"))
	if err != nil {
		t.Fatal(err)
	}
	call, err := tasks.NewMakeCallTask(tasks.CallPayload{To: "+14155558104", URL: "https://ops:hunter2@hub.example/twiml?token=tk-99"},
		tasks.Rules{}, asynq.TaskID("call-1"))
	if err != nil {
		t.Fatal(err)
	}
	say, err := tasks.NewMakeCallTask(tasks.CallPayload{To: "+14155558105", Say: "Your code is 551177"}, tasks.Rules{}, asynq.TaskID("call-2"))
	if err != nil {
		t.Fatal(err)
	}
	for _, task := range []*asynq.Task{sms, call, say} {
		if _, err := s.Client.Enqueue(task); err != nil {
			t.Fatal(err)
		}
	}
	for _, path := range []string{"/monitoring/api/queues/default/pending_tasks", "/monitoring/api/queues/default/tasks/c1:+14155558103",
		"/monitoring/api/queues/default/tasks/call-1", "/monitoring/api/queues"} {
		r := do(t, "GET", s.url+path, nil, nil)
		if r.status != 200 && r.status != 404 {
			t.Fatalf("%s: %d %s", path, r.status, r.body)
		}
		for _, secret := range []string{"4155558103", "4155558104", "4155558105", "834271", "551177", "hunter2", "tk-99"} {
			if strings.Contains(string(r.body), secret) {
				t.Errorf("%s shows %q: %s", path, secret, r.body)
			}
		}
	}
	r := do(t, "GET", s.url+"/monitoring/api/queues/default/pending_tasks", nil, nil)
	if !strings.Contains(string(r.body), "c1:+14***103") || !strings.Contains(string(r.body), "redacted") {
		t.Fatalf("pending tasks should show the masked id and redacted bodies: %s", r.body)
	}
}

// TestDashboardHosts: only loopback Host names and DASHBOARD_HOSTS reach
// the dashboard; others (a DNS-rebinding page) get 421.
func TestDashboardHosts(t *testing.T) {
	t.Parallel()
	s := newAPIServer(t, func(s *Server) { s.Dashboard.Hosts = []string{"ops.example.com"} })
	for host, want := range map[string]int{
		"127.0.0.1:8080": 200, "localhost:8080": 200, "[::1]:8080": 200, "ops.example.com": 200, "OPS.example.com.:443": 200,
		"evil.example": http.StatusMisdirectedRequest, "rebind.attacker.test:8080": http.StatusMisdirectedRequest,
		"10.0.0.5": http.StatusMisdirectedRequest,
	} {
		req, _ := http.NewRequest("GET", s.url+"/monitoring/api/queues", nil)
		req.Host = host
		if r := doReq(t, req); r.status != want {
			t.Errorf("Host %s: %d, want %d", host, r.status, want)
		}
	}
	// The rest of the server (webhooks, /v1) is not limited by it.
	req, _ := http.NewRequest("GET", s.url+"/healthz", nil)
	req.Host = "evil.example"
	if r := doReq(t, req); r.status != 200 {
		t.Errorf("/healthz with another Host: %d", r.status)
	}
}
