package tasks_test

import (
	"encoding/json"
	"strings"
	"testing"
	"time"

	"github.com/hibiken/asynq"

	"github.com/sbagenthub/twilio-worker/optout"
	"github.com/sbagenthub/twilio-worker/tasks"
	"github.com/sbagenthub/twilio-worker/twilioapi"
	"github.com/sbagenthub/twilio-worker/twiliosim"
)

func TestSendSMSDelivered(t *testing.T) {
	t.Parallel()
	h := newHarness(t, harnessOpt{})
	id := h.enqueue(t, tasks.SMSPayload{To: "+1 (415) 555-1234", Body: "Your verification code is 123456"}, asynq.Queue(tasks.QueueCritical))
	info := h.waitFinal(t, id)
	if info.State != asynq.TaskStateCompleted {
		t.Fatalf("state %s, last error %q", info.State, info.LastErr)
	}
	var res tasks.SMSResult
	if err := json.Unmarshal(info.Result, &res); err != nil {
		t.Fatalf("result %q: %v", info.Result, err)
	}
	msgs := h.messagesTo("+14155551234")
	if len(msgs) != 1 {
		t.Fatalf("simulator has %d messages to the number, want 1", len(msgs))
	}
	if res.MessageSID != msgs[0].Sid || res.Status != "queued" {
		t.Fatalf("result %+v, simulator %+v", res, msgs[0])
	}
	if _, err := time.Parse(time.RFC3339, res.DateCreated); err != nil {
		t.Fatalf("dateCreated %q is not RFC 3339", res.DateCreated)
	}
	// Exactly the seed's keys.
	var raw map[string]any
	_ = json.Unmarshal(info.Result, &raw)
	if len(raw) != 3 {
		t.Fatalf("result keys %v, want messageSid, status, dateCreated", raw)
	}
}

func TestSendSMSFailuresEndInTheRightState(t *testing.T) {
	t.Parallel()
	tests := []struct {
		name     string
		payload  tasks.SMSPayload
		state    asynq.TaskState
		errHas   string
		requests int64
		optedOut bool
	}{
		{"bad recipient archived after one request", tasks.SMSPayload{To: "+15005550001", Body: "hi"}, asynq.TaskStateArchived, "21211", 1, false},
		{"not a mobile", tasks.SMSPayload{To: "+15005550009", Body: "hi"}, asynq.TaskStateArchived, "21614", 1, false},
		{"unsubscribed joins the opt-out set", tasks.SMSPayload{To: "+15005550004", Body: "hi"}, asynq.TaskStateArchived, "recipient opted out", 1, true},
		{"sender not owned", tasks.SMSPayload{To: "+14155551234", From: "+15005550007", Body: "hi"}, asynq.TaskStateArchived, "21606", 1, false},
		{"invalid sender", tasks.SMSPayload{To: "+14155551234", From: "+15005550001", Body: "hi"}, asynq.TaskStateArchived, "21212", 1, false},
	}
	for _, tt := range tests {
		t.Run(tt.name, func(t *testing.T) {
			t.Parallel()
			h := newHarness(t, harnessOpt{})
			info := h.waitFinal(t, h.enqueue(t, tt.payload))
			if info.State != tt.state || !strings.Contains(info.LastErr, tt.errHas) {
				t.Fatalf("state %s, last error %q; want %s with %q", info.State, info.LastErr, tt.state, tt.errHas)
			}
			if info.Retried != 0 {
				t.Fatalf("retried %d times; a permanent error must not retry", info.Retried)
			}
			if got := h.requests.Load(); got != tt.requests {
				t.Fatalf("%d requests to Twilio, want %d", got, tt.requests)
			}
			if strings.Contains(info.LastErr, strings.TrimPrefix(tt.payload.To, "+")) {
				t.Fatalf("last error shows the full number: %q", info.LastErr)
			}
			out, err := h.optouts.OptedOut(bg, optout.SMS, tt.payload.To)
			if err != nil || out != tt.optedOut {
				t.Fatalf("opted out = %v (%v), want %v", out, err, tt.optedOut)
			}
			if tt.optedOut {
				hist, _ := h.optouts.History(bg, tt.payload.To)
				if len(hist) != 1 || hist[0].Source != optout.SourceTwilio {
					t.Fatalf("history %+v", hist)
				}
			}
		})
	}
}

func TestSendSMSWrongCredentialsArchived(t *testing.T) {
	t.Parallel()
	h := newHarness(t, harnessOpt{twilio: func(c *twilioapi.Config) { c.AuthToken = "ffffffffffffffffffffffffffffffff" }})
	info := h.waitFinal(t, h.enqueue(t, tasks.SMSPayload{To: "+14155551234", Body: "hi"}))
	if info.State != asynq.TaskStateArchived || !strings.Contains(info.LastErr, "20003") || info.Retried != 0 {
		t.Fatalf("state %s retried %d last error %q", info.State, info.Retried, info.LastErr)
	}
	if strings.Contains(info.LastErr, "ffffffff") {
		t.Fatal("token in the error")
	}
}

func TestOptedOutNumberIsNeverSent(t *testing.T) {
	t.Parallel()
	h := newHarness(t, harnessOpt{})
	if _, err := h.optouts.Add(bg, optout.SMS, "+14155550142", optout.SourceCLI); err != nil {
		t.Fatal(err)
	}
	info := h.waitFinal(t, h.enqueue(t, tasks.SMSPayload{To: "+14155550142", Body: "hi"}))
	if info.State != asynq.TaskStateCompleted {
		t.Fatalf("state %s (%q): a skip is not a failure", info.State, info.LastErr)
	}
	var res tasks.SMSResult
	_ = json.Unmarshal(info.Result, &res)
	if res.Status != "skipped" || res.MessageSID != "" || !strings.Contains(res.Reason, "opted out") {
		t.Fatalf("result %+v", res)
	}
	if h.requests.Load() != 0 || len(h.sim.Messages()) != 0 {
		t.Fatal("an opted-out number reached Twilio")
	}
}

