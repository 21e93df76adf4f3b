package httpapi

import (
	"context"
	"fmt"
	"strings"
	"sync"
	"testing"
	"time"

	"github.com/hibiken/asynq"

	"github.com/sbagenthub/twilio-worker/calls"
	"github.com/sbagenthub/twilio-worker/ledger"
	"github.com/sbagenthub/twilio-worker/tasks"
)

// Tests of issue 15's defects as the agent hub meets them. They use only
// what the HTTP API offers, so they run against the code before the
// producer package too (where they fail).

// tasksNamed counts the queues that hold a task with id.
func tasksNamed(t *testing.T, insp *asynq.Inspector, id string) int {
	t.Helper()
	n := 0
	for _, q := range tasks.QueueOrder {
		if _, err := insp.GetTaskInfo(q, id); err == nil {
			n++
		}
	}
	return n
}

// Defect 7: three requests with one Idempotency-Key and three priorities,
// released together, make one task; every answer names it.
func TestOneKeyMakesOneTaskInEveryQueue(t *testing.T) {
	t.Parallel()
	s := newAPIServer(t, nil)
	const keys = 10
	priorities := []string{"critical", "default", "bulk"}
	type answer struct {
		status     int
		id, queue  string
		raw        string
		key, asked string
	}
	answers := make(chan answer, keys*len(priorities))
	start := make(chan struct{})
	var wg sync.WaitGroup
	for k := range keys {
		key := fmt.Sprintf("retry-%d", k)
		for _, p := range priorities {
			wg.Add(1)
			go func() {
				defer wg.Done()
				body := fmt.Sprintf(`{"action":"sendSMS","arguments":{"to":"+1415555%04d","body":"order %d","priority":%q}}`, k, k, p)
				<-start
				r := post(t, s.url+"/v1/actions", body, map[string]string{"Idempotency-Key": key})
				a := answer{status: r.status, raw: string(r.body), key: key, asked: p}
				if r.status < 300 {
					v := r.json(t)
					a.id, _ = v["taskId"].(string)
					a.queue, _ = v["queue"].(string)
				}
				answers <- a
			}()
		}
	}
	close(start)
	wg.Wait()
	close(answers)
	queueOf := map[string]string{}
	for a := range answers {
		if a.status != 202 && a.status != 200 {
			t.Fatalf("key %s priority %s: %d %s", a.key, a.asked, a.status, a.raw)
		}
		if a.id != a.key {
			t.Fatalf("key %s answered task %q", a.key, a.id)
		}
		if q, seen := queueOf[a.key]; seen && q != a.queue {
			t.Errorf("key %s answered as queued on %s and on %s", a.key, q, a.queue)
		}
		queueOf[a.key] = a.queue
	}
	twice := 0
	for k := range keys {
		if n := tasksNamed(t, s.Inspector, fmt.Sprintf("retry-%d", k)); n != 1 {
			twice++
			t.Errorf("key retry-%d: %d tasks", k, n)
		}
	}
	if twice > 0 {
		t.Fatalf("%d of %d keys made more than one task", twice, keys)
	}
}

// Defect 8, while the key is held: the same key with another body, or for
// another action, is 409 naming Idempotency-Key, and the first task stays
// as it was.
func TestKeyReusedWithOtherArgumentsIsAConflict(t *testing.T) {
	t.Parallel()
	s := newAPIServer(t, func(s *Server) { s.Calls = calls.NewStore(s.Redis) })
	h := map[string]string{"Idempotency-Key": "order-42"}
	sms := func(body string) string {
		return `{"action":"sendSMS","arguments":{"to":"+14155551234","body":"` + body + `"}}`
	}
	if r := post(t, s.url+"/v1/actions", sms("order 42 shipped"), h); r.status != 202 {
		t.Fatalf("first: %d %s", r.status, r.body)
	}
	for name, body := range map[string]string{
		"another body": sms("order 42 DELIVERED"),
		"a call":       `{"action":"makeCall","arguments":{"to":"+14155551234","say":"hello"}}`,
	} {
		r := post(t, s.url+"/v1/actions", body, h)
		if e := r.apiErr(t); r.status != 409 || e.Field != "Idempotency-Key" {
			t.Errorf("%s under the same key: %d %s; want 409 naming Idempotency-Key", name, r.status, r.body)
		}
	}
	info, err := s.Inspector.GetTaskInfo("default", "order-42")
	if err != nil || !strings.Contains(string(info.Payload), "order 42 shipped") {
		t.Fatalf("the first task: %+v %v", info, err)
	}
	if r := post(t, s.url+"/v1/actions", sms("order 42 shipped"), h); r.status != 200 {
		t.Fatalf("a true retry: %d %s; want 200 and the first task", r.status, r.body)
	}
}

