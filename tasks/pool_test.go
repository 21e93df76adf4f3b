package tasks_test

import (
	"encoding/json"
	"fmt"
	"testing"
	"time"

	"github.com/hibiken/asynq"

	"github.com/sbagenthub/twilio-worker/pool"
	"github.com/sbagenthub/twilio-worker/ratelimit"
	"github.com/sbagenthub/twilio-worker/tasks"
	"github.com/sbagenthub/twilio-worker/twilioapi"
)

const (
	queueFull   = "+15005550008" // the simulator answers 21611 for this From
	invalidFrom = "+15005550001" // 21212
	goodFrom    = "+12025550101"
)

func poolHarness(t *testing.T, numbers ...string) *harness {
	t.Helper()
	return newHarness(t, harnessOpt{limits: &ratelimit.Config{Sender: ratelimit.Rate{N: 50, Per: time.Second, Burst: 1}}, pool: numbers})
}

// A number Twilio refuses leaves rotation (21611 for the cool-down, 21212
// for good) and the message goes from another: each recipient gets exactly
// one message, and the ledger records the number it went from.
func TestPooledMessageGoesAroundRefusedNumbers(t *testing.T) {
	t.Parallel()
	h := poolHarness(t, queueFull, invalidFrom, goodFrom)
	const n = 6
	ids := make([]string, n)
	for i := range n {
		info, err := tasks.EnqueueSMS(bg, h.client, pool.WithPool(h.limiter.Limiter, h.pool),
			tasks.SMSPayload{To: fmt.Sprintf("+1415555%04d", i), Body: "hi"}, tasks.Rules{})
		if err != nil {
			t.Fatal(err)
		}
		ids[i] = info.ID
	}
	for i, id := range ids {
		info := h.waitFinal(t, id)
		var res tasks.SMSResult
		if err := json.Unmarshal(info.Result, &res); err != nil || info.State != asynq.TaskStateCompleted || res.MessageSID == "" {
			t.Fatalf("task %d: %s %q %s", i, info.State, info.LastErr, info.Result)
		}
		if e, err := h.ledger.Get(bg, id, fmt.Sprintf("+1415555%04d", i)); err != nil || e.From != goodFrom || e.SID != res.MessageSID {
			t.Errorf("ledger of task %d: %+v %v; want from %s, sid %s", i, e, err, goodFrom, res.MessageSID)
		}
	}
	for i := range n {
		to := fmt.Sprintf("+1415555%04d", i)
		if got := h.messagesTo(to); len(got) != 1 || got[0].From != goodFrom {
			t.Errorf("%s got %+v; want one message from %s", to, got, goodFrom)
		}
	}
	st, err := h.pool.Status(bg)
	if err != nil {
		t.Fatal(err)
	}
	full, invalid := st.Numbers[0], st.Numbers[1]
	if full.InRotation || full.Out == nil || full.Out.Code != 21611 || full.Out.Permanent() ||
		invalid.InRotation || invalid.Out == nil || invalid.Out.Code != 21212 || !invalid.Out.Permanent() || !st.Numbers[2].InRotation {
		t.Errorf("pool status %+v %+v %+v; want 21611 cooling down, 21212 out for good, the third in rotation", full, invalid, st.Numbers[2])
	}
}

// A task whose earlier attempt's answer was lost keeps the number it chose,
// even out of rotation, and reconciles against it: nothing is sent twice.
func TestPooledMessageKeepsItsNumberToReconcile(t *testing.T) {
	t.Parallel()
	const other, to, body = "+13125550102", "+14155550042", "your order shipped"
	h := poolHarness(t, goodFrom, other)
	// An earlier run chose goodFrom, began its attempt and lost the answer:
	// Twilio has the message.
	const id = "lost-answer"
	if err := h.ledger.Begin(bg, id, to, time.Now()); err != nil {
		t.Fatal(err)
	}
	if _, err := h.ledger.SetFrom(bg, id, to, "", goodFrom); err != nil {
		t.Fatal(err)
	}
	sent, err := h.tw.SendSMS(bg, twilioapi.SendParams{To: to, From: goodFrom, Body: body})
	if err != nil {
		t.Fatal(err)
	}
	// Its number has left rotation since: a new choice would be other.
	if _, err := h.pool.TakeOut(bg, goodFrom, 21611, "Twilio 21611", false); err != nil {
		t.Fatal(err)
	}
	tid := h.enqueue(t, tasks.SMSPayload{To: to, Body: body}, asynq.TaskID(id))
	info := h.waitFinal(t, tid)
	var res tasks.SMSResult
	if err := json.Unmarshal(info.Result, &res); err != nil || res.MessageSID != sent.SID {
		t.Fatalf("result %s (%s %q); want the earlier attempt's %s", info.Result, info.State, info.LastErr, sent.SID)
	}
	if got := h.messagesTo(to); len(got) != 1 {
		t.Fatalf("%d messages to the recipient; want the one the lost attempt sent", len(got))
	}
}
