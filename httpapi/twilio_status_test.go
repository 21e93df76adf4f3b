package httpapi_test

import (
	"io"
	"net/http"
	"net/url"
	"strings"
	"testing"
	"time"

	"github.com/sbagenthub/twilio-worker/calls"
	"github.com/sbagenthub/twilio-worker/delivery"
	"github.com/sbagenthub/twilio-worker/httpapi"
	"github.com/sbagenthub/twilio-worker/ledger"
	"github.com/sbagenthub/twilio-worker/metrics"
	"github.com/sbagenthub/twilio-worker/tasks"
	"github.com/sbagenthub/twilio-worker/twiliosim"
)

// statusEnv serves /twilio/status with call and message stores and the
// send ledger.
type statusEnv struct {
	*env
	calls   *calls.Store
	msgs    *delivery.Store
	ledger  *ledger.Ledger
	metrics *metrics.Metrics
}

func newStatusEnv(t *testing.T) *statusEnv {
	t.Helper()
	se := &statusEnv{metrics: metrics.New(nil)}
	se.env = newEnv(t, true, func(s *httpapi.Server) {
		se.calls, se.msgs, se.ledger = calls.NewStore(s.Redis), delivery.NewStore(s.Redis), ledger.New(s.Redis)
		s.Calls, s.Ledger, s.Metrics = se.calls, se.ledger, se.metrics
		s.Tracker = &tasks.Tracker{Store: se.msgs}
	})
	return se
}

// status posts a signed callback to /twilio/status?task=… (no task when
// empty).
func (e *statusEnv) status(t *testing.T, task string, form url.Values) int {
	t.Helper()
	u := tasks.StatusCallbackFor(e.public+"/twilio/status", task)
	path := strings.TrimPrefix(u, e.public)
	req, _ := http.NewRequest(http.MethodPost, e.url+path, strings.NewReader(form.Encode()))
	req.Header.Set("Content-Type", "application/x-www-form-urlencoded")
	req.Header.Set("X-Twilio-Signature", twiliosim.Sign(token, u, form))
	resp, err := http.DefaultClient.Do(req)
	if err != nil {
		t.Fatal(err)
	}
	_, _ = io.Copy(io.Discard, resp.Body)
	resp.Body.Close()
	return resp.StatusCode
}

func (e *statusEnv) keys(t *testing.T) []string {
	t.Helper()
	k, err := e.rdb.Keys(bg, "tw:*").Result()
	if err != nil {
		t.Fatal(err)
	}
	return k
}

const (
	callSID = "CA0123456789abcdef0123456789abcdef"
	msgSID  = "SM0123456789abcdef0123456789abcdef"
)

// TestCallbacksForStrangersRecordNothing: signed callbacks for SIDs we never
// sent, or for malformed SIDs, are answered 200 and create no key.
func TestCallbacksForStrangersRecordNothing(t *testing.T) {
	t.Parallel()
	e := newStatusEnv(t)
	forms := map[string]url.Values{
		"unknown message":      {"MessageSid": {msgSID}, "MessageStatus": {"delivered"}},
		"unknown call":         {"CallSid": {callSID}, "CallStatus": {"completed"}, "CallDuration": {"12"}},
		"malformed message":    {"MessageSid": {"anything-at-all"}, "MessageStatus": {"delivered"}},
		"malformed call":       {"CallSid": {"../../../x"}, "CallStatus": {"completed"}},
		"task without ledger":  {"CallSid": {callSID}, "CallStatus": {"ringing"}},
		"message, other task ": {"MessageSid": {msgSID}, "MessageStatus": {"sent"}},
	}
	for name, f := range forms {
		task := ""
		if strings.Contains(name, "task") {
			task = "never-queued"
		}
		if code := e.status(t, task, f); code != http.StatusOK {
			t.Errorf("%s: %d, want 200", name, code)
		}
	}
	if k := e.keys(t); len(k) != 0 {
		t.Fatalf("callbacks for SIDs we never sent created %v", k)
	}
}

