package tasks_test

import (
	"encoding/json"
	"errors"
	"fmt"
	"slices"
	"sort"
	"strings"
	"testing"
	"time"

	"github.com/hibiken/asynq"

	"github.com/sbagenthub/twilio-worker/calls"
	"github.com/sbagenthub/twilio-worker/optout"
	"github.com/sbagenthub/twilio-worker/ratelimit"
	"github.com/sbagenthub/twilio-worker/tasks"
	"github.com/sbagenthub/twilio-worker/twiliosim"
)

func (h *harness) call(t *testing.T, p tasks.CallPayload) (makeInfo *asynq.TaskInfo, sid string) {
	t.Helper()
	task, err := tasks.NewMakeCallTask(p, tasks.Rules{})
	if err != nil {
		t.Fatal(err)
	}
	info, err := h.client.Enqueue(task)
	if err != nil {
		t.Fatal(err)
	}
	final := h.waitFinal(t, info.ID)
	var res tasks.CallResult
	_ = json.Unmarshal(final.Result, &res)
	return final, res.CallSID
}

func TestCallsFollowedToTheirEnd(t *testing.T) {
	t.Parallel()
	h := newHarness(t, harnessOpt{})
	tests := []struct{ to, final string }{
		{"+14155550170", "completed"},
		{"+15005551001", "busy"},
		{"+15005551002", "no-answer"},
		{"+15005551003", "failed"},
	}
	for _, tt := range tests {
		t.Run(tt.final, func(t *testing.T) {
			t.Parallel()
			mk, sid := h.call(t, tasks.CallPayload{To: tt.to, Say: "Service <api> is down & paging you"})
			if mk.State != asynq.TaskStateCompleted || !strings.HasPrefix(sid, "CA") {
				t.Fatalf("call:make %s %q result %s", mk.State, mk.LastErr, mk.Result)
			}
			poll := h.waitFinal(t, tasks.PollTaskID(sid))
			var st tasks.CallState
			if err := json.Unmarshal(poll.Result, &st); err != nil {
				t.Fatalf("poll result %s", poll.Result)
			}
			if st.Status != tt.final || st.CallSID != sid || st.To != tt.to {
				t.Fatalf("state %+v, want %s", st, tt.final)
			}
			if poll.Retried != 0 {
				t.Fatalf("polling consumed %d retries", poll.Retried)
			}
			simCall, _ := h.sim.Call(sid)
			if tt.final == "completed" {
				if st.Duration != simCall.Duration || st.Duration < 1 || st.EndTime == "" {
					t.Fatalf("state %+v, simulator duration %d", st, simCall.Duration)
				}
			}
			// Growing waits (1 s, then 2 s) over a call of about 1.3 s.
			if simCall.Fetches < 1 || simCall.Fetches > 3 {
				t.Fatalf("%d fetches for one call; want a handful, growing apart", simCall.Fetches)
			}
			if !strings.Contains(simCall.Twiml, "&lt;api&gt; is down &amp; paging") {
				t.Fatalf("say text not escaped into TwiML: %q", simCall.Twiml)
			}
			rec, err := h.records.Get(bg, sid)
			if err != nil || rec.History[0].Status != "queued" || rec.History[len(rec.History)-1].Status != tt.final {
				t.Fatalf("record %+v (%v)", rec, err)
			}
		})
	}
}

func TestStatusCallbackEndsPollingWithoutFetch(t *testing.T) {
	t.Parallel()
	h := newHarness(t, harnessOpt{sim: twiliosim.Config{CallDuration: 30 * time.Second},
		polling: tasks.Polling{First: 2 * time.Second, Max: 2 * time.Second}})
	_, sid := h.call(t, tasks.CallPayload{To: "+14155550171", URL: "https://example.com/twiml"})
	// What POST /twilio/status does with a completed event.
	if _, _, err := h.records.Apply(bg, sid, calls.Update{Status: "completed", At: time.Now(), Source: "callback", Duration: 7}); err != nil {
		t.Fatal(err)
	}
	poll := h.waitFinal(t, tasks.PollTaskID(sid))
	var st tasks.CallState
	_ = json.Unmarshal(poll.Result, &st)
	if st.Status != "completed" || st.Duration != 7 {
		t.Fatalf("state %+v", st)
	}
	if c, _ := h.sim.Call(sid); c.Fetches != 0 {
		t.Fatalf("%d fetches after the callback ended the call, want 0", c.Fetches)
	}
}

func TestCallToDoNotCallNumberIsNotPlaced(t *testing.T) {
	t.Parallel()
	h := newHarness(t, harnessOpt{})
	if _, err := h.optouts.Add(bg, optout.Voice, "+14155550172", optout.SourceAPI); err != nil {
		t.Fatal(err)
	}
	mk, sid := h.call(t, tasks.CallPayload{To: "+14155550172", Say: "hello"})
	if mk.State != asynq.TaskStateCompleted || sid != "" || !strings.Contains(string(mk.Result), "skipped") {
		t.Fatalf("state %s result %s", mk.State, mk.Result)
	}
	if n := len(h.sim.Calls()); n != 0 {
		t.Fatalf("%d calls placed to a do-not-call number", n)
	}
}

func TestCallBadRecipientArchived(t *testing.T) {
	t.Parallel()
	h := newHarness(t, harnessOpt{})
	mk, _ := h.call(t, tasks.CallPayload{To: "+15005550002", URL: "https://example.com/twiml"})
	if mk.State != asynq.TaskStateArchived || !strings.Contains(mk.LastErr, "21214") || mk.Retried != 0 {
		t.Fatalf("state %s retried %d error %q", mk.State, mk.Retried, mk.LastErr)
	}
}

