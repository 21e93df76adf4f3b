package httpapi

import (
	"net/http"
	"os"
	"strings"
	"testing"
	"time"
)

// sendAt over HTTP: the task is scheduled for it, GET shows when it runs,
// DELETE cancels it before then.
func TestSendAtAndCancelOverHTTP(t *testing.T) {
	t.Parallel()
	s := newAPIServer(t, nil)
	at := time.Now().Add(3 * time.Hour).UTC().Truncate(time.Second)
	body := `{"action":"sendSMS","arguments":{"to":"+14155551234","body":"Dentist at 9","sendAt":"` + at.Format(time.RFC3339) + `"}}`
	r := post(t, s.url+"/v1/actions", body, map[string]string{"Idempotency-Key": "remind-9"})
	if v := r.json(t); r.status != 202 || v["state"] != "scheduled" {
		t.Fatalf("sendAt: %d %s", r.status, r.body)
	}
	r = do(t, http.MethodGet, s.url+"/v1/tasks/remind-9", nil, nil)
	next, err := time.Parse(time.RFC3339, r.json(t)["nextRunAt"].(string))
	if r.status != 200 || err != nil || !next.Equal(at) {
		t.Fatalf("GET: %d %s; want nextRunAt %s", r.status, r.body, at)
	}
	r = do(t, http.MethodDelete, s.url+"/v1/tasks/remind-9", nil, nil)
	if v := r.json(t); r.status != 200 || v["state"] != "canceled" {
		t.Fatalf("DELETE: %d %s", r.status, r.body)
	}
	for _, m := range []string{http.MethodGet, http.MethodDelete} {
		if r := do(t, m, s.url+"/v1/tasks/remind-9", nil, nil); r.status != 404 {
			t.Fatalf("%s after cancel: %d %s", m, r.status, r.body)
		}
	}
	for _, bad := range []string{"tomorrow", time.Now().Add(40 * 24 * time.Hour).Format(time.RFC3339)} {
		body := `{"action":"sendSMS","arguments":{"to":"+14155551234","body":"x","sendAt":"` + bad + `"}}`
		r := post(t, s.url+"/v1/actions", body, nil)
		if e := r.apiErr(t); r.status != 422 || e.Field != "sendAt" {
			t.Fatalf("sendAt %q: %d %s", bad, r.status, r.body)
		}
	}
}

// Defect 6: README documents the skipped answer of ?wait= and its
// TypeScript client types the union, so a client checks status first.
func TestREADMEDocumentsTheSkippedResult(t *testing.T) {
	b, err := os.ReadFile("../README.md")
	if err != nil {
		t.Fatal(err)
	}
	readme := string(b)
	i := strings.Index(readme, "`POST /v1/actions` `sendSMS`, `makeCall` |")
	if i < 0 {
		t.Fatal("README has no row for POST /v1/actions sendSMS, makeCall")
	}
	row, _, _ := strings.Cut(readme[i:], "\n")
	if !strings.Contains(row, `{"status":"skipped","reason"}`) {
		t.Errorf("the actions row does not give the skipped shape: %s", row)
	}
	for _, want := range []string{`status: "skipped"; reason: string`, `type SMSResult = Sent | Skipped`} {
		if !strings.Contains(readme, want) {
			t.Errorf("README's TypeScript client lacks %q", want)
		}
	}
}
