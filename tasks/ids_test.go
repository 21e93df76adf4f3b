package tasks_test

import (
	"testing"
	"time"

	"github.com/hibiken/asynq"

	"github.com/sbagenthub/twilio-worker/tasks"
)

// Defect 9: a client's key cannot take the id of a task the worker makes
// itself. A client task named "ord-9:redeliver-1" (the id main gave ord-9's
// first redelivery) does not stop ord-9 from being redelivered.
func TestClientKeyCannotBlockARedelivery(t *testing.T) {
	t.Parallel()
	h := newHarness(t, harnessOpt{})
	const to = "+15005551005" // transient failure once, then delivered
	h.enqueue(t, tasks.SMSPayload{To: "+14155550199", Body: "a client's own task"},
		asynq.TaskID("ord-9:redeliver-1"), asynq.ProcessIn(time.Hour))
	h.waitFinal(t, h.enqueue(t, tasks.SMSPayload{To: to, Body: "order 9 shipped"}, asynq.TaskID("ord-9")))
	waitFor(t, "ord-9's redelivery", func() bool { return len(h.messagesTo(to)) == 2 })
	if info, err := h.insp.GetTaskInfo(tasks.QueueDefault, "ord-9:redeliver-1"); err != nil || info.State != asynq.TaskStateScheduled {
		t.Fatalf("the client's task: %+v %v", info, err)
	}
}
