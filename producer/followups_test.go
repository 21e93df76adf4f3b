package producer_test

import (
	"testing"
	"time"

	"github.com/hibiken/asynq"

	"github.com/sbagenthub/twilio-worker/internal/redistest"
	"github.com/sbagenthub/twilio-worker/producer"
	"github.com/sbagenthub/twilio-worker/tasks"
)

// FollowUps queues a handler's own follow-up once: the same poll again is
// no error and no second task; a type no handler follows up with is refused.
func TestFollowUpsQueueEachFollowUpOnce(t *testing.T) {
	t.Parallel()
	rdb := redistest.Start(t).Client(t)
	f := &producer.FollowUps{Redis: rdb}
	const sid = "CA0123456789abcdef0123456789abcdef"
	for range 2 {
		if err := f.FollowUp(bg, tasks.NewPollCallTask(sid, time.Hour, time.Hour)); err != nil {
			t.Fatal(err)
		}
	}
	insp := asynq.NewInspectorFromRedisClient(rdb)
	scheduled, err := insp.ListScheduledTasks(tasks.QueueDefault)
	if err != nil || len(scheduled) != 1 || scheduled[0].ID != tasks.PollTaskID(sid) {
		t.Fatalf("scheduled %v %v; want the one poll", scheduled, err)
	}
	if err := f.FollowUp(bg, asynq.NewTask(tasks.TypeMakeCall, []byte(`{}`))); err == nil {
		t.Fatal("a call:make queued as a follow-up")
	}
}