func TestLookupCallAsksTwilioWhenNoRecord(t *testing.T) {
	t.Parallel()
	h := newHarness(t, harnessOpt{})
	_, sid := h.call(t, tasks.CallPayload{To: "+14155550173", Say: "hi"})
	h.waitFinal(t, tasks.PollTaskID(sid))
	if err := h.rdb.Del(bg, "tw:call:"+sid).Err(); err != nil {
		t.Fatal(err)
	}
	tw := h.twilio(t)
	st, err := tasks.LookupCall(bg, h.records, tw, sid)
	if err != nil || st.Status != "completed" || st.To != "+14155550173" {
		t.Fatalf("lookup %+v %v", st, err)
	}
	if _, err := tasks.LookupCall(bg, h.records, nil, "CA"+strings.Repeat("0", 32)); !errors.Is(err, calls.ErrNotFound) {
		t.Fatalf("unknown call without Twilio: %v", err)
	}
	var fe *tasks.FieldError
	if _, err := tasks.LookupCall(bg, h.records, tw, "../../../x"); !errors.As(err, &fe) || fe.Field != "callSid" {
		t.Fatalf("malformed SID: %v, want a FieldError naming callSid", err)
	}
}

func TestNewMakeCallTaskRefusesBadInput(t *testing.T) {
	t.Parallel()
	tests := []struct {
		p     tasks.CallPayload
		field string
	}{
		{tasks.CallPayload{To: "+14155551234"}, "url"},
		{tasks.CallPayload{To: "+14155551234", URL: "ftp://example.com/x"}, "url"},
		{tasks.CallPayload{To: "+14155551234", URL: "javascript:alert(1)"}, "url"},
		{tasks.CallPayload{To: "+14155551234", URL: "/relative"}, "url"},
		{tasks.CallPayload{To: "+14155551234", URL: "https://x.example", Say: "hi"}, "url"},
		{tasks.CallPayload{To: "+14155551234", Twiml: "<Say>hi</Say>"}, "twiml"},
		{tasks.CallPayload{To: "+14155551234", Twiml: "<Response><Say>hi</Response>"}, "twiml"},
		{tasks.CallPayload{To: "+14155551234", Say: strings.Repeat("a", 5000)}, "say"},
		{tasks.CallPayload{To: "123", Say: "hi"}, "to"},
		{tasks.CallPayload{To: "+14155551234", From: "ACME", Say: "hi"}, "from"},
	}
	for _, tt := range tests {
		_, err := tasks.NewMakeCallTask(tt.p, tasks.Rules{})
		var fe *tasks.FieldError
		if !errors.As(err, &fe) || fe.Field != tt.field {
			t.Errorf("%+v: error %v, want a FieldError on %s", tt.p, err, tt.field)
		}
	}
	if _, err := tasks.NewMakeCallTask(tasks.CallPayload{To: "+14155551234", Twiml: "<Response><Say>hi</Say></Response>"}, tasks.Rules{}); err != nil {
		t.Fatal(err)
	}
}

func TestPollingWaitsGrow(t *testing.T) {
	p := tasks.Polling{}
	want := []time.Duration{2 * time.Second, 4 * time.Second, 8 * time.Second, 16 * time.Second, 30 * time.Second, 30 * time.Second}
	for n, w := range want {
		if got := p.Wait(n); got != w {
			t.Fatalf("Wait(%d) = %v, want %v", n, got, w)
		}
	}
}

func TestCallRateSpacesCalls(t *testing.T) {
	t.Parallel()
	h := newHarness(t, harnessOpt{limits: &ratelimit.Config{Call: ratelimit.Rate{N: 1, Per: time.Second, Burst: 1}}})
	var ids []string
	for i := 0; i < 3; i++ {
		task, err := tasks.NewMakeCallTask(tasks.CallPayload{To: fmt.Sprintf("+1415555017%d", 4+i), Say: "hi"}, tasks.Rules{})
		if err != nil {
			t.Fatal(err)
		}
		info, err := h.client.Enqueue(task)
		if err != nil {
			t.Fatal(err)
		}
		ids = append(ids, info.ID)
	}
	for _, id := range ids {
		if info := h.waitFinal(t, id); info.State != asynq.TaskStateCompleted || info.Retried != 0 {
			t.Fatalf("call %s: %s retried %d (%q)", id, info.State, info.Retried, info.LastErr)
		}
	}
	var created []time.Time
	for _, c := range h.sim.Calls() {
		created = append(created, c.CreatedAt)
	}
	sort.Slice(created, func(i, j int) bool { return created[i].Before(created[j]) })
	if len(created) != 3 {
		t.Fatalf("%d calls placed", len(created))
	}
	// CALL_RATE=1/s, by the limiter's own decisions: one per call, a whole
	// interval apart, and no call reached the simulator before the decision
	// that let it go (the i-th call needs the i-th).
	h.limiter.mu.Lock()
	decided := slices.Clone(h.limiter.callsLetGo)
	h.limiter.mu.Unlock()
	slices.SortFunc(decided, func(a, b time.Time) int { return a.Compare(b) })
	if len(decided) != 3 {
		t.Fatalf("%d calls let through by the limiter, want 3", len(decided))
	}
	for i := range decided {
		if i > 0 && decided[i].Sub(decided[i-1]) < time.Second-time.Microsecond {
			t.Fatalf("calls let through %v apart under CALL_RATE 1/s: %v", decided[i].Sub(decided[i-1]), decided)
		}
		if created[i].Before(decided[i]) {
			t.Fatalf("call %d placed at %s, before the limiter let it go at %s", i, created[i], decided[i])
		}
	}
}
