package e2e

import (
	"fmt"
	"regexp"
	"strings"
	"testing"
	"time"
)

// TestFraudGuardDefaults: with the default settings a premium-rate number
// and a number in a blocked country are refused at enqueue (exit 2, naming
// to and the country); UK and DE numbers go; an operator's campaign of 300
// recipients inside one number block goes, and nothing is blocked.
func TestFraudGuardDefaults(t *testing.T) {
	t.Parallel()
	s := newStack(t, nil, "SENDER_RATE=1000/s")
	for _, c := range []struct{ to, want string }{
		{"+1 900 234 5678", "to: premium-rate number in US refused"},
		{"+44 90 1234 5678", "to: premium-rate number in GB refused"},
		{"+234 803 123 4567", "to: country NG is blocked"},
		{"+92 300 1234567", "to: country PK is blocked"},
	} {
		r := runEnqueue(t, s.env, "sms", "--to", c.to, "--body", "Your code is 123456")
		if r.code != 2 || !strings.Contains(r.stderr, c.want) {
			t.Fatalf("enqueue sms --to %s: exit %d, stderr %q; want 2 and %q", c.to, r.code, r.stderr, c.want)
		}
		if strings.Contains(r.stderr, strings.ReplaceAll(c.to[1:], " ", "")) {
			t.Fatalf("stderr shows the whole number: %q", r.stderr)
		}
	}
	r := runEnqueue(t, s.env, "call", "--to", "+19002345678", "--say", "hello")
	if r.code != 2 || !strings.Contains(r.stderr, "to: premium-rate number in US refused") {
		t.Fatalf("enqueue call to premium-rate: exit %d %q", r.code, r.stderr)
	}
	for _, to := range []string{"+447400123456", "+4915123456789"} {
		r := runEnqueue(t, s.env, "sms", "--to", to, "--body", "Order 42 shipped")
		if r.code != 0 {
			t.Fatalf("enqueue sms --to %s: exit %d %s", to, r.code, r.stderr)
		}
		var q struct{ TaskID string }
		r.json(t, &q)
		if st := waitStatus(t, s.env, q.TaskID); st.State != "completed" {
			t.Fatalf("%s: %+v", to, st)
		}
	}

	var list strings.Builder
	list.WriteString("phone\n")
	for i := range 300 {
		fmt.Fprintf(&list, "+1415555%04d\n", 1000+i)
	}
	r = runEnqueueStdin(t, s.env, list.String(), "bulk", "--campaign", "fraud-300", "--body", "The API is down; we are on it.", "-")
	var sum campaignSummary
	r.json(t, &sum)
	if r.code != 0 || sum.Enqueued != 300 || sum.InvalidCount != 0 {
		t.Fatalf("bulk: exit %d %+v %s", r.code, sum, r.stderr)
	}
	// The campaign's own record says when it is done (a generous deadline:
	// 300 messages through a race-built worker on a busy machine).
	deadline := time.Now().Add(4 * time.Minute)
	st := campaignStatusOf(t, s, "fraud-300")
	for st.Pending > 0 || st.Sent+st.Failed < 300 {
		if time.Now().After(deadline) {
			t.Fatalf("campaign not done: %+v", st)
		}
		time.Sleep(100 * time.Millisecond)
		st = campaignStatusOf(t, s, "fraud-300")
	}
	if st.Sent != 300 {
		t.Fatalf("campaign: %+v", st)
	}
	sent := 0
	for _, m := range simMessages(t, s.simURL) {
		if strings.HasPrefix(m.To, "+1415555") {
			sent++
		}
	}
	if sent != 300 {
		t.Fatalf("the simulator got %d of the campaign's 300 messages", sent)
	}
	if blocks := fraudList(t, s.env); len(blocks) != 0 {
		t.Fatalf("blocks after an operator campaign: %+v", blocks)
	}
}

type fraudBlock struct {
	Prefix, Reason, Kind, Country string
	Until                         time.Time
}

