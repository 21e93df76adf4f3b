package e2e

import (
	"encoding/json"
	"strings"
	"testing"
	"time"

	"github.com/sbagenthub/twilio-worker/internal/redistest"
)

// Tests of issue 15's defects through the real binaries. They use only the
// commands and their output, so they also run against the code before the
// producer package (where they fail).

// Defect 1: an --id names one task of one type, as over HTTP: a call under
// an SMS's id is refused (exit 2), and no call is queued.
func TestEnqueueIDNamesOneTaskOfOneType(t *testing.T) {
	t.Parallel()
	env := []string{"REDIS_URL=" + redistest.Start(t).URL()}
	r := runEnqueue(t, env, "sms", "--to", "+14155550142", "--body", "Order 42 confirmed", "--id", "order-42")
	if r.code != 0 {
		t.Fatalf("sms: exit %d %s", r.code, r.stderr)
	}
	r = runEnqueue(t, env, "call", "--to", "+14155550142", "--say", "hello", "--id", "order-42")
	if r.code != 2 || strings.TrimSpace(r.stdout) != "" {
		t.Fatalf("call under the SMS's id: exit %d, stdout %q, stderr %q; want exit 2 and nothing printed", r.code, r.stdout, r.stderr)
	}
	if !strings.Contains(r.stderr, "sms:send") {
		t.Fatalf("stderr %q does not say the key names an sms:send", r.stderr)
	}
	r = runEnqueue(t, env, "status", "order-42")
	var st status
	r.json(t, &st)
	if st.Type != "sms:send" {
		t.Fatalf("order-42 is %+v", st)
	}
	// The same message again is the same task.
	r = runEnqueue(t, env, "sms", "--to", "+1 415 555 0142", "--body", "Order 42 confirmed", "--id", "order-42")
	var out struct {
		TaskID   string
		Existing bool
	}
	r.json(t, &out)
	if r.code != 0 || !out.Existing || out.TaskID != "order-42" {
		t.Fatalf("retry: exit %d %s", r.code, r.stdout)
	}
}

// waitLogEvent polls `enqueue log ARGS` until an entry has event.
func waitLogEvent(t *testing.T, env []string, event string, seconds int, args ...string) []logEntry {
	t.Helper()
	deadline := time.Now().Add(time.Duration(seconds) * time.Second)
	for {
		entries := readLog(t, env, args...)
		for _, e := range entries {
			if e.Event == event {
				return entries
			}
		}
		if time.Now().After(deadline) {
			t.Fatalf("no %q entry in %d s: %+v", event, seconds, entries)
		}
		time.Sleep(100 * time.Millisecond)
	}
}

// Defect 5: a call's placing, its statuses and its end reach the
// communications log, as a message's do.
func TestCallReachesTheCommunicationsLog(t *testing.T) {
	t.Parallel()
	// The call lasts 8 s and is polled at least every 2 s, so that a poll
	// sees it in progress (a call-status entry) also on a slow machine.
	s := newStack(t, []string{"--call-ring", "300ms", "--call-duration", "8s"}, "CALL_POLL_FIRST=1s", "CALL_POLL_MAX=2s")
	const to = "+14155550183"
	r := runEnqueue(t, s.env, "call", "--to", to, "--say", "Service api is down")
	if r.code != 0 {
		t.Fatalf("call: exit %d %s", r.code, r.stderr)
	}
	entries := waitLogEvent(t, s.env, "call-ended", 60, "--to", "+1 415 555 0183")
	var events []string
	var placed, ended logEntry
	statuses := 0
	for _, e := range entries {
		events = append(events, e.Event)
		switch e.Event {
		case "call-placed":
			placed = e
		case "call-status":
			statuses++
		case "call-ended":
			ended = e
		}
	}
	if events[0] != "queued" || placed.SID == "" || statuses == 0 || ended.SID != placed.SID || ended.Status != "completed" {
		t.Fatalf("the call's log: %v (%+v)", events, entries)
	}
}

