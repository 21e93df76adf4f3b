package campaign_test

import (
	"context"
	"encoding/json"
	"errors"
	"fmt"
	"net/http/httptest"
	"strings"
	"testing"
	"time"

	"github.com/hibiken/asynq"
	"github.com/redis/go-redis/v9"

	"github.com/sbagenthub/twilio-worker/campaign"
	"github.com/sbagenthub/twilio-worker/fraud"
	"github.com/sbagenthub/twilio-worker/internal/redistest"
	"github.com/sbagenthub/twilio-worker/ledger"
	"github.com/sbagenthub/twilio-worker/optout"
	"github.com/sbagenthub/twilio-worker/tasks"
	"github.com/sbagenthub/twilio-worker/twilioapi"
	"github.com/sbagenthub/twilio-worker/twiliosim"
)

var bg = context.Background()

func newRedis(t *testing.T) *redis.Client {
	t.Helper()
	return redistest.Start(t).Client(t)
}

func deps(rdb *redis.Client) campaign.Deps {
	return campaign.Deps{Redis: rdb, Workers: 4, Batch: 3}
}

func submitFile(t *testing.T, d campaign.Deps, req campaign.Request, in string) campaign.Summary {
	t.Helper()
	sum, err := campaign.SubmitFile(bg, d, req, strings.NewReader(in))
	if err != nil {
		t.Fatalf("SubmitFile: %v", err)
	}
	return sum
}

func checkSummary(t *testing.T, got campaign.Summary, total, enqueued, already, dups, invalid, optedOut int64) {
	t.Helper()
	if got.Total != total || got.Enqueued != enqueued || got.AlreadyQueued != already || got.Duplicates != dups ||
		got.InvalidCount != invalid || int64(len(got.Invalid)) != invalid || got.OptedOut != optedOut {
		t.Fatalf("summary %+v; want total %d enqueued %d alreadyQueued %d duplicates %d invalid %d optedOut %d",
			got, total, enqueued, already, dups, invalid, optedOut)
	}
}

const mixedList = `+14155551234
+1 (415) 555-1234
+14155551235
not a number

+14155551236
+1 415 555 1235
+1415555
+14155551237
`

func TestSubmitCountsEachLineOnceAndRerunEnqueuesNothing(t *testing.T) {
	t.Parallel()
	rdb := newRedis(t)
	if _, err := optout.NewStore(rdb).Add(bg, optout.SMS, "+14155551236", optout.SourceCLI); err != nil {
		t.Fatal(err)
	}
	req := campaign.Request{Campaign: "incident-42", Body: "Service degraded; we are on it."}
	sum := submitFile(t, deps(rdb), req, mixedList)
	checkSummary(t, sum, 8, 3, 0, 2, 2, 1)
	if sum.Invalid[0].Line != 4 || sum.Invalid[1].Line != 8 || !strings.Contains(sum.Invalid[1].Reason, "too short") {
		t.Fatalf("invalid %+v", sum.Invalid)
	}
	insp := asynq.NewInspectorFromRedisClient(rdb)
	for _, n := range []string{"+14155551234", "+14155551235", "+14155551237"} {
		info, err := insp.GetTaskInfo(tasks.QueueBulk, "incident-42:"+n)
		if err != nil {
			t.Fatalf("task for %s: %v", n, err)
		}
		var p tasks.SMSPayload
		_ = json.Unmarshal(info.Payload, &p)
		if p.To != n || p.Campaign != "incident-42" || p.Body != req.Body {
			t.Fatalf("payload %+v", p)
		}
	}
	if q, _ := insp.GetQueueInfo(tasks.QueueBulk); q.Size != 3 {
		t.Fatalf("bulk queue holds %d tasks, want 3", q.Size)
	}

	again := submitFile(t, deps(rdb), req, mixedList)
	checkSummary(t, again, 8, 0, 3, 2, 2, 1)
	if q, _ := insp.GetQueueInfo(tasks.QueueBulk); q.Size != 3 {
		t.Fatalf("after the re-run the bulk queue holds %d tasks, want 3", q.Size)
	}
	st, err := campaign.NewStore(rdb).Status(bg, "incident-42")
	if err != nil {
		t.Fatal(err)
	}
	if st.Total != 3 || st.Enqueued != 3 || st.Pending != 3 || st.State != campaign.StateRunning {
		t.Fatalf("status %+v", st)
	}
}

