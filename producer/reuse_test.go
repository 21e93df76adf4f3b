package producer_test

import (
	"context"
	"encoding/json"
	"errors"
	"strings"
	"testing"
	"time"

	"github.com/hibiken/asynq"

	"github.com/sbagenthub/twilio-worker/internal/redistest"
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

// Defect 1 across entry points: a key's claim records the task's type and a
// hash of its payload whoever queued it. The same message from the CLI and
// then the agent hub is one task; the key for a call, or for another body,
// is a conflict.
func TestOneKeyNamesOneTaskAcrossEntryPoints(t *testing.T) {
	t.Parallel()
	rdb := redistest.Start(t).Client(t)
	cli := &producer.Producer{Redis: rdb, Source: "cli"}
	api := &producer.Producer{Redis: rdb, Source: "HTTP API"}
	first, err := cli.SendSMS(bg, producer.SMS{Key: "order-42",
		SMSPayload: tasks.SMSPayload{To: "+14155550142", Body: "Order 42 confirmed", Source: tasks.SourceOperator}})
	if err != nil {
		t.Fatal(err)
	}
	var claim struct{ Type, Hash, ID string }
	b, err := rdb.Get(bg, producer.ClaimKey("order-42")).Bytes()
	if err != nil || json.Unmarshal(b, &claim) != nil {
		t.Fatalf("claim %s %v", b, err)
	}
	if claim.Type != tasks.TypeSendSMS || claim.Hash == "" || claim.ID != "order-42" {
		t.Fatalf("claim %s", b)
	}
	do := func(action string) (any, error) {
		t.Helper()
		a, err := api.Decode([]byte(action))
		if err != nil {
			t.Fatal(err)
		}
		a.Key = "order-42"
		return api.Do(bg, a)
	}
	out, err := do(`{"action":"sendSMS","arguments":{"to":"+1 415 555 0142","body":"Order 42 confirmed"}}`)
	if res, _ := out.(producer.Result); err != nil || !res.Existing || res.TaskID != first.TaskID {
		t.Fatalf("the same message over HTTP: %+v %v; want the CLI's task", out, err)
	}
	for name, action := range map[string]string{
		"a call":       `{"action":"makeCall","arguments":{"to":"+14155550142","say":"hello"}}`,
		"another body": `{"action":"sendSMS","arguments":{"to":"+14155550142","body":"Order 42 shipped"}}`,
	} {
		if _, err := do(action); !errors.Is(err, producer.ErrConflict) {
			t.Errorf("%s under the CLI's key: %v; want ErrConflict", name, err)
		}
	}
	// And the other way round: the CLI meets the hub's key.
	if _, err := api.SendSMS(bg, producer.SMS{Key: "order-43", SMSPayload: tasks.SMSPayload{To: "+14155550143", Body: "Order 43", Source: tasks.SourceAgent}}); err != nil {
		t.Fatal(err)
	}
	if _, err := cli.MakeCall(bg, producer.Call{Key: "order-43", CallPayload: tasks.CallPayload{To: "+14155550143", Say: "hello", Source: tasks.SourceOperator}}); !errors.Is(err, producer.ErrConflict) {
		t.Fatalf("a CLI call under the hub's SMS key: %v; want ErrConflict", err)
	}
	if res, err := cli.SendSMS(bg, producer.SMS{Key: "order-43", SMSPayload: tasks.SMSPayload{To: "+14155550143", Body: "Order 43", Source: tasks.SourceOperator}}); err != nil || !res.Existing {
		t.Fatalf("the hub's message again from the CLI: %+v %v", res, err)
	}
	n, err := asynq.NewInspectorFromRedisClient(rdb).ListPendingTasks(tasks.QueueDefault)
	if err != nil || len(n) != 2 {
		t.Fatalf("pending %d %v; want the two messages only", len(n), err)
	}
}

// A failover can keep a key's claim (written first, it reached the replica)
// and discard the enqueue that followed (it did not): the request fails
// (the replicas did not confirm it) and its retry finds the claim with no
// task. The retry queues the task; it must not answer with a task that no
// queue holds.
func TestRetryQueuesATaskAFailoverDiscarded(t *testing.T) {
	t.Parallel()
	p, rdb := newProducer(t)
	m := producer.SMS{SMSPayload: tasks.SMSPayload{To: "+14155550144", Body: "code 1234"}, Key: "lost-1", Queue: tasks.QueueCritical}
	if _, err := p.SendSMS(bg, m); err != nil {
		t.Fatal(err)
	}
	insp := asynq.NewInspectorFromRedisClient(rdb)
	if err := insp.DeleteTask(tasks.QueueCritical, "lost-1"); err != nil { // what the failover discarded
		t.Fatal(err)
	}
	m.Queue = tasks.QueueDefault // a retry may ask another priority; the claim's queue holds the task
	res, err := p.SendSMS(bg, m)
	if err != nil || !res.Existing || res.TaskID != "lost-1" || res.Queue != tasks.QueueCritical {
		t.Fatalf("retry: %+v %v", res, err)
	}
	info, err := insp.GetTaskInfo(tasks.QueueCritical, "lost-1")
	if err != nil || info.State != asynq.TaskStatePending {
		t.Fatalf("after the retry: %+v %v; want the task pending", info, err)
	}
	if res, err := p.SendSMS(bg, m); err != nil || !res.Existing || res.State != "pending" {
		t.Fatalf("another retry: %+v %v", res, err)
	}
	if n, _ := insp.ListPendingTasks(tasks.QueueCritical); len(n) != 1 {
		t.Fatalf("%d tasks pending; want one", len(n))
	}
}

// Requests with one key at the same moment (a client retrying on its own
// timeout) all answer with one task, however they interleave.
func TestConcurrentRequestsWithOneKeyQueueOneTask(t *testing.T) {
	t.Parallel()
	p, rdb := newProducer(t)
	m := producer.SMS{SMSPayload: tasks.SMSPayload{To: "+14155550145", Body: "code 5678"}, Key: "same-1"}
	const n = 16
	errs := make(chan error, n)
	fresh := make(chan bool, n)
	for range n {
		go func() {
			res, err := p.SendSMS(bg, m)
			if err == nil && res.TaskID != "same-1" {
				err = errors.New("answered with task " + res.TaskID)
			}
			errs <- err
			fresh <- err == nil && !res.Existing
		}()
	}
	news := 0
	for range n {
		if err := <-errs; err != nil {
			t.Error(err)
		}
		if <-fresh {
			news++
		}
	}
	if news > 1 {
		t.Errorf("%d requests answered as new; want at most one", news)
	}
	if got, _ := asynq.NewInspectorFromRedisClient(rdb).ListPendingTasks(tasks.QueueDefault); len(got) != 1 {
		t.Fatalf("%d tasks pending; want one", len(got))
	}
}