// Defect 4: RECIPIENT_RATE=10/m lets a recipient's second message go at
// once: it is not scheduled behind the first, nor deferred.
func TestRecipientRatePerMinuteAllowsABurst(t *testing.T) {
	t.Parallel()
	s := newStack(t, nil, "RECIPIENT_RATE=10/m", "SENDER_RATE=100/s")
	const to = "+14155550184"
	var ids []string
	for _, body := range []string{"Order 7 confirmed", "Track order 7: https://example.com/t/7"} {
		r := runEnqueue(t, s.env, "sms", "--to", to, "--body", body)
		if r.code != 0 {
			t.Fatalf("sms: exit %d %s", r.code, r.stderr)
		}
		var out struct{ TaskID string }
		r.json(t, &out)
		ids = append(ids, out.TaskID)
		var st struct{ State, NextRunAt string }
		runEnqueue(t, s.env, "status", out.TaskID).json(t, &st)
		if st.State == "scheduled" {
			t.Fatalf("message %d booked for later under 10/m: %+v", len(ids), st)
		}
	}
	for _, id := range ids {
		st := waitStatus(t, s.env, id)
		if st.State != "completed" {
			t.Fatalf("%s: %+v", id, st)
		}
	}
	for _, e := range readLog(t, s.env, "--to", to) {
		if e.Event == "deferred" || (e.Event == "queued" && strings.Contains(e.Reason, "until")) {
			t.Fatalf("a message waited for the recipient's limit: %+v", e)
		}
	}
	if n := len(messagesToSim(t, s, to)); n != 2 {
		t.Fatalf("%d messages reached the simulator", n)
	}
	r := runEnqueue(t, s.env, "log", "--task", ids[1])
	if strings.Contains(r.stdout, `"deferred"`) {
		t.Fatalf("second message deferred: %s", r.stdout)
	}
}

// Defect 3: a marketing message deferred by quiet hours gives back the
// slots it was booked at enqueue, so a transactional message to the same
// recipient right after does not wait a minute for it.
func TestDeferredMessageGivesItsSlotBack(t *testing.T) {
	t.Parallel()
	la, err := time.LoadLocation("America/Los_Angeles") // +1 415
	if err != nil {
		t.Fatal(err)
	}
	now := time.Now().In(la)
	window := now.Add(-time.Hour).Format("15:04") + "-" + now.Add(2*time.Hour).Format("15:04")
	s := newStack(t, nil, "QUIET_HOURS="+window, "RECIPIENT_RATE=1/m:1", "SENDER_RATE=100/s")
	const to = "+14155550185"
	r := runEnqueue(t, s.env, "sms", "--to", to, "--body", "Spring sale: 20% off", "--class", "marketing")
	if r.code != 0 {
		t.Fatalf("marketing: exit %d %s", r.code, r.stderr)
	}
	var mkt struct{ TaskID string }
	r.json(t, &mkt)
	deadline := time.Now().Add(30 * time.Second)
	for {
		var st status
		runEnqueue(t, s.env, "status", mkt.TaskID).json(t, &st)
		if st.State == "retry" && strings.Contains(st.LastError, "quiet hours") {
			break
		}
		if time.Now().After(deadline) {
			t.Fatalf("marketing not deferred by quiet hours: %+v", st)
		}
		time.Sleep(50 * time.Millisecond)
	}
	r = runEnqueue(t, s.env, "sms", "--to", to, "--body", "Your code is 123456")
	if r.code != 0 {
		t.Fatalf("transactional: exit %d %s", r.code, r.stderr)
	}
	var txn struct{ TaskID string }
	r.json(t, &txn)
	var st struct{ State, NextRunAt string }
	runEnqueue(t, s.env, "status", txn.TaskID).json(t, &st)
	if st.State == "scheduled" {
		t.Fatalf("the transactional message was booked behind the deferred one: %+v", st)
	}
	if fin := waitStatus(t, s.env, txn.TaskID); fin.State != "completed" || len(messagesToSim(t, s, to)) != 1 {
		t.Fatalf("transactional: %+v", fin)
	}
}