// Defect 8, after the key's lifetime: the key makes a new task, and what
// the old task sent (its send-ledger line, kept 48 h) is not taken for the
// new one's.
func TestKeyReusedAfterItsLifetimeIsANewTask(t *testing.T) {
	t.Parallel()
	s := newAPIServer(t, func(s *Server) { s.Rules.ResultTTL = time.Second })
	ctx := context.Background()
	h := map[string]string{"Idempotency-Key": "order-43"}
	body := func(b string) string {
		return `{"action":"sendSMS","arguments":{"to":"+14155551234","body":"` + b + `"}}`
	}
	if r := post(t, s.url+"/v1/actions", body("order 43 shipped"), h); r.status != 202 {
		t.Fatalf("first: %d %s", r.status, r.body)
	}
	// The old task ran and sent; RESULT_TTL later asynq drops it.
	led := ledger.New(s.Redis)
	if err := led.Begin(ctx, "order-43", "+14155551234", time.Now()); err != nil {
		t.Fatal(err)
	}
	if err := led.Commit(ctx, "order-43", "+14155551234", "SM00000000000000000000000000000043"); err != nil {
		t.Fatal(err)
	}
	if err := s.Inspector.DeleteTask("default", "order-43"); err != nil {
		t.Fatal(err)
	}
	deadline := time.Now().Add(30 * time.Second)
	for s.Redis.Exists(ctx, "tw:{idem:order-43}").Val() == 1 {
		if time.Now().After(deadline) {
			t.Fatal("the key outlived RESULT_TTL by 30 s")
		}
		time.Sleep(50 * time.Millisecond)
	}
	r := post(t, s.url+"/v1/actions", body("order 43 DELIVERED"), h)
	if r.status != 202 {
		t.Fatalf("the key after its lifetime: %d %s; want 202 and a new task", r.status, r.body)
	}
	info, err := s.Inspector.GetTaskInfo("default", "order-43")
	if err != nil || !strings.Contains(string(info.Payload), "order 43 DELIVERED") {
		t.Fatalf("the new task: %+v %v", info, err)
	}
	e, err := led.Get(ctx, "order-43", "+14155551234")
	if err != nil {
		t.Fatal(err)
	}
	if e.Sent() {
		t.Fatalf("the new task would answer the old task's SID %s and send nothing", e.SID)
	}
}

// Defect 10: input a lenient decoder mends or a loose check lets through is
// refused with a 4xx naming the field.
func TestActionsRefuseInputThatWouldBeMangled(t *testing.T) {
	t.Parallel()
	s := newAPIServer(t, func(s *Server) { s.Calls = calls.NewStore(s.Redis) })
	sms := func(args string) string { return `{"action":"sendSMS","arguments":{"to":"+14155551234",` + args + `}}` }
	call := func(args string) string {
		return `{"action":"makeCall","arguments":{"to":"+14155551234",` + args + `}}`
	}
	tests := []struct {
		name, path, body string
		status           int
		field            string
	}{
		{"duplicate body", "/v1/actions", sms(`"body":"hi","body":"bye"`), 422, "body"},
		{"duplicate to", "/v1/actions", `{"action":"sendSMS","arguments":{"to":"+14155551234","to":"+14155550000","body":"hi"}}`, 422, "to"},
		{"duplicate action", "/v1/actions", `{"action":"makeCall","action":"sendSMS","arguments":{"to":"+14155551234","body":"hi"}}`, 422, "action"},
		{"invalid UTF-8", "/v1/actions", sms("\"body\":\"caf\xe9\""), 422, "body"},
		{"NUL body", "/v1/actions", sms(`"body":"\u0000"`), 422, "body"},
		{"zero-width space body", "/v1/actions", sms(`"body":"\u200b\u200b"`), 422, "body"},
		{"BOM body", "/v1/actions", sms(`"body":"\ufeff"`), 422, "body"},
		{"validFor 1ns", "/v1/actions", sms(`"body":"hi","validFor":"1ns"`), 422, "validFor"},
		{"60,000-character url", "/v1/actions", call(`"url":"https://example.com/` + strings.Repeat("a", 60000) + `"`), 422, "url"},
		{"empty say", "/v1/actions", call(`"say":""`), 422, "say"},
		{"recipients a string", "/v1/campaigns", `{"campaign":"c1","body":"hi","recipients":"+14155551234"}`, 422, "recipients"},
		{"duplicate campaign member", "/v1/campaigns", `{"campaign":"c1","campaign":"c2","body":"hi","recipients":["+14155551234"]}`, 422, "campaign"},
	}
	for _, tt := range tests {
		t.Run(tt.name, func(t *testing.T) {
			r := post(t, s.url+tt.path, tt.body, map[string]string{"Content-Type": "application/json"})
			e := r.apiErr(t)
			if r.status != tt.status || e.Field != tt.field {
				t.Fatalf("%d %+v; want %d naming %q", r.status, e, tt.status, tt.field)
			}
		})
	}
	for _, q := range tasks.QueueOrder {
		if info, err := s.Inspector.GetQueueInfo(q); err == nil && info.Size > 0 {
			t.Fatalf("queue %s holds %d tasks after refused requests", q, info.Size)
		}
	}
}
