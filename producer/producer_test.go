package producer_test

import (
	"context"
	"encoding/json"
	"errors"
	"strings"
	"testing"
	"time"

	"github.com/hibiken/asynq"
	"github.com/redis/go-redis/v9"

	"github.com/sbagenthub/twilio-worker/commlog"
	"github.com/sbagenthub/twilio-worker/internal/redistest"
	"github.com/sbagenthub/twilio-worker/ledger"
	"github.com/sbagenthub/twilio-worker/producer"
	"github.com/sbagenthub/twilio-worker/tasks"
)

var bg = context.Background()

func newProducer(t *testing.T) (*producer.Producer, *redis.Client) {
	t.Helper()
	rdb := redistest.Start(t).Client(t)
	return &producer.Producer{Redis: rdb, Comms: commlog.New(rdb, commlog.Config{}), Source: "test"}, rdb
}

func payloadOf(t *testing.T, p *producer.Producer, res producer.Result, v any) {
	t.Helper()
	info, err := asynq.NewInspectorFromRedisClient(p.Redis).GetTaskInfo(res.Queue, res.TaskID)
	if err != nil {
		t.Fatal(err)
	}
	if err := json.Unmarshal(info.Payload, v); err != nil {
		t.Fatal(err)
	}
}

func TestSendSMSQueuesTheNormalisedPayloadAndLogsIt(t *testing.T) {
	t.Parallel()
	p, rdb := newProducer(t)
	res, err := p.SendSMS(bg, producer.SMS{SMSPayload: tasks.SMSPayload{To: "+1 (415) 555-0101", Body: "hi"}, Key: "k-1", Queue: tasks.QueueCritical})
	if err != nil {
		t.Fatal(err)
	}
	if res.TaskID != "k-1" || res.Queue != tasks.QueueCritical || res.To != "+14155550101" || res.Existing {
		t.Fatalf("result %+v", res)
	}
	var got tasks.SMSPayload
	payloadOf(t, p, res, &got)
	if got.To != "+14155550101" || got.Class != tasks.ClassTransactional {
		t.Fatalf("payload %+v", got)
	}
	var entries []commlog.Entry
	_, err = commlog.New(rdb, commlog.Config{}).Read(bg, commlog.Filter{TaskID: "k-1"}, func(e commlog.Entry) error {
		entries = append(entries, e)
		return nil
	})
	if err != nil || len(entries) != 1 || entries[0].Event != commlog.Queued || !strings.Contains(entries[0].Reason, "test") {
		t.Fatalf("log %+v %v", entries, err)
	}
}

func TestSendAtSchedulesAndValidForCountsFromIt(t *testing.T) {
	t.Parallel()
	p, _ := newProducer(t)
	at := time.Now().Add(2 * time.Hour).UTC().Truncate(time.Second)
	res, err := p.SendSMS(bg, producer.SMS{SMSPayload: tasks.SMSPayload{To: "+14155550102", Body: "code 1234", ValidFor: "10m"}, SendAt: at})
	if err != nil {
		t.Fatal(err)
	}
	if !res.RunAt.Equal(at) || res.State != "scheduled" {
		t.Fatalf("result %+v; want scheduled for %s", res, at)
	}
	var got tasks.SMSPayload
	payloadOf(t, p, res, &got)
	if got.ExpiresAt == nil || !got.ExpiresAt.Equal(at.Add(10*time.Minute)) {
		t.Fatalf("expiresAt %v; want sendAt + validFor = %s", got.ExpiresAt, at.Add(10*time.Minute))
	}
	st, err := p.Status(bg, res.TaskID)
	if err != nil || st.NextRunAt == "" {
		t.Fatalf("status %+v %v", st, err)
	}
	if next, _ := time.Parse(time.RFC3339, st.NextRunAt); !next.Equal(at) {
		t.Fatalf("nextRunAt %s, want %s", st.NextRunAt, at)
	}
	if _, err := producer.ParseSendAt(time.Now().Add(36 * 24 * time.Hour).Format(time.RFC3339)); err == nil {
		t.Fatal("sendAt 36 days ahead accepted")
	}
	if _, err := producer.ParseSendAt("tomorrow 9am"); err == nil {
		t.Fatal("sendAt not RFC 3339 accepted")
	}
}