func TestSubmitCSVPersonalisesAndValidatesEachBody(t *testing.T) {
	t.Parallel()
	rdb := newRedis(t)
	d := deps(rdb)
	d.Rules = tasks.Rules{MaxSegments: 1}
	in := "name,phone\nAda,+14155551234\n" + strings.Repeat("x", 200) + ",+14155551235\nBob,+14155551236\n"
	sum := submitFile(t, d, campaign.Request{Campaign: "c1", Body: "Hi {{name}}"}, in)
	checkSummary(t, sum, 3, 2, 0, 0, 1, 0)
	if sum.Invalid[0].Line != 3 || !strings.HasPrefix(sum.Invalid[0].Reason, "body:") {
		t.Fatalf("invalid %+v", sum.Invalid)
	}
	info, err := asynq.NewInspectorFromRedisClient(rdb).GetTaskInfo(tasks.QueueBulk, "c1:+14155551236")
	if err != nil {
		t.Fatal(err)
	}
	var p tasks.SMSPayload
	_ = json.Unmarshal(info.Payload, &p)
	if p.Body != "Hi Bob" {
		t.Fatalf("body %q", p.Body)
	}
}

func TestSubmitRefusesBadRequests(t *testing.T) {
	t.Parallel()
	rdb := newRedis(t)
	tests := []struct {
		name  string
		req   campaign.Request
		field string
	}{
		{"no campaign", campaign.Request{Body: "x", Recipients: []string{"+14155551234"}}, "campaign"},
		{"bad campaign", campaign.Request{Campaign: "a b", Body: "x", Recipients: []string{"+14155551234"}}, "campaign"},
		{"empty body", campaign.Request{Campaign: "c", Body: " ", Recipients: []string{"+14155551234"}}, "body"},
		{"bad class", campaign.Request{Campaign: "c", Body: "x", Class: "spam", Recipients: []string{"+14155551234"}}, "class"},
		{"placeholder without CSV", campaign.Request{Campaign: "c", Body: "Hi {{name}}", Recipients: []string{"+14155551234"}}, "body"},
		{"no recipients", campaign.Request{Campaign: "c", Body: "x"}, "recipients"},
	}
	for _, tt := range tests {
		t.Run(tt.name, func(t *testing.T) {
			_, err := campaign.Submit(bg, deps(rdb), tt.req)
			var fe *tasks.FieldError
			if !errors.As(err, &fe) || fe.Field != tt.field {
				t.Fatalf("err %v, want a FieldError on %s", err, tt.field)
			}
		})
	}
	if n, _ := rdb.DBSize(bg).Result(); n != 0 {
		t.Fatalf("refused requests left %d keys", n)
	}
}

func TestSubmitRequeuesWhatADeadSubmissionReserved(t *testing.T) {
	t.Parallel()
	rdb := newRedis(t)
	// A submission reserved +14155551234 and died before enqueueing it.
	rdb.HSet(bg, "tw:campaign:{c2}:to", "+14155551234", "r:dead")
	rdb.HSet(bg, "tw:campaign:{c2}", "total", 1)
	sum, err := campaign.Submit(bg, deps(rdb), campaign.Request{Campaign: "c2", Body: "x",
		Recipients: []string{"+14155551234", "+14155551235", "+14155551234"}})
	if err != nil {
		t.Fatal(err)
	}
	checkSummary(t, sum, 3, 2, 0, 1, 0, 0)
	st, _ := campaign.NewStore(rdb).Status(bg, "c2")
	if st.Total != 2 || st.Enqueued != 2 {
		t.Fatalf("status %+v", st)
	}
	// It reserved and queued: the next run finds both queued.
	sum, _ = campaign.Submit(bg, deps(rdb), campaign.Request{Campaign: "c2", Body: "x", Recipients: []string{"+14155551234", "+14155551235"}})
	checkSummary(t, sum, 2, 0, 2, 0, 0, 0)
}