func messagesToSim(t *testing.T, s *stack, to string) []simMessage {
	t.Helper()
	var out []simMessage
	for _, m := range simMessages(t, s.simURL) {
		if m.To == to {
			out = append(out, m)
		}
	}
	return out
}

// sendAt: the task is scheduled for it, status shows when it runs, and
// `enqueue cancel` stops it before then; nothing reaches Twilio.
func TestSendAtSchedulesAndCancelStops(t *testing.T) {
	t.Parallel()
	s := newStack(t, nil)
	at := time.Now().Add(time.Hour).UTC().Truncate(time.Second)
	const to = "+14155550186"
	r := runEnqueue(t, s.env, "sms", "--to", to, "--body", "Reminder: dentist tomorrow", "--send-at", at.Format(time.RFC3339), "--id", "remind-1")
	if r.code != 0 {
		t.Fatalf("sms --send-at: exit %d %s", r.code, r.stderr)
	}
	var st struct{ State, NextRunAt string }
	runEnqueue(t, s.env, "status", "remind-1").json(t, &st)
	next, err := time.Parse(time.RFC3339, st.NextRunAt)
	if st.State != "scheduled" || err != nil || !next.Equal(at) {
		t.Fatalf("status %+v; want scheduled for %s", st, at)
	}
	r = runEnqueue(t, s.env, "cancel", "remind-1")
	if r.code != 0 {
		t.Fatalf("cancel: exit %d %s", r.code, r.stderr)
	}
	var canceled struct{ State string }
	r.json(t, &canceled)
	if canceled.State != "canceled" {
		t.Fatalf("cancel printed %s", r.stdout)
	}
	if r := runEnqueue(t, s.env, "status", "remind-1"); r.code != 2 {
		t.Fatalf("status after cancel: exit %d %s", r.code, r.stdout)
	}
	if r := runEnqueue(t, s.env, "cancel", "remind-1"); r.code != 2 {
		t.Fatalf("cancel twice: exit %d %s", r.code, r.stdout)
	}
	// The same request again is the canceled task, not a new one.
	r = runEnqueue(t, s.env, "sms", "--to", to, "--body", "Reminder: dentist tomorrow", "--send-at", at.Format(time.RFC3339), "--id", "remind-1")
	var again struct{ State string }
	r.json(t, &again)
	if r.code != 0 || again.State != "canceled" {
		t.Fatalf("retry after cancel: exit %d %s", r.code, r.stdout)
	}
	for _, bad := range []string{"tomorrow", time.Now().Add(36 * 24 * time.Hour).Format(time.RFC3339)} {
		r := runEnqueue(t, s.env, "sms", "--to", to, "--body", "x", "--send-at", bad)
		if r.code != 2 || !strings.Contains(r.stderr, "sendAt") {
			t.Fatalf("--send-at %s: exit %d %s", bad, r.code, r.stderr)
		}
	}
	entries := readLog(t, s.env, "--task", "remind-1")
	if len(entries) < 2 || entries[len(entries)-1].Event != "skipped" {
		b, _ := json.Marshal(entries)
		t.Fatalf("log %s; want queued then skipped (canceled)", b)
	}
	if n := len(messagesToSim(t, s, to)); n != 0 {
		t.Fatalf("%d messages sent", n)
	}
}