func TestCancelBeforeItRuns(t *testing.T) {
	t.Parallel()
	p, _ := newProducer(t)
	m := producer.SMS{SMSPayload: tasks.SMSPayload{To: "+14155550103", Body: "later"}, Key: "later-1", SendAt: time.Now().Add(time.Hour)}
	if _, err := p.SendSMS(bg, m); err != nil {
		t.Fatal(err)
	}
	st, err := p.Cancel(bg, "later-1")
	if err != nil || st.State != "canceled" {
		t.Fatalf("cancel: %+v %v", st, err)
	}
	if _, err := p.Status(bg, "later-1"); !errors.Is(err, tasks.ErrTaskNotFound) {
		t.Fatalf("status after cancel: %v", err)
	}
	// A retry of the request answers the canceled task; nothing is queued.
	res, err := p.SendSMS(bg, m)
	if err != nil || !res.Existing || res.State != "canceled" {
		t.Fatalf("retry after cancel: %+v %v", res, err)
	}
	if _, err := p.Cancel(bg, "nope"); !errors.Is(err, tasks.ErrTaskNotFound) {
		t.Fatalf("cancel of an unknown task: %v", err)
	}
}

func TestChecksRunAndARefusalFreesTheKey(t *testing.T) {
	t.Parallel()
	p, _ := newProducer(t)
	refuse := true
	p.Checks = append(p.Checks, func(_ context.Context, r *producer.Request) error {
		if r.Type != tasks.TypeSendSMS || r.SMS.To != "+14155550104" {
			t.Errorf("check saw %+v", r)
		}
		if refuse {
			return &tasks.FieldError{Field: "to", Problem: "is blocked"}
		}
		r.SMS.From = "+15005550006" // a sender choice
		return nil
	})
	m := producer.SMS{SMSPayload: tasks.SMSPayload{To: "+14155550104", Body: "hi"}, Key: "checked"}
	var fe *tasks.FieldError
	if _, err := p.SendSMS(bg, m); !errors.As(err, &fe) || fe.Field != "to" {
		t.Fatalf("refused: %v", err)
	}
	refuse = false
	res, err := p.SendSMS(bg, m)
	if err != nil || res.Existing {
		t.Fatalf("after a refusal the key is free: %+v %v", res, err)
	}
	var got tasks.SMSPayload
	payloadOf(t, p, res, &got)
	if got.From != "+15005550006" {
		t.Fatalf("the check's sender choice was lost: %+v", got)
	}
	// A retry hashes the client's request, not the check's choice.
	if res, err := p.SendSMS(bg, m); err != nil || !res.Existing {
		t.Fatalf("retry: %+v %v", res, err)
	}
}

func TestKeysAndInternalIDsAreSeparate(t *testing.T) {
	t.Parallel()
	for _, key := range []string{"ord-9:redeliver-1", "2fa-17-123456", "5b694bd5-1243-4f22-80c4-345f6a93ba8e"} {
		if !tasks.ValidKey(key) {
			t.Errorf("client key %q refused", key)
		}
	}
	for _, id := range []string{"ord-9" + tasks.RedeliverySep + "1", tasks.PollTaskID("CA0123456789abcdef0123456789abcdef"), "a~b", "", strings.Repeat("k", 129)} {
		if tasks.ValidKey(id) {
			t.Errorf("internal or bad id %q is a valid client key", id)
		}
	}
	p, _ := newProducer(t)
	if _, err := p.SendSMS(bg, producer.SMS{SMSPayload: tasks.SMSPayload{To: "+14155550105", Body: "hi"}, Key: "x~redeliver-1"}); err == nil {
		t.Fatal("a key with ~ accepted")
	}
}