func TestInvalidListIsCappedToTheFirstLines(t *testing.T) {
	t.Parallel()
	rdb := newRedis(t)
	bad := make([]string, campaign.InvalidListMax+50)
	for i := range bad {
		bad[i] = "x"
	}
	sum, err := campaign.Submit(bg, campaign.Deps{Redis: rdb}, campaign.Request{Campaign: "c3", Body: "x", Recipients: bad})
	if err != nil {
		t.Fatal(err)
	}
	if sum.InvalidCount != int64(len(bad)) || len(sum.Invalid) != campaign.InvalidListMax ||
		sum.Invalid[0].Line != 1 || sum.Invalid[len(sum.Invalid)-1].Line != campaign.InvalidListMax {
		t.Fatalf("invalidCount %d, %d listed, first %+v", sum.InvalidCount, len(sum.Invalid), sum.Invalid[0])
	}
}

// worker runs the real SMS handler, with the campaign store, against the
// simulator.
type worker struct {
	sim *twiliosim.Server
	srv *asynq.Server
}

func startWorker(t *testing.T, rdb *redis.Client) *worker {
	t.Helper()
	sim := twiliosim.New(twiliosim.Config{DeliveryDelay: 5 * time.Millisecond})
	hs := httptest.NewServer(sim)
	t.Cleanup(func() { hs.Close(); sim.Close() })
	tw, err := twilioapi.New(twilioapi.Config{AccountSID: sim.AccountSID(), AuthToken: twilioapi.Secret(sim.AuthToken()),
		PhoneNumber: "+15005550006", BaseURL: hs.URL, Timeout: 5 * time.Second})
	if err != nil {
		t.Fatal(err)
	}
	mux := asynq.NewServeMux()
	mux.Handle(tasks.TypeSendSMS, &tasks.SMSHandler{Messenger: tw, OptOuts: optout.NewStore(rdb),
		Ledger: ledger.New(rdb), Campaigns: campaign.NewStore(rdb)})
	srv := asynq.NewServerFromRedisClient(rdb, asynq.Config{Concurrency: 4, Queues: tasks.Queues,
		TaskCheckInterval: 10 * time.Millisecond, RetryDelayFunc: tasks.RetryDelay, IsFailure: tasks.IsFailure,
		LogLevel: asynq.FatalLevel})
	if err := srv.Start(mux); err != nil {
		t.Fatal(err)
	}
	t.Cleanup(srv.Shutdown)
	return &worker{sim: sim, srv: srv}
}

func waitState(t *testing.T, s *campaign.Store, id, state string) campaign.Status {
	t.Helper()
	deadline := time.Now().Add(30 * time.Second) // a backstop
	for {
		st, err := s.Status(bg, id)
		if err != nil {
			t.Fatal(err)
		}
		if st.State == state && st.Pending == 0 {
			return st
		}
		if time.Now().After(deadline) {
			t.Fatalf("campaign %s is %+v, want %s with nothing pending", id, st, state)
		}
		time.Sleep(10 * time.Millisecond)
	}
}

