package e2e

import (
	"encoding/json"
	"errors"
	"fmt"
	"io"
	"net/http"
	"net/url"
	"os"
	"path/filepath"
	"strings"
	"testing"
	"time"

	"github.com/hibiken/asynq"

	"github.com/sbagenthub/twilio-worker/delivery"
	"github.com/sbagenthub/twilio-worker/tasks"
	"github.com/sbagenthub/twilio-worker/twiliosim"
)

// TestLookAlikeTypesAndBadSIDsAreArchived: asynq's mux matches by prefix,
// so on main raw tasks of type sms:sendx, sms:send:v2 and call:make:v2 were
// really sent or placed, and a call:poll with a path in its callSid was
// polled forever. Each must be archived at once with its reason, and nothing
// reach Twilio.
func TestLookAlikeTypesAndBadSIDsAreArchived(t *testing.T) {
	t.Parallel()
	s := newStack(t, nil)
	rdb := s.redis.Client(t)
	client := asynq.NewClientFromRedisClient(rdb)
	insp := asynq.NewInspectorFromRedisClient(rdb)
	sms := `{"to":"+14155550191","body":"look-alike"}`
	call := `{"to":"+14155550192","say":"look-alike"}`
	poison := []struct{ typ, payload, id, reason string }{
		{"sms:sendx", sms, "la-sendx", "unknown task type"},
		{"sms:send:v2", sms, "la-send-v2", "unknown task type"},
		{"call:make:v2", call, "la-call-v2", "unknown task type"},
		{"SMS:SEND", sms, "la-upper", "unknown task type"},
		{tasks.TypePollCall, `{"callSid":"../../../x"}`, "la-poll", "callSid: must be a call SID"},
		{tasks.TypeTrackSMS, `{"messageSid":"SM/../../x"}`, "la-track", "messageSid: must be a message SID"},
	}
	for _, p := range poison {
		if _, err := client.Enqueue(asynq.NewTask(p.typ, []byte(p.payload), asynq.TaskID(p.id), asynq.MaxRetry(10))); err != nil {
			t.Fatal(err)
		}
	}
	for _, p := range poison {
		deadline := time.Now().Add(30 * time.Second)
		for {
			ti, err := insp.GetTaskInfo(tasks.QueueDefault, p.id)
			if errors.Is(err, asynq.ErrTaskNotFound) {
				t.Fatalf("%s: gone from the queue: a handler ran it and it completed; want archived", p.typ)
			}
			if err != nil {
				t.Fatal(err)
			}
			if ti.State == asynq.TaskStateArchived {
				if ti.Retried != 0 || !strings.Contains(ti.LastErr, p.reason) {
					t.Errorf("%s archived after %d retries with %q; want at once, with %q", p.typ, ti.Retried, ti.LastErr, p.reason)
				}
				break
			}
			if time.Now().After(deadline) {
				t.Fatalf("%s: %s (%q); want archived", p.typ, ti.State, ti.LastErr)
			}
			time.Sleep(50 * time.Millisecond)
		}
	}
	// A real message after them goes, and is the only thing Twilio saw.
	r := runEnqueue(t, s.env, "sms", "--to", "+14155550193", "--body", "the real one")
	if r.code != 0 {
		t.Fatalf("exit %d: %s", r.code, r.stderr)
	}
	var out struct{ TaskID string }
	r.json(t, &out)
	if st := waitStatus(t, s.env, out.TaskID); st.State != "completed" {
		t.Fatalf("the real message: %+v", st)
	}
	if msgs, calls := simMessages(t, s.simURL), simCalls(t, s.simURL); len(msgs) != 1 || len(calls) != 0 {
		t.Fatalf("%d messages and %d calls reached the simulator; want only the real message", len(msgs), len(calls))
	}
	// The call-status command refuses a malformed SID as bad input.
	if r := runEnqueue(t, s.env, "call-status", "../../../x"); r.code != 2 || !strings.Contains(r.stderr, "CALL_SID") {
		t.Fatalf("call-status with a path: exit %d %q; want 2 naming CALL_SID", r.code, r.stderr)
	}
}

