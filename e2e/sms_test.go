package e2e

import (
	"encoding/json"
	"regexp"
	"strings"
	"testing"
	"time"

	"github.com/hibiken/asynq"

	"github.com/sbagenthub/twilio-worker/internal/redistest"
	"github.com/sbagenthub/twilio-worker/tasks"
)

func TestSMSEnqueuedReachesTwilioOnce(t *testing.T) {
	t.Parallel()
	onEachRedis(t, func(t *testing.T, kind string) {
		s := newStackOn(t, kind, nil)
		r := runEnqueue(t, s.env, "sms", "--to", "+1 (415) 555-1234", "--body", "Your verification code is 123456", "--queue", "critical", "--valid-for", "10m")
		if r.code != 0 {
			t.Fatalf("exit %d: %s", r.code, r.stderr)
		}
		var out struct{ TaskID, Queue, To string }
		r.json(t, &out)
		if out.To != "+14155551234" || out.Queue != "critical" || out.TaskID == "" {
			t.Fatalf("enqueue printed %+v", out)
		}
		st := waitStatus(t, s.env, out.TaskID)
		if st.State != "completed" || st.Type != "sms:send" {
			t.Fatalf("status %+v", st)
		}
		var res map[string]string
		if err := json.Unmarshal(st.Result, &res); err != nil {
			t.Fatalf("result %s: %v", st.Result, err)
		}
		msgs := simMessages(t, s.simURL)
		if len(msgs) != 1 {
			t.Fatalf("simulator has %d messages, want exactly 1", len(msgs))
		}
		m := msgs[0]
		if m.To != "+14155551234" || m.From != "+15005550006" || m.Body != "Your verification code is 123456" {
			t.Fatalf("simulator got %+v", m)
		}
		if res["messageSid"] != m.Sid || res["status"] != "queued" || len(res) != 3 {
			t.Fatalf("result %v, want the seed's shape with the simulator's SID %s", res, m.Sid)
		}
		if _, err := time.Parse(time.RFC3339, res["dateCreated"]); err != nil {
			t.Fatalf("dateCreated %q", res["dateCreated"])
		}
		if strings.Contains(s.worker.output(), "4155551234") {
			t.Fatal("the worker logged a full phone number")
		}
	})
}

func TestEnqueueRefusesBadInputAndQueuesNothing(t *testing.T) {
	t.Parallel()
	s := newStack(t, nil)
	tests := []struct {
		name  string
		args  []string
		field string
	}{
		{"short number", []string{"sms", "--to", "+1415", "--body", "hi"}, "to: phone number is too short"},
		{"letters", []string{"sms", "--to", "+1 415 CALL NOW", "--body", "hi"}, "to:"},
		{"unknown country", []string{"sms", "--to", "+999 1234 5678", "--body", "hi"}, "to:"},
		{"no number", []string{"sms", "--body", "hi"}, "to: is required"},
		{"empty body", []string{"sms", "--to", "+14155551234", "--body", "  "}, "body: is empty"},
		{"2000-character body", []string{"sms", "--to", "+14155551234", "--body", strings.Repeat("x", 2000)}, "body: has 2000 characters"},
		{"bad queue", []string{"sms", "--to", "+14155551234", "--body", "hi", "--queue", "urgent"}, "queue:"},
		{"bad validFor", []string{"sms", "--to", "+14155551234", "--body", "hi", "--valid-for", "soon"}, "validFor:"},
		{"bad class", []string{"sms", "--to", "+14155551234", "--body", "hi", "--class", "spam"}, "class:"},
		{"unknown flag", []string{"sms", "--too", "+14155551234"}, "flag provided but not defined"},
		{"unknown command", []string{"fax"}, "unknown command"},
	}
	for _, tt := range tests {
		t.Run(tt.name, func(t *testing.T) {
			r := runEnqueue(t, s.env, tt.args...)
			if r.code != 2 || !strings.Contains(r.stderr, tt.field) || r.stdout != "" {
				t.Fatalf("exit %d, stderr %q, stdout %q; want exit 2 naming %q", r.code, r.stderr, r.stdout, tt.field)
			}
		})
	}
	insp := asynq.NewInspectorFromRedisClient(s.redis.Client(t))
	queues, err := insp.Queues()
	if err != nil {
		t.Fatal(err)
	}
	for _, q := range queues {
		info, err := insp.GetQueueInfo(q)
		if err != nil {
			t.Fatal(err)
		}
		if info.Size != 0 {
			t.Fatalf("queue %s holds %d tasks after refused input", q, info.Size)
		}
	}
}