func TestHandlerCountsEachOutcomeOnce(t *testing.T) {
	t.Parallel()
	rdb := newRedis(t)
	store := campaign.NewStore(rdb)
	sum, err := campaign.Submit(bg, deps(rdb), campaign.Request{Campaign: "c4", Body: "Outage", Recipients: []string{
		"+14155551234", // sent
		"+15005550004", // Twilio 21610: archived, failed
		"+15005550001", // Twilio 21211: archived, failed
		"+14155551235", // opts out after submission: skipped
	}})
	if err != nil || sum.Enqueued != 4 {
		t.Fatalf("submit: %+v %v", sum, err)
	}
	if _, err := optout.NewStore(rdb).Add(bg, optout.SMS, "+14155551235", optout.SourceKeyword); err != nil {
		t.Fatal(err)
	}
	w := startWorker(t, rdb)
	st := waitState(t, store, "c4", campaign.StateDone)
	if st.Total != 4 || st.Sent != 1 || st.Failed != 2 || st.Skipped["optout"] != 1 || st.Canceled != 0 || st.Done != 4 {
		t.Fatalf("status %+v", st)
	}
	if n := len(w.sim.Messages()); n != 1 {
		t.Fatalf("simulator got %d messages, want 1", n)
	}
	// A task that runs again (at-least-once delivery) is not counted again.
	if counted, err := store.Record(bg, "c4", "+14155551234", tasks.OutcomeSent); err != nil || counted {
		t.Fatalf("second record counted=%v err=%v", counted, err)
	}
	if again, _ := store.Status(bg, "c4"); again.Sent != 1 || again.Done != 4 {
		t.Fatalf("status after a repeated outcome %+v", again)
	}
}

func TestCancelStopsEverythingNotSent(t *testing.T) {
	t.Parallel()
	rdb := newRedis(t)
	store := campaign.NewStore(rdb)
	insp := asynq.NewInspectorFromRedisClient(rdb)
	numbers := []string{"+14155551230", "+14155551231", "+14155551232", "+14155551233", "+14155551234"}
	if _, err := campaign.Submit(bg, deps(rdb), campaign.Request{Campaign: "c5", Body: "x", Recipients: numbers}); err != nil {
		t.Fatal(err)
	}
	// One task waits for a later time (as a deferred or retried one does).
	id := campaign.TaskID("c5", numbers[0])
	info, err := insp.GetTaskInfo(tasks.QueueBulk, id)
	if err != nil {
		t.Fatal(err)
	}
	if err := insp.DeleteTask(tasks.QueueBulk, id); err != nil {
		t.Fatal(err)
	}
	if _, err := asynq.NewClientFromRedisClient(rdb).Enqueue(asynq.NewTask(info.Type, info.Payload),
		asynq.Queue(tasks.QueueBulk), asynq.TaskID(id), asynq.ProcessIn(time.Hour)); err != nil {
		t.Fatal(err)
	}

	res, err := store.Cancel(bg, insp, "c5")
	if err != nil {
		t.Fatal(err)
	}
	if res.Removed != 1 || res.Canceled != 1 || res.State != campaign.StateCanceled {
		t.Fatalf("cancel %+v", res)
	}
	w := startWorker(t, rdb)
	st := waitState(t, store, "c5", campaign.StateCanceled)
	if st.Canceled != 5 || st.Sent != 0 {
		t.Fatalf("status %+v", st)
	}
	if n := len(w.sim.Messages()); n != 0 {
		t.Fatalf("simulator got %d messages after the cancel", n)
	}
	if _, err := campaign.Submit(bg, deps(rdb), campaign.Request{Campaign: "c5", Body: "x", Recipients: []string{"+14155551299"}}); !errors.Is(err, campaign.ErrCanceled) {
		t.Fatalf("submit to a canceled campaign: %v", err)
	}
	if _, err := store.Cancel(bg, insp, "nope"); !errors.Is(err, campaign.ErrNotFound) {
		t.Fatalf("cancel unknown: %v", err)
	}
}