// TestCampaignTaskIDsMaskedEverywhere: campaign task ids are
// {campaign}:{E.164}. The worker's log, `enqueue log` and the dashboard must
// show them masked (on main the worker logged task=c1:+14155558103); `enqueue
// log --unmask` shows them whole.
func TestCampaignTaskIDsMaskedEverywhere(t *testing.T) {
	t.Parallel()
	s := newStack(t, nil, "CALL_POLL_FIRST=1s", "LOG_LEVEL=debug")
	list := filepath.Join(t.TempDir(), "list.txt")
	if err := os.WriteFile(list, []byte("+14155558103\n"), 0o600); err != nil {
		t.Fatal(err)
	}
	if r := runEnqueue(t, s.env, "bulk", "--campaign", "c1", "--body", "Your code is 771234", list); r.code != 0 {
		t.Fatalf("bulk: exit %d %s", r.code, r.stderr)
	}
	const id = "c1:+14155558103"
	if st := waitStatus(t, s.env, id); st.State != "completed" {
		t.Fatalf("campaign message: %+v", st)
	}
	deadline := time.Now().Add(30 * time.Second)
	for {
		entries := readLog(t, s.env)
		delivered := false
		for _, e := range entries {
			if strings.Contains(e.TaskID, "4155558103") || strings.Contains(e.To, "4155558103") || strings.Contains(e.Body, "771234") {
				t.Fatalf("enqueue log without --unmask shows %+v", e)
			}
			delivered = delivered || (e.Event == "delivered" && e.TaskID == "c1:+14***103")
		}
		if delivered {
			break
		}
		if time.Now().After(deadline) {
			t.Fatalf("no delivered entry for the masked task id in %+v", entries)
		}
		time.Sleep(100 * time.Millisecond)
	}
	if full := readLog(t, s.env, "--task", id, "--unmask"); len(full) == 0 || full[0].TaskID != id {
		t.Fatalf("--unmask: %+v", full)
	}
	if n := metricValue(t, "http://"+s.http+"/metrics", "twilioworker_log_entries"); n < 3 {
		t.Fatalf("twilioworker_log_entries = %v; want the stream's length (at least sending, sent, delivered)", n)
	}
	if out := s.worker.output(); strings.Contains(out, "4155558103") || strings.Contains(out, "771234") {
		t.Fatalf("the worker's log shows the number or the body:\n%s", out)
	}
	resp, err := http.Get("http://" + s.http + "/monitoring/api/queues/bulk/completed_tasks")
	if err != nil {
		t.Fatal(err)
	}
	b, _ := io.ReadAll(resp.Body)
	resp.Body.Close()
	if resp.StatusCode != 200 || strings.Contains(string(b), "4155558103") || strings.Contains(string(b), "771234") {
		t.Fatalf("dashboard API: %d %s", resp.StatusCode, b)
	}
}

// TestCallbacksForSIDsWeNeverSentRecordNothing: signed status callbacks for
// message and call SIDs the worker never sent are answered 200 and leave no
// key behind (on main each made a tw:msg:{sid} kept 48 h), also when they
// name a real task of ours; the real message's own callbacks, whose URL
// names its task, still move its record to delivered.
func TestCallbacksForSIDsWeNeverSentRecordNothing(t *testing.T) {
	t.Parallel()
	s := newPublicStack(t, true, "CALL_POLL_FIRST=30m")
	r := runEnqueue(t, s.env, "sms", "--to", "+14155550194", "--body", "tracked by callbacks", "--id", "real-1")
	if r.code != 0 {
		t.Fatalf("exit %d: %s", r.code, r.stderr)
	}
	st := waitStatus(t, s.env, "real-1")
	var res struct{ MessageSid string }
	_ = json.Unmarshal(st.Result, &res)
	rdb := s.redis.Client(t)
	msgs := delivery.NewStore(rdb)
	deadline := time.Now().Add(30 * time.Second)
	for {
		rec, err := msgs.Get(bg, res.MessageSid)
		if err == nil && rec.Status == "delivered" && rec.TaskID == "real-1" {
			break
		}
		if time.Now().After(deadline) {
			t.Fatalf("the real message's callbacks: %+v %v; want delivered, linked to real-1", rec, err)
		}
		time.Sleep(50 * time.Millisecond)
	}
	base := "http://" + s.http + "/twilio/status"
	var strangers []string
	for i := range 10 {
		sm, ca := fmt.Sprintf("SM%032x", 0xfeed0000+i), fmt.Sprintf("CA%032x", 0xfeed0000+i)
		strangers = append(strangers, sm, ca)
		for _, u := range []string{base, tasks.StatusCallbackFor(base, "real-1"), tasks.StatusCallbackFor(base, "never-queued")} {
			for _, form := range []url.Values{
				{"MessageSid": {sm}, "MessageStatus": {"delivered"}, "To": {"+14155550195"}},
				{"CallSid": {ca}, "CallStatus": {"completed"}, "CallDuration": {"30"}},
			} {
				req, _ := http.NewRequest("POST", u, strings.NewReader(form.Encode()))
				req.Header.Set("Content-Type", "application/x-www-form-urlencoded")
				req.Header.Set("X-Twilio-Signature", twiliosim.Sign(simToken, u, form))
				resp, err := http.DefaultClient.Do(req)
				if err != nil {
					t.Fatal(err)
				}
				resp.Body.Close()
				if resp.StatusCode != 200 {
					t.Fatalf("callback for %v at %s: %d, want 200", form, u, resp.StatusCode)
				}
			}
		}
	}
	for _, sid := range strangers {
		if keys, err := rdb.Keys(bg, "*"+sid+"*").Result(); err != nil || len(keys) != 0 {
			t.Fatalf("a callback for %s, never sent, left %v (%v)", sid, keys, err)
		}
	}
}