func TestEnqueueIDIsIdempotent(t *testing.T) {
	t.Parallel()
	s := newStack(t, nil)
	var first, second struct {
		TaskID   string
		Existing bool
	}
	args := []string{"sms", "--to", "+14155550100", "--body", "Order 42 shipped", "--id", "order-42"}
	r := runEnqueue(t, s.env, args...)
	r.json(t, &first)
	st := waitStatus(t, s.env, "order-42")
	r = runEnqueue(t, s.env, args...)
	if r.code != 0 {
		t.Fatalf("second enqueue: exit %d %s", r.code, r.stderr)
	}
	r.json(t, &second)
	if first.TaskID != "order-42" || second.TaskID != "order-42" || first.Existing || !second.Existing {
		t.Fatalf("first %+v second %+v", first, second)
	}
	// Another queue with the same id still names the one task.
	r = runEnqueue(t, s.env, append(args, "--queue", "critical")...)
	var third struct {
		TaskID, Queue string
		Existing      bool
	}
	r.json(t, &third)
	if !third.Existing || third.Queue != "default" {
		t.Fatalf("same id, other queue: %+v", third)
	}
	// Nothing left that could send: then the simulator's count is final.
	if open := openTasks(t, s.redis.Client(t), tasks.TypeSendSMS); open != 0 {
		t.Fatalf("%d sms:send tasks still queued; the same id must name one task", open)
	}
	if n := len(simMessages(t, s.simURL)); n != 1 || st.State != "completed" {
		t.Fatalf("%d messages (state %s); the same id must send once", n, st.State)
	}
}

func TestFailuresEndInTheirStates(t *testing.T) {
	t.Parallel()
	s := newStack(t, nil)
	enqueue := func(args ...string) string {
		r := runEnqueue(t, s.env, append([]string{"sms", "--body", "hi"}, args...)...)
		if r.code != 0 {
			t.Fatalf("enqueue %v: exit %d %s", args, r.code, r.stderr)
		}
		var out struct{ TaskID string }
		r.json(t, &out)
		return out.TaskID
	}
	bad := waitStatus(t, s.env, enqueue("--to", "+15005550001"))
	if bad.State != "archived" || !strings.Contains(bad.LastError, "21211") || bad.Retried != 0 {
		t.Fatalf("bad recipient: %+v", bad)
	}
	unsub := waitStatus(t, s.env, enqueue("--to", "+15005550004"))
	if unsub.State != "archived" || !strings.Contains(unsub.LastError, "opted out") {
		t.Fatalf("unsubscribed: %+v", unsub)
	}
	// Now in the opt-out set: the next message to it completes as skipped without a request.
	again := waitStatus(t, s.env, enqueue("--to", "+15005550004"))
	if again.State != "completed" || !strings.Contains(string(again.Result), "skipped") {
		t.Fatalf("after 21610: %+v", again)
	}
	// 503s: retried until the simulator recovers, then delivered exactly once.
	simConfig(t, s.simURL, `{"errorRate":1}`)
	id := enqueue("--to", "+14155550199")
	// Until the task has failed at least once and waits for its retry.
	for deadline := time.Now().Add(30 * time.Second); ; time.Sleep(50 * time.Millisecond) {
		var st status
		runEnqueue(t, s.env, "status", id).json(t, &st)
		if st.Retried >= 1 || st.State == "retry" {
			break
		}
		if st.State == "completed" || st.State == "archived" || time.Now().After(deadline) {
			t.Fatalf("under 503s the task is %+v, not retrying", st)
		}
	}
	simConfig(t, s.simURL, `{"errorRate":0}`)
	ok := waitStatus(t, s.env, id)
	if ok.State != "completed" || ok.Retried < 1 {
		t.Fatalf("after the 503s: %+v", ok)
	}
	n := 0
	for _, m := range simMessages(t, s.simURL) {
		if m.To == "+14155550199" {
			n++
		}
	}
	if n != 1 {
		t.Fatalf("%d messages arrived after the 503 storm, want 1", n)
	}
	if got := len(simMessages(t, s.simURL)); got != 1 {
		t.Fatalf("simulator holds %d messages; refused ones must not be created", got)
	}
}