// A batch larger than campaign.EnqueueFanout enqueues its tasks several at
// a time: every new recipient is queued once, a task a dead submission
// already queued counts as already queued, and a re-run enqueues nothing.
func TestSubmitLargeBatchesEnqueueEachRecipientOnce(t *testing.T) {
	t.Parallel()
	rdb := newRedis(t)
	const n = 600
	var in strings.Builder
	for i := range n {
		fmt.Fprintf(&in, "+1415555%04d\n", i)
		if i%50 == 0 { // a repeat, later in the list
			fmt.Fprintf(&in, "+1 415 555 %04d\n", i)
		}
	}
	// A dead submission reserved +14155550007 and queued its task, but did
	// not confirm it.
	rdb.HSet(bg, "tw:campaign:{big}:to", "+14155550007", "r:dead")
	rdb.HSet(bg, "tw:campaign:{big}", "total", 1)
	task, err := tasks.NewSendSMSTask(tasks.SMSPayload{To: "+14155550007", Body: "x", Campaign: "big"}, tasks.Rules{}, asynq.Queue(tasks.QueueBulk))
	if err != nil {
		t.Fatal(err)
	}
	if _, err := asynq.NewClientFromRedisClient(rdb).Enqueue(task, asynq.TaskID(campaign.TaskID("big", "+14155550007"))); err != nil {
		t.Fatal(err)
	}
	d := campaign.Deps{Redis: rdb, Workers: 4, Batch: 4*campaign.EnqueueFanout + 3}
	req := campaign.Request{Campaign: "big", Body: "x"}
	sum := submitFile(t, d, req, in.String())
	checkSummary(t, sum, n+n/50, n-1, 1, n/50, 0, 0)
	insp := asynq.NewInspectorFromRedisClient(rdb)
	if q, _ := insp.GetQueueInfo(tasks.QueueBulk); q.Size != n {
		t.Fatalf("bulk queue holds %d tasks, want %d", q.Size, n)
	}
	for _, i := range []int{0, 1, 299, 599} {
		num := fmt.Sprintf("+1415555%04d", i)
		if _, err := insp.GetTaskInfo(tasks.QueueBulk, campaign.TaskID("big", num)); err != nil {
			t.Fatalf("task for recipient %d: %v", i, err)
		}
	}
	st, err := campaign.NewStore(rdb).Status(bg, "big")
	if err != nil {
		t.Fatal(err)
	}
	if st.Total != n || st.Enqueued != n-1 {
		t.Fatalf("status %+v, want total %d enqueued %d", st, n, n-1)
	}
	again := submitFile(t, d, req, in.String())
	checkSummary(t, again, n+n/50, 0, n, n/50, 0, 0)
	if q, _ := insp.GetQueueInfo(tasks.QueueBulk); q.Size != n {
		t.Fatalf("after the re-run the bulk queue holds %d tasks, want %d", q.Size, n)
	}
}

// TestSubmitChecksEachRecipientParsed: Deps.Check (the fraud guard's
// CheckNumber) gets each recipient as validation parsed it, national forms
// included, and a refusal is an invalid line with the guard's reason.
func TestSubmitChecksEachRecipientParsed(t *testing.T) {
	rdb := newRedis(t)
	d := deps(rdb)
	d.Rules = tasks.Rules{DefaultRegion: "US"}
	d.Check = fraud.New(nil, fraud.Config{}).CheckNumber
	in := "+14155551234\n(900) 234-5678\n+234 803 123 4567\n+44 90 1234 5678\n415 555 1235\n"
	sum := submitFile(t, d, campaign.Request{Campaign: "guarded", Body: "hi"}, in)
	checkSummary(t, sum, 5, 2, 0, 0, 3, 0)
	want := []campaign.InvalidLine{
		{Line: 2, Reason: "to: premium-rate number in US refused (ALLOW_NUMBER_TYPES=premium-rate allows it)"},
		{Line: 3, Reason: "to: country NG is blocked (BLOCKED_COUNTRIES, a high-risk destination for SMS pumping and toll fraud)"},
		{Line: 4, Reason: "to: premium-rate number in GB refused (ALLOW_NUMBER_TYPES=premium-rate allows it)"},
	}
	if fmt.Sprint(sum.Invalid) != fmt.Sprint(want) {
		t.Fatalf("invalid lines %+v, want %+v", sum.Invalid, want)
	}
	info, err := asynq.NewInspectorFromRedisClient(rdb).GetQueueInfo(tasks.QueueBulk)
	if err != nil || info.Pending != 2 {
		t.Fatalf("bulk queue: %+v, %v; want the 2 that passed", info, err)
	}
}
