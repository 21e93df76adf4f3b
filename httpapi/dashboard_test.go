package httpapi

import (
	"net/http"
	"strings"
	"testing"

	"github.com/hibiken/asynq"

	"github.com/sbagenthub/twilio-worker/tasks"
)

func TestMaskPayload(t *testing.T) {
	tests := []struct{ name, in, want string }{
		{"sms payload", `{"to":"+14155551234","from":"+15005550006","body":"Call me at +1 415 555 9876","class":"transactional"}`,
			`{"body":"Call me at +1 ***9876","class":"transactional","from":"+15***006","to":"+14***234"}`},
		{"sender id kept", `{"to":"+14155551234","from":"ACME","body":"hi"}`, `{"body":"hi","from":"ACME","to":"+14***234"}`},
		{"result kept", `{"messageSid":"SM0123456789abcdef0123456789abcdef","status":"queued","dateCreated":"2025-01-15T10:30:00Z"}`,
			`{"dateCreated":"2025-01-15T10:30:00Z","messageSid":"SM0123456789abcdef0123456789abcdef","status":"queued"}`},
		{"numeric number", `{"to":14155551234,"n":[3,14155551234]}`, `{"n":[3,"14***234"],"to":"14***234"}`},
		{"not JSON", `to=+14155551234`, `to=+14***234`},
		{"binary", "\xff\xfe", "non-printable bytes"},
		{"html kept", `{"body":"<b>&</b>"}`, `{"body":"<b>&</b>"}`},
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
