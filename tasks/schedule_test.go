package tasks_test

import (
	"encoding/json"
	"errors"
	"testing"
	"time"

	"github.com/hibiken/asynq"

	"github.com/sbagenthub/twilio-worker/ledger"
	"github.com/sbagenthub/twilio-worker/optout"
	"github.com/sbagenthub/twilio-worker/tasks"
	"github.com/sbagenthub/twilio-worker/twilioapi"
)

const testService = "MG0123456789abcdef0123456789abcdef"

func withService(c *twilioapi.Config) { c.MessagingServiceSID = testService }

func TestHandsOff(t *testing.T) {
	t.Parallel()
	now := time.Date(2026, 12, 4, 12, 0, 0, 0, time.UTC)
	min := tasks.ScheduleMinDefault
	tests := []struct {
		name  string
		p     tasks.SMSPayload
		ahead time.Duration
		min   time.Duration
		want  bool
	}{
		{"20 minutes ahead", tasks.SMSPayload{Class: tasks.ClassTransactional}, 20 * time.Minute, min, true},
		{"exactly the minimum", tasks.SMSPayload{}, min, min, true},
		{"too soon", tasks.SMSPayload{}, 10 * time.Minute, min, false},
		{"beyond 35 days", tasks.SMSPayload{}, 36 * 24 * time.Hour, min, false},
		{"own sender", tasks.SMSPayload{From: "+15005550006"}, time.Hour, min, false},
		{"marketing", tasks.SMSPayload{Class: tasks.ClassMarketing}, time.Hour, min, false},
		{"scheduling off", tasks.SMSPayload{}, time.Hour, 0, false},
	}
	for _, tt := range tests {
		t.Run(tt.name, func(t *testing.T) {
			if got := tasks.HandsOff(tt.p, now.Add(tt.ahead), now, tt.min); got != tt.want {
				t.Fatalf("HandsOff = %v, want %v", got, tt.want)
			}
		})
	}
}

func scheduledPayload(to string, at time.Time) tasks.SMSPayload {
	return tasks.SMSPayload{To: to, Body: "Your appointment is at 9:00", SendAt: &at}
}

func TestSendAtScheduledAtTwilioOnce(t *testing.T) {
	t.Parallel()
	h := newHarness(t, harnessOpt{twilio: withService, scheduleMin: tasks.ScheduleMinDefault})
	const to = "+14155550190"
	at := time.Now().Add(20 * time.Minute).UTC().Truncate(time.Second)
	// A second server on the same Redis runs every task twice, as asynq
	// does when a worker dies between the hand-off and the acknowledgement.
	mux := asynq.NewServeMux()
	mux.Handle(tasks.TypeSendSMS, twice{&tasks.SMSHandler{Messenger: h.tw, OptOuts: h.optouts, Ledger: ledger.New(h.rdb),
		ScheduleMin: tasks.ScheduleMinDefault, Metrics: h.metrics}})
	srv := asynq.NewServerFromRedisClient(h.rdb, asynq.Config{Concurrency: 2, Queues: map[string]int{"twice": 1}, LogLevel: asynq.ErrorLevel})
	if err := srv.Start(mux); err != nil {
		t.Fatal(err)
	}
	t.Cleanup(srv.Shutdown)
	id := h.enqueue(t, scheduledPayload(to, at), asynq.Queue("twice"))
	var info *asynq.TaskInfo
	waitFor(t, "the task to complete", func() bool {
		var err error
		info, err = h.insp.GetTaskInfo("twice", id)
		return err == nil && info.State == asynq.TaskStateCompleted
	})
	msgs := h.messagesTo(to)
	if len(msgs) != 1 {
		t.Fatalf("%d messages after two runs, want 1", len(msgs))
	}
	m := msgs[0]
	if m.Status != "scheduled" || m.SendAt == nil || !m.SendAt.Equal(at) || m.MessagingServiceSid != testService {
		t.Fatalf("simulator holds %+v; want scheduled for %s through the service", m, at)
	}
	var res tasks.SMSResult
	if err := json.Unmarshal(info.Result, &res); err != nil {
		t.Fatal(err)
	}
	if res.Status != tasks.StatusScheduled || res.MessageSID != m.Sid || res.SendAt != at.Format(time.RFC3339) {
		t.Fatalf("result %+v; want scheduled %s at %s", res, m.Sid, at)
	}
	e, err := h.ledger.Get(bg, id, to)
	if err != nil || e.SID != m.Sid {
		t.Fatalf("ledger %+v %v; want the SID recorded", e, err)
	}
	// Not counted as sent: Twilio has not sent it.
	if n := counter(t, h.metrics.SMSSent); n != 0 {
		t.Fatalf("sms_sent_total %v at scheduling", n)
	}
	// The task's result cancels it at Twilio; a second cancel finds it gone.
	if err := tasks.CancelScheduled(bg, h.tw, res); err != nil {
		t.Fatal(err)
	}
	if got, _ := h.sim.Message(m.Sid); got.Status != "canceled" {
		t.Fatalf("after cancel the simulator has %s", got.Status)
	}
	if err := tasks.CancelScheduled(bg, h.tw, res); !errors.Is(err, tasks.ErrNotScheduled) {
		t.Fatalf("second cancel: %v", err)
	}
}