// TestEarlyCallCallbacksAreMerged: callbacks of our call that arrive before
// its record (the create's answer was lost) are kept and merged when the
// record is made: status, duration, start and end, counted once.
func TestEarlyCallCallbacksAreMerged(t *testing.T) {
	t.Parallel()
	e := newStatusEnv(t)
	if err := e.ledger.Begin(bg, "call-task", "+14155550100", time.Now()); err != nil {
		t.Fatal(err)
	}
	end := time.Date(2026, 1, 2, 3, 4, 5, 0, time.UTC)
	for _, f := range []url.Values{
		{"CallSid": {callSID}, "To": {"+14155550100"}, "CallStatus": {"ringing"}, "Timestamp": {end.Add(-20 * time.Second).Format(time.RFC1123Z)}},
		{"CallSid": {callSID}, "To": {"+14155550100"}, "CallStatus": {"completed"}, "CallDuration": {"12"}, "Timestamp": {end.Format(time.RFC1123Z)}},
	} {
		if code := e.status(t, "call-task", f); code != http.StatusOK {
			t.Fatalf("early callback: %d", code)
		}
	}
	if _, err := e.calls.Get(bg, callSID); err == nil {
		t.Fatal("an early callback made the record itself")
	}
	if err := e.calls.Create(bg, calls.Record{SID: callSID, To: "+14155550100", Status: "queued"}); err != nil {
		t.Fatal(err)
	}
	rec, became, err := e.calls.Merge(bg, callSID)
	if err != nil || !became {
		t.Fatalf("merge: %+v became %v, %v", rec, became, err)
	}
	if rec.Status != "completed" || rec.Duration != 12 || rec.EndTime == nil || !rec.EndTime.Equal(end) ||
		rec.StartTime == nil || !rec.StartTime.Equal(end.Add(-12*time.Second)) {
		t.Fatalf("merged record %+v; want completed, 12 s, start and end", rec)
	}
	if _, again, _ := e.calls.Merge(bg, callSID); again {
		t.Fatal("a second merge made it terminal again")
	}
}

// TestCallbackEndedCallHasEndTime: a call ended by a status callback gets
// the endTime README promises.
func TestCallbackEndedCallHasEndTime(t *testing.T) {
	t.Parallel()
	e := newStatusEnv(t)
	if err := e.calls.Create(bg, calls.Record{SID: callSID, To: "+14155550100", Status: "queued"}); err != nil {
		t.Fatal(err)
	}
	end := time.Now().UTC().Truncate(time.Second)
	e.status(t, "", url.Values{"CallSid": {callSID}, "CallStatus": {"completed"}, "CallDuration": {"7"}, "Timestamp": {end.Format(time.RFC1123Z)}})
	rec, err := e.calls.Get(bg, callSID)
	if err != nil {
		t.Fatal(err)
	}
	if rec.Status != "completed" || rec.Duration != 7 || rec.EndTime == nil || !rec.EndTime.Equal(end) || rec.StartTime == nil {
		t.Fatalf("record %+v; want completed with duration, start and end", rec)
	}
}

// TestEarlyMessageCallbackOfOurs: a message callback before the record,
// for a task whose send is in flight, starts the record.
func TestEarlyMessageCallbackOfOurs(t *testing.T) {
	t.Parallel()
	e := newStatusEnv(t)
	if err := e.ledger.Begin(bg, "sms-task", "+14155550100", time.Now()); err != nil {
		t.Fatal(err)
	}
	e.status(t, "sms-task", url.Values{"MessageSid": {msgSID}, "To": {"+14155550100"}, "MessageStatus": {"sent"}})
	if rec, err := e.msgs.Get(bg, msgSID); err != nil || rec.Status != "sent" {
		t.Fatalf("early callback of ours: %+v, %v", rec, err)
	}
}