func TestHandleRegistersAnAction(t *testing.T) {
	t.Parallel()
	p, _ := newProducer(t)
	p.Handle("hangupCall", func(_ context.Context, _ *producer.Producer, a producer.Action) (any, error) {
		var args struct{ CallSid string }
		if err := json.Unmarshal(a.Args, &args); err != nil {
			return nil, err
		}
		return map[string]string{"hungUp": args.CallSid}, nil
	})
	a, err := p.Decode([]byte(`{"action":"hangupCall","arguments":{"callSid":"CA1"}}`))
	if err != nil {
		t.Fatal(err)
	}
	out, err := p.Do(bg, a)
	if m, _ := out.(map[string]string); err != nil || m["hungUp"] != "CA1" {
		t.Fatalf("Do: %v %v", out, err)
	}
	if _, err := producer.Decode([]byte(`{"action":"hangupCall","arguments":{}}`)); err == nil {
		t.Fatal("the package's Decode knows a producer's own action")
	}
	if _, err := p.Decode([]byte(`{"action":"hangupCall","arguments":{"callSid":"CA1","callSid":"CA2"}}`)); err == nil {
		t.Fatal("a duplicate member in a registered action's arguments accepted")
	}
}

// A task waiting to retry may be canceled only while the send ledger shows
// no attempt: one deferred before it tried (a rate limit, quiet hours) is
// unstarted; one whose attempt began may have been sent, and is ErrStarted.
func TestCancelInRetryOnlyWithoutAnAttempt(t *testing.T) {
	t.Parallel()
	p, rdb := newProducer(t)
	for _, key := range []string{"deferred-1", "tried-1"} {
		if _, err := p.SendSMS(bg, producer.SMS{SMSPayload: tasks.SMSPayload{To: "+14155550107", Body: key}, Key: key}); err != nil {
			t.Fatal(err)
		}
	}
	led := ledger.New(rdb)
	srv := asynq.NewServerFromRedisClient(rdb, asynq.Config{Concurrency: 2, LogLevel: asynq.FatalLevel,
		RetryDelayFunc: func(int, error, *asynq.Task) time.Duration { return time.Hour }})
	err := srv.Start(asynq.HandlerFunc(func(ctx context.Context, t *asynq.Task) error {
		id, _ := asynq.GetTaskID(ctx)
		if id == "tried-1" {
			if err := led.Begin(ctx, id, "+14155550107", time.Now()); err != nil {
				return err
			}
			return errors.New("lost answer")
		}
		return errors.New("deferred")
	}))
	if err != nil {
		t.Fatal(err)
	}
	insp := asynq.NewInspectorFromRedisClient(rdb)
	deadline := time.Now().Add(60 * time.Second)
	for {
		retry, err := insp.ListRetryTasks(tasks.QueueDefault)
		if err != nil {
			t.Fatal(err)
		}
		if len(retry) == 2 {
			break
		}
		if time.Now().After(deadline) {
			t.Fatalf("%d tasks in retry after 60 s", len(retry))
		}
		time.Sleep(20 * time.Millisecond)
	}
	srv.Shutdown()
	if st, err := p.Cancel(bg, "deferred-1"); err != nil || st.State != "canceled" {
		t.Fatalf("cancel of a deferred task: %+v %v", st, err)
	}
	if st, err := p.Cancel(bg, "tried-1"); !errors.Is(err, producer.ErrStarted) || st.State != "retry" {
		t.Fatalf("cancel of a task that tried: %+v %v; want ErrStarted", st, err)
	}
	if st, err := p.Status(bg, "tried-1"); err != nil || st.State != "retry" {
		t.Fatalf("the task that tried is %+v %v; want it left waiting", st, err)
	}
}