func TestWorkerRefusesBadConfiguration(t *testing.T) {
	t.Parallel()
	tests := []struct{ env, names string }{
		{"SENDER_RATE=fast", "SENDER_RATE"},
		{"CONCURRENCY=0", "CONCURRENCY"},
		{"RECIPIENT_RATE=10/d", "RECIPIENT_RATE"},
		{"SENDER_RATES=+18005550100", "SENDER_RATES"},
		{"CALL_RATE=1/d", "CALL_RATE"},
		{"TWILIO_MAX_RPS=0", "TWILIO_MAX_RPS"},
		{"TWILIO_MAX_CONCURRENT=lots", "TWILIO_MAX_CONCURRENT"},
		{"QUIET_HOURS=9pm-8am", "QUIET_HOURS"},
		{"TWILIO_ACCOUNT_SID=nope", "TWILIO_ACCOUNT_SID"},
		{"REDIS_URL=http://x", "REDIS_URL"},
		{"LOG_FORMAT=xml", "LOG_FORMAT"},
	}
	for _, tt := range tests {
		t.Run(tt.names, func(t *testing.T) {
			p := start(t, []string{tt.env}, bin.worker)
			select {
			case <-p.done:
			case <-time.After(20 * time.Second):
				t.Fatal("worker started with a malformed setting")
			}
			if code := p.cmd.ProcessState.ExitCode(); code != 2 || !strings.Contains(p.output(), tt.names) {
				t.Fatalf("exit %d, output %q; want 2 naming %s", code, p.output(), tt.names)
			}
		})
	}
}

func TestLocalModeUsesBuiltInSimulator(t *testing.T) {
	t.Parallel()
	redis := redistest.Start(t)
	httpAddr := freeAddr(t)
	w := start(t, []string{"REDIS_URL=" + redis.URL(), "HTTP_ADDR=" + httpAddr}, bin.worker)
	m := waitLog(t, w, regexp.MustCompile(`LOCAL MODE: no Twilio credentials.*NOTHING REAL IS SENT.*simulator=(http://\S+)`))
	simURL := m[1]
	waitHTTP(t, "http://"+httpAddr+"/healthz")
	env := []string{"REDIS_URL=" + redis.URL()}
	r := runEnqueue(t, env, "sms", "--to", "+44 20 7123 4567", "--body", "hi from local mode")
	var out struct{ TaskID string }
	r.json(t, &out)
	if st := waitStatus(t, env, out.TaskID); st.State != "completed" {
		t.Fatalf("status %+v", st)
	}
	msgs := simMessages(t, simURL)
	if len(msgs) != 1 || msgs[0].To != "+442071234567" || msgs[0].From != "+15005550006" {
		t.Fatalf("built-in simulator has %+v", msgs)
	}
	w.stop(t)
	if code := w.cmd.ProcessState.ExitCode(); code != 0 {
		t.Fatalf("worker exit %d after SIGTERM, want 0", code)
	}
}