func fraudList(t *testing.T, env []string) []fraudBlock {
	t.Helper()
	r := runEnqueue(t, env, "fraud", "list")
	if r.code != 0 {
		t.Fatalf("enqueue fraud list: exit %d %s", r.code, r.stderr)
	}
	var out struct{ Blocks []fraudBlock }
	r.json(t, &out)
	return out.Blocks
}

// TestFraudGuardAgentBurst: with ALLOWED_COUNTRIES=US,GB and PREFIX_RATE=5/h,
// a DE number is refused; of 10 sendSMS over HTTP to one prefix 5 go and 5
// are archived with the guard's reason; the prefix shows in enqueue fraud
// list; a safe-listed number in it still goes; unblock lets the next go.
func TestFraudGuardAgentBurst(t *testing.T) {
	t.Parallel()
	guardEnv := []string{"ALLOWED_COUNTRIES=US,GB", "PREFIX_RATE=5/h"}
	s := newStack(t, nil, append([]string{"SENDER_RATE=1000/s"}, guardEnv...)...)
	env := append(append([]string{}, s.env...), guardEnv...)
	base := "http://" + s.http

	r := call(t, "POST", base+"/v1/actions", `{"action":"sendSMS","arguments":{"to":"+4915123456789","body":"hi"}}`, nil)
	if r.status != 422 || !strings.Contains(r.body, `"field":"to"`) || !strings.Contains(r.body, "country DE is not in ALLOWED_COUNTRIES (US,GB)") {
		t.Fatalf("sendSMS to DE: %d %s", r.status, r.body)
	}
	if e := runEnqueue(t, env, "sms", "--to", "+4915123456789", "--body", "hi"); e.code != 2 || !strings.Contains(e.stderr, "to: country DE") {
		t.Fatalf("enqueue sms to DE: exit %d %q", e.code, e.stderr)
	}

	sendSMS := func(to string) string {
		t.Helper()
		r := call(t, "POST", base+"/v1/actions", `{"action":"sendSMS","arguments":{"to":"`+to+`","body":"Your code is 123456"}}`, nil)
		if r.status != 202 {
			t.Fatalf("sendSMS %s: %d %s", to, r.status, r.body)
		}
		return r.json(t)["taskId"].(string)
	}
	var ids []string
	for i := range 10 {
		ids = append(ids, sendSMS(fmt.Sprintf("+1415555%04d", 2000+i)))
	}
	went, archived := 0, 0
	reason := regexp.MustCompile(`^fraud guard: prefix \+1415555 blocked until \d{4}-\d\d-\d\dT\d\d:\d\d:\d\dZ \(over PREFIX_RATE 5/h \(agent traffic\)\)`)
	for _, id := range ids {
		st := waitStatus(t, s.env, id)
		switch {
		case st.State == "completed":
			went++
		case st.State == "archived" && reason.MatchString(st.LastError):
			archived++
		default:
			t.Fatalf("task %s: %+v", id, st)
		}
	}
	if went != 5 || archived != 5 {
		t.Fatalf("%d went, %d archived; want 5 and 5", went, archived)
	}
	countSim := func() int {
		n := 0
		for _, m := range simMessages(t, s.simURL) {
			if strings.HasPrefix(m.To, "+1415555") {
				n++
			}
		}
		return n
	}
	if n := countSim(); n != 5 {
		t.Fatalf("the simulator got %d messages to the prefix, want 5", n)
	}
	blocks := fraudList(t, s.env)
	if len(blocks) != 1 || blocks[0].Prefix != "+1415555" || blocks[0].Kind != "prefix_rate" || blocks[0].Country != "US" ||
		blocks[0].Reason != "over PREFIX_RATE 5/h (agent traffic)" || time.Until(blocks[0].Until) < 11*time.Hour {
		t.Fatalf("enqueue fraud list: %+v", blocks)
	}

	// A safe-listed number in the blocked prefix still goes.
	if e := runEnqueue(t, s.env, "fraud", "safe", "add", "+1 415 555 3000"); e.code != 0 || !strings.Contains(e.stdout, `"entry":"+14155553000"`) {
		t.Fatalf("fraud safe add: exit %d %s %s", e.code, e.stdout, e.stderr)
	}
	if st := waitStatus(t, s.env, sendSMS("+14155553000")); st.State != "completed" {
		t.Fatalf("safe-listed number: %+v", st)
	}
	if st := waitStatus(t, s.env, sendSMS("+14155553001")); st.State != "archived" || !reason.MatchString(st.LastError) {
		t.Fatalf("another number of the blocked prefix: %+v", st)
	}
	// Unblock lets the next one go.
	if e := runEnqueue(t, s.env, "fraud", "unblock", "+1415555"); e.code != 0 || !strings.Contains(e.stdout, `"unblocked":true`) {
		t.Fatalf("fraud unblock: exit %d %s %s", e.code, e.stdout, e.stderr)
	}
	if e := runEnqueue(t, s.env, "fraud", "unblock", "+1415555"); e.code != 2 || !strings.Contains(e.stderr, "not blocked") {
		t.Fatalf("second unblock: exit %d %s", e.code, e.stderr)
	}
	if st := waitStatus(t, s.env, sendSMS("+14155553002")); st.State != "completed" {
		t.Fatalf("after unblock: %+v", st)
	}
	if n := countSim(); n != 7 {
		t.Fatalf("the simulator got %d messages to the prefix, want 7", n)
	}
	if blocks := fraudList(t, s.env); len(blocks) != 0 {
		t.Fatalf("blocks after unblock: %+v", blocks)
	}
	// The same over HTTP.
	if r := call(t, "GET", base+"/v1/fraud/safe", "", nil); r.status != 200 || !strings.Contains(r.body, `"+14155553000"`) {
		t.Fatalf("GET /v1/fraud/safe: %d %s", r.status, r.body)
	}
	if r := call(t, "DELETE", base+"/v1/fraud/blocks/+1415555", "", nil); r.status != 404 {
		t.Fatalf("DELETE a block that is not there: %d %s", r.status, r.body)
	}

	// The block and the unblock are in the communications log. enqueue log
	// masks number-like text, a 7-digit prefix included: --unmask shows it.
	e := runEnqueue(t, s.env, "log", "--unmask")
	for _, want := range []string{`"event":"fraud-block"`, `"reason":"prefix +1415555: over PREFIX_RATE 5/h (agent traffic)"`,
		`"event":"fraud-unblock"`, `"reason":"prefix +1415555: unblocked"`, `"source":"cli"`} {
		if !strings.Contains(e.stdout, want) {
			t.Fatalf("enqueue log lacks %s:\n%s", want, e.stdout)
		}
	}
	if masked := runEnqueue(t, s.env, "log"); !strings.Contains(masked.stdout, `"event":"fraud-block"`) || strings.Contains(masked.stdout, "+14155553000") {
		t.Fatalf("the masked log lacks the block or shows a whole number:\n%s", masked.stdout)
	}
	// And counted: 5 of the burst and 1 after the safe list.
	m := call(t, "GET", base+"/metrics", "", nil)
	if !regexp.MustCompile(`twilioworker_fraud_blocked_total\{country="US",reason="prefix_rate"\} 6\b`).MatchString(m.body) ||
		!regexp.MustCompile(`twilioworker_fraud_blocked_total\{country="DE",reason="country"\} 1\b`).MatchString(m.body) {
		t.Fatalf("metrics:\n%s", grepLines(m.body, "fraud"))
	}
}

func grepLines(s, sub string) string {
	var out []string
	for _, l := range strings.Split(s, "\n") {
		if strings.Contains(l, sub) {
			out = append(out, l)
		}
	}
	return strings.Join(out, "\n")
}