// waitsForSendAt waits until task id waits in the queue (retry state) and
// checks that it runs no earlier than at.
func waitsForSendAt(t *testing.T, h *harness, id string, at time.Time) {
	t.Helper()
	var info *asynq.TaskInfo
	waitFor(t, "the task to wait for its sendAt", func() bool {
		var err error
		info, err = tasks.Find(h.insp, id)
		return err == nil && info.State == asynq.TaskStateRetry
	})
	if info.NextProcessAt.Before(at) {
		t.Fatalf("next run %s; want at %s", info.NextProcessAt, at)
	}
}

func TestSendAtWaitsInTheQueueWithoutService(t *testing.T) {
	t.Parallel()
	h := newHarness(t, harnessOpt{scheduleMin: tasks.ScheduleMinDefault}) // no Messaging Service
	const to = "+14155550191"
	at := time.Now().Add(20 * time.Minute).UTC().Truncate(time.Second)
	waitsForSendAt(t, h, h.enqueue(t, scheduledPayload(to, at)), at)
	if n := len(h.messagesTo(to)); n != 0 {
		t.Fatalf("%d messages sent before sendAt", n)
	}
}

func TestSendAtOptedOutAtHandOff(t *testing.T) {
	t.Parallel()
	h := newHarness(t, harnessOpt{twilio: withService, scheduleMin: tasks.ScheduleMinDefault})
	const to = "+14155550192"
	if _, err := h.optouts.Add(bg, optout.SMS, to, optout.SourceAPI); err != nil {
		t.Fatal(err)
	}
	id := h.enqueue(t, scheduledPayload(to, time.Now().Add(time.Hour)))
	info := h.waitFinal(t, id)
	var res tasks.SMSResult
	_ = json.Unmarshal(info.Result, &res)
	if info.State != asynq.TaskStateCompleted || res.Status != "skipped" {
		t.Fatalf("state %s result %+v; want skipped", info.State, res)
	}
	if n := len(h.messagesTo(to)); n != 0 {
		t.Fatalf("%d messages scheduled for an opted-out number", n)
	}
}

// TestSendAtTooNearForTwilioWaitsInTheQueue: Twilio (its clock ahead here)
// finds sendAt under 15 minutes away and answers 35114; the message is not
// archived but waits in the queue for its time.
func TestSendAtTooNearForTwilioWaitsInTheQueue(t *testing.T) {
	t.Parallel()
	h := newHarness(t, harnessOpt{twilio: withService, scheduleMin: tasks.ScheduleMinDefault})
	h.sim.Advance(10 * time.Minute)
	const to = "+14155550193"
	at := time.Now().Add(20 * time.Minute).UTC().Truncate(time.Second)
	waitsForSendAt(t, h, h.enqueue(t, scheduledPayload(to, at)), at)
	if n := len(h.messagesTo(to)); n != 0 {
		t.Fatalf("%d messages", n)
	}
}

func TestCancelScheduledFor(t *testing.T) {
	t.Parallel()
	h := newHarness(t, harnessOpt{twilio: withService, scheduleMin: tasks.ScheduleMinDefault})
	const to, other = "+14155550194", "+14155550195"
	at := time.Now().Add(20 * time.Minute).UTC().Truncate(time.Second)
	ids := []string{
		h.enqueue(t, scheduledPayload(to, at)),
		h.enqueue(t, scheduledPayload(to, at.Add(48*time.Hour))),
		h.enqueue(t, scheduledPayload(other, at.Add(2*time.Hour))),
	}
	for _, id := range ids {
		if info := h.waitFinal(t, id); info.State != asynq.TaskStateCompleted {
			t.Fatalf("task %s %s: %s", id, info.State, info.LastErr)
		}
	}
	// Twilio sends the first meanwhile: it cannot be canceled, and is
	// forgotten without an error.
	h.sim.Advance(25 * time.Minute)
	waitFor(t, "the first message to go", func() bool {
		for _, m := range h.messagesTo(to) {
			if m.SendAt.Equal(at) && m.Status == "delivered" {
				return true
			}
		}
		return false
	})
	canceled, err := tasks.CancelScheduledFor(bg, h.rdb, h.tw, to, time.Now())
	if err != nil {
		t.Fatal(err)
	}
	if len(canceled) != 1 || canceled[0].TaskID != ids[1] || !canceled[0].SendAt.Equal(at.Add(48*time.Hour)) {
		t.Fatalf("canceled %+v; want the second message (task %s)", canceled, ids[1])
	}
	if got, _ := h.sim.Message(canceled[0].SID); got.Status != "canceled" {
		t.Fatalf("simulator has %s", got.Status)
	}
	if n, err := h.rdb.ZCard(bg, tasks.ScheduledKey(to)).Result(); err != nil || n != 0 {
		t.Fatalf("%d still recorded (%v)", n, err)
	}
	if n, _ := h.rdb.ZCard(bg, tasks.ScheduledKey(other)).Result(); n != 1 {
		t.Fatalf("the other recipient has %d recorded, want 1", n)
	}
	if ttl, _ := h.rdb.PTTL(bg, tasks.ScheduledKey(other)).Result(); ttl <= 20*time.Minute {
		t.Fatalf("TTL %v; want past the sendAt", ttl)
	}
	if m := h.messagesTo(other); len(m) != 1 || m[0].Status != "scheduled" {
		t.Fatalf("the other recipient's message: %+v", m)
	}
}