func TestTransient503sRetriedThenDeliveredOnce(t *testing.T) {
	t.Parallel()
	h := newHarness(t, harnessOpt{sim: twiliosim.Config{ErrorRate: 1}})
	id := h.enqueue(t, tasks.SMSPayload{To: "+14155550143", Body: "after the storm"})
	waitFor(t, "three failed attempts", func() bool { return h.requests.Load() >= 3 })
	if err := h.sim.UpdateKnobs(func(k *twiliosim.Knobs) { k.ErrorRate = 0 }); err != nil {
		t.Fatal(err)
	}
	info := h.waitFinal(t, id)
	if info.State != asynq.TaskStateCompleted {
		t.Fatalf("state %s (%q)", info.State, info.LastErr)
	}
	if info.Retried < 3 {
		t.Fatalf("retried %d, want at least 3", info.Retried)
	}
	if n := len(h.messagesTo("+14155550143")); n != 1 {
		t.Fatalf("%d messages arrived, want exactly 1", n)
	}
}

func TestRateLimitedWaitsWithoutUsingRetries(t *testing.T) {
	t.Parallel()
	h := newHarness(t, harnessOpt{})
	// From +15005550008 is Twilio's "queue full" (21611): a rate limit.
	id := h.enqueue(t, tasks.SMSPayload{To: "+14155550144", From: "+15005550008", Body: "hi"})
	waitFor(t, "three rate-limited attempts", func() bool { return h.requests.Load() >= 3 })
	info, err := tasks.Find(h.insp, id)
	if err != nil {
		t.Fatal(err)
	}
	if info.Retried != 0 {
		t.Fatalf("retried = %d; waiting on a rate limit must not consume retries", info.Retried)
	}
	if info.State == asynq.TaskStateArchived || !strings.Contains(info.LastErr, "deferred until") || !strings.Contains(info.LastErr, "21611") {
		t.Fatalf("state %s last error %q", info.State, info.LastErr)
	}
}

func TestExpiredCodeIsNeverSentLate(t *testing.T) {
	t.Parallel()
	h := newHarness(t, harnessOpt{})
	past := time.Now().Add(-time.Second)
	task, err := tasks.NewSendSMSTask(tasks.SMSPayload{To: "+14155550145", Body: "code 1234", ValidFor: "10m", ExpiresAt: &past}, tasks.Rules{})
	if err != nil {
		t.Fatal(err)
	}
	info, err := h.client.Enqueue(task)
	if err != nil {
		t.Fatal(err)
	}
	final := h.waitFinal(t, info.ID)
	if final.State != asynq.TaskStateArchived || !strings.Contains(final.LastErr, "expired") {
		t.Fatalf("state %s last error %q", final.State, final.LastErr)
	}
	if h.requests.Load() != 0 {
		t.Fatal("an expired code reached Twilio")
	}
}

func TestValidForBecomesValidityPeriod(t *testing.T) {
	t.Parallel()
	h := newHarness(t, harnessOpt{})
	info := h.waitFinal(t, h.enqueue(t, tasks.SMSPayload{To: "+14155550146", Body: "code 1234", ValidFor: "10m"}))
	if info.State != asynq.TaskStateCompleted {
		t.Fatalf("state %s", info.State)
	}
	m := h.messagesTo("+14155550146")
	if len(m) != 1 || m[0].ValidityPeriod < 590 || m[0].ValidityPeriod > 600 {
		t.Fatalf("messages %+v, want one with ValidityPeriod ~600", m)
	}
}

func TestPoisonTaskArchivedWithReason(t *testing.T) {
	t.Parallel()
	h := newHarness(t, harnessOpt{})
	tests := map[string][]byte{
		"not json":    []byte("{not json"),
		"wrong types": []byte(`{"to":42,"body":true}`),
		"bad number":  []byte(`{"to":"12","body":"hi"}`),
		"empty body":  []byte(`{"to":"+14155551234","body":""}`),
	}
	for name, payload := range tests {
		t.Run(name, func(t *testing.T) {
			info, err := h.client.Enqueue(asynq.NewTask(tasks.TypeSendSMS, payload, asynq.MaxRetry(5)))
			if err != nil {
				t.Fatal(err)
			}
			final := h.waitFinal(t, info.ID)
			if final.State != asynq.TaskStateArchived || !strings.Contains(final.LastErr, "invalid payload") || final.Retried != 0 {
				t.Fatalf("state %s retried %d last error %q", final.State, final.Retried, final.LastErr)
			}
		})
	}
	if h.requests.Load() != 0 {
		t.Fatal("a poison task reached Twilio")
	}
}

func TestTransientFailuresGiveUpAfterTheBudget(t *testing.T) {
	t.Parallel()
	h := newHarness(t, harnessOpt{sim: twiliosim.Config{ErrorRate: 1}})
	id := h.enqueue(t, tasks.SMSPayload{To: "+14155550147", Body: "never arrives"})
	info := h.waitFinal(t, id)
	if info.State != asynq.TaskStateArchived || !strings.Contains(info.LastErr, "gave up after 11 failed attempts") {
		t.Fatalf("state %s retried %d last error %q", info.State, info.Retried, info.LastErr)
	}
	if got := h.requests.Load(); got != tasks.MaxRetryDefault+1 {
		t.Fatalf("%d attempts, want %d", got, tasks.MaxRetryDefault+1)
	}
}