// Defect 1 across entry points: a key used by `enqueue sms --id` names that
// task over HTTP too, and the other way round. The same message again is
// the same task whichever way it comes; a call, or another body, under the
// key is 409 over HTTP and exit 2 from the CLI. One message is sent.
func TestKeyNamesOneTaskFromTheCLIAndHTTP(t *testing.T) {
	t.Parallel()
	s := newStack(t, nil)
	actions := "http://" + s.http + "/v1/actions"
	const to = "+14155550144"
	r := runEnqueue(t, s.env, "sms", "--to", to, "--body", "Order 44 confirmed", "--id", "order-44")
	if r.code != 0 {
		t.Fatalf("sms: exit %d %s", r.code, r.stderr)
	}
	key := map[string]string{"Idempotency-Key": "order-44"}
	h := call(t, "POST", actions, `{"action":"sendSMS","arguments":{"to":"+1 415 555 0144","body":"Order 44 confirmed"}}`, key)
	if v := h.json(t); h.status/100 != 2 || v["taskId"] != "order-44" {
		t.Fatalf("the CLI's message again over HTTP: %d %s; want the CLI's task", h.status, h.body)
	}
	for name, body := range map[string]string{
		"a call":       `{"action":"makeCall","arguments":{"to":"+14155550144","say":"hello"}}`,
		"another body": `{"action":"sendSMS","arguments":{"to":"+14155550144","body":"Order 44 shipped"}}`,
	} {
		if h := call(t, "POST", actions, body, key); h.status != 409 {
			t.Errorf("%s under the CLI's key: %d %s; want 409", name, h.status, h.body)
		}
	}
	// The hub's key from the CLI.
	h = call(t, "POST", actions, `{"action":"sendSMS","arguments":{"to":"+14155550145","body":"Order 45 confirmed"}}`,
		map[string]string{"Idempotency-Key": "order-45"})
	if h.status != 202 {
		t.Fatalf("sendSMS: %d %s", h.status, h.body)
	}
	r = runEnqueue(t, s.env, "call", "--to", "+14155550145", "--say", "hello", "--id", "order-45")
	if r.code != 2 || strings.TrimSpace(r.stdout) != "" || !strings.Contains(r.stderr, "sms:send") {
		t.Fatalf("a call under the hub's key: exit %d, stdout %q, stderr %q; want exit 2 naming sms:send", r.code, r.stdout, r.stderr)
	}
	r = runEnqueue(t, s.env, "sms", "--to", "+14155550145", "--body", "Order 45 confirmed", "--id", "order-45")
	var out struct {
		TaskID   string
		Existing bool
	}
	r.json(t, &out)
	if r.code != 0 || !out.Existing || out.TaskID != "order-45" {
		t.Fatalf("the hub's message again from the CLI: exit %d %s %s", r.code, r.stdout, r.stderr)
	}
	for _, id := range []string{"order-44", "order-45"} {
		if st := waitStatus(t, s.env, id); st.State != "completed" || st.Type != "sms:send" {
			t.Fatalf("%s: %+v", id, st)
		}
	}
	for _, n := range []string{to, "+14155550145"} {
		if got := len(messagesToSim(t, s, n)); got != 1 {
			t.Errorf("%d messages to %s; want 1", got, n)
		}
	}
}

// Defect 6: what README's table and TypeScript type say of ?wait= is what
// the worker answers for an opted-out recipient: 200 with exactly
// {"status":"skipped","reason"}, and nothing sent.
func TestWaitAnswersTheSkippedShape(t *testing.T) {
	t.Parallel()
	s := newStack(t, nil)
	const to = "+14155550146"
	if r := runEnqueue(t, s.env, "optout", "add", to); r.code != 0 {
		t.Fatalf("optout add: exit %d %s", r.code, r.stderr)
	}
	h := call(t, "POST", "http://"+s.http+"/v1/actions?wait=30s", `{"action":"sendSMS","arguments":{"to":"`+to+`","body":"Order 46 confirmed"}}`, nil)
	v := h.json(t)
	if h.status != 200 || len(v) != 2 || v["status"] != "skipped" || v["reason"] == "" || v["reason"] == nil {
		t.Fatalf("?wait= for an opted-out recipient: %d %s; want 200 {\"status\":\"skipped\",\"reason\"}", h.status, h.body)
	}
	if n := len(messagesToSim(t, s, to)); n != 0 {
		t.Fatalf("%d messages sent to an opted-out recipient", n)
	}
}
