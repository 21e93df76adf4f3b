package producer_test

import (
	"context"
	"errors"
	"strings"
	"testing"
	"time"

	"github.com/hibiken/asynq"

	"github.com/sbagenthub/twilio-worker/ledger"
	"github.com/sbagenthub/twilio-worker/producer"
	"github.com/sbagenthub/twilio-worker/tasks"
)

// A key whose claim has expired while the task it named is still kept (its
// result outlives the claim by how long it ran): the ended task is retired
// and the key makes a new one that sends afresh; a task still waiting to
// run is a conflict, and its ledger line is left alone.
func TestReusedKeyRetiresTheEndedTask(t *testing.T) {
	t.Parallel()
	p, rdb := newProducer(t)
	srv := asynq.NewServerFromRedisClient(rdb, asynq.Config{Concurrency: 2, Queues: tasks.Queues,
		Logger: quietLogger{}})
	mux := asynq.NewServeMux()
	mux.HandleFunc(tasks.TypeSendSMS, func(context.Context, *asynq.Task) error { return nil })
	if err := srv.Start(mux); err != nil {
		t.Fatal(err)
	}
	t.Cleanup(srv.Shutdown)
	led := ledger.New(rdb)

	m := producer.SMS{SMSPayload: tasks.SMSPayload{To: "+14155550106", Body: "order 44 shipped"}, Key: "order-44"}
	if _, err := p.SendSMS(bg, m); err != nil {
		t.Fatal(err)
	}
	deadline := time.Now().Add(30 * time.Second)
	for {
		st, err := p.Status(bg, "order-44")
		if err == nil && st.State == "completed" {
			break
		}
		if time.Now().After(deadline) {
			t.Fatalf("the first task did not complete: %+v %v", st, err)
		}
		time.Sleep(20 * time.Millisecond)
	}
	if err := led.Begin(bg, "order-44", m.To, time.Now()); err != nil {
		t.Fatal(err)
	}
	if err := led.Commit(bg, "order-44", m.To, "SM00000000000000000000000000000044"); err != nil {
		t.Fatal(err)
	}
	rdb.Del(bg, producer.ClaimKey("order-44")) // the key's lifetime ends
	m.Body = "order 44 DELIVERED"
	res, err := p.SendSMS(bg, m)
	if err != nil || res.Existing {
		t.Fatalf("the key after its lifetime: %+v %v", res, err)
	}
	if e, _ := led.Get(bg, "order-44", m.To); e.Sent() {
		t.Fatalf("the new task would answer the old SID %s", e.SID)
	}
	info, err := asynq.NewInspectorFromRedisClient(rdb).GetTaskInfo(res.Queue, "order-44")
	if err != nil || !strings.Contains(string(info.Payload), "DELIVERED") {
		t.Fatalf("new task %+v %v", info, err)
	}

	live := producer.SMS{SMSPayload: tasks.SMSPayload{To: "+14155550107", Body: "later"}, Key: "live-1", SendAt: time.Now().Add(time.Hour)}
	if _, err := p.SendSMS(bg, live); err != nil {
		t.Fatal(err)
	}
	if err := led.Begin(bg, "live-1", live.To, time.Now()); err != nil {
		t.Fatal(err)
	}
	rdb.Del(bg, producer.ClaimKey("live-1"))
	live.Body = "something else"
	if _, err := p.SendSMS(bg, live); !errors.Is(err, producer.ErrConflict) {
		t.Fatalf("a key naming a waiting task: %v, want ErrConflict", err)
	}
	if e, _ := led.Get(bg, "live-1", live.To); !e.Pending() {
		t.Fatal("the waiting task's ledger line was forgotten")
	}
}

type quietLogger struct{}

func (quietLogger) Debug(...any) {}
func (quietLogger) Info(...any)  {}
func (quietLogger) Warn(...any)  {}
func (quietLogger) Error(...any) {}
func (quietLogger) Fatal(...any) {}
