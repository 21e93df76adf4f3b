package e2e

import (
	"encoding/json"
	"net/http"
	"strings"
	"testing"

	"github.com/sbagenthub/twilio-worker/optout"
)

type simCall struct {
	Sid, To, From, Status string
	Duration, Fetches     int
}

func simCalls(t *testing.T, simURL string) map[string]simCall {
	t.Helper()
	resp, err := http.Get(simURL + "/sim/calls")
	if err != nil {
		t.Fatal(err)
	}
	defer resp.Body.Close()
	var list []simCall
	if err := json.NewDecoder(resp.Body).Decode(&list); err != nil {
		t.Fatal(err)
	}
	out := map[string]simCall{}
	for _, c := range list {
		out[c.Sid] = c
	}
	return out
}

func placeCall(t *testing.T, s *stack, args ...string) (taskID, callSID string) {
	t.Helper()
	r := runEnqueue(t, s.env, append([]string{"call"}, args...)...)
	if r.code != 0 {
		t.Fatalf("enqueue call: exit %d %s", r.code, r.stderr)
	}
	var out struct{ TaskID string }
	r.json(t, &out)
	st := waitStatus(t, s.env, out.TaskID)
	var res struct{ CallSid, Status string }
	_ = json.Unmarshal(st.Result, &res)
	return out.TaskID, res.CallSid
}

type callStatus struct {
	CallSid, Status, StartTime, EndTime, To, From string
	Duration, Polls                               int
	History                                       []struct{ Status, Source string }
}

func TestCallsReachTheirFinalState(t *testing.T) {
	t.Parallel()
	onEachRedis(t, func(t *testing.T, kind string) {
		s := newStackOn(t, kind, []string{"--call-ring", "500ms", "--call-duration", "2s"}, "CALL_POLL_FIRST=1s", "CALL_POLL_MAX=2s")
		tests := []struct{ to, final string }{
			{"+14155550180", "completed"},
			{"+15005551001", "busy"},
			{"+15005551002", "no-answer"},
			{"+15005551003", "failed"},
		}
		sids := map[string]string{}
		for _, tt := range tests {
			_, sid := placeCall(t, s, "--to", tt.to, "--say", "Service api is down")
			if !strings.HasPrefix(sid, "CA") {
				t.Fatalf("call to %s: no call SID", tt.to)
			}
			sids[tt.final] = sid
		}
		for _, tt := range tests {
			st := waitStatus(t, s.env, "call-poll:"+sids[tt.final])
			if st.State != "completed" || !strings.Contains(string(st.Result), `"status":"`+tt.final+`"`) {
				t.Fatalf("%s: poll task %+v result %s", tt.final, st, st.Result)
			}
			r := runEnqueue(t, s.env, "call-status", sids[tt.final])
			var cs callStatus
			r.json(t, &cs)
			if cs.Status != tt.final || cs.CallSid != sids[tt.final] || cs.To != tt.to || len(cs.History) < 2 {
				t.Fatalf("call-status %+v", cs)
			}
			sim := simCalls(t, s.simURL)[sids[tt.final]]
			if tt.final == "completed" && (cs.Duration != sim.Duration || cs.Duration < 2 || cs.EndTime == "") {
				t.Fatalf("call-status %+v, simulator duration %d", cs, sim.Duration)
			}
		}
		if strings.Contains(s.worker.output(), "4155550180") {
			t.Fatal("a full number in the worker's log")
		}
	})
}

func TestCallPollingBacksOff(t *testing.T) {
	t.Parallel()
	// A 12 s call followed with waits of 1, 2, 4, 8 s: about 4 fetches, where
	// polling every second would take 13.
	s := newStack(t, []string{"--call-ring", "500ms", "--call-duration", "12s"}, "CALL_POLL_FIRST=1s", "CALL_POLL_MAX=30s")
	_, sid := placeCall(t, s, "--to", "+14155550181", "--url", "https://example.com/twiml")
	st := waitStatusWithin(t, s.env, "call-poll:"+sid, 60)
	if !strings.Contains(string(st.Result), `"completed"`) {
		t.Fatalf("poll %+v", st)
	}
	if f := simCalls(t, s.simURL)[sid].Fetches; f < 2 || f > 6 {
		t.Fatalf("%d fetches for a 12 s call; want about log2(12)", f)
	}
}

func TestStatusCallbackEndsPollingEarly(t *testing.T) {
	t.Parallel()
	addr := freeAddr(t)
	s := newStackAt(t, addr, []string{"--call-ring", "300ms", "--call-duration", "1s"},
		// The first poll comes long after the callback (due 1.3 s in), so
		// a busy machine's late callback still beats it.
		"PUBLIC_URL=http://"+addr, "CALL_POLL_FIRST=10s", "CALL_POLL_MAX=30s")
	_, sid := placeCall(t, s, "--to", "+14155550182", "--say", "hi")
	st := waitStatusWithin(t, s.env, "call-poll:"+sid, 60)
	if !strings.Contains(string(st.Result), `"completed"`) {
		t.Fatalf("poll %+v", st)
	}
	if f := simCalls(t, s.simURL)[sid].Fetches; f != 0 {
		t.Fatalf("%d fetches: the signed status callback should have ended the call first", f)
	}
	var cs callStatus
	runEnqueue(t, s.env, "call-status", sid).json(t, &cs)
	sources := ""
	for _, h := range cs.History {
		sources += h.Source + " "
	}
	if !strings.Contains(sources, "callback") {
		t.Fatalf("history %+v has no callback", cs.History)
	}
}

func TestCallRefusals(t *testing.T) {
	t.Parallel()
	s := newStack(t, nil)
	if err := s.redis.Client(t).SAdd(bg, optout.Voice.Key(), "+14155550183").Err(); err != nil {
		t.Fatal(err)
	}
	_, sid := placeCall(t, s, "--to", "+14155550183", "--say", "hi")
	if sid != "" || len(simCalls(t, s.simURL)) != 0 {
		t.Fatal("a call was placed to a number on the voice opt-out list")
	}
	for _, args := range [][]string{
		{"call", "--to", "+14155551234", "--url", "ftp://example.com/x"},
		{"call", "--to", "+14155551234", "--url", "javascript:alert(1)"},
		{"call", "--to", "+14155551234"},
		{"call", "--to", "+14155551234", "--twiml", "<Say>no root</Say>"},
	} {
		r := runEnqueue(t, s.env, args...)
		if r.code != 2 || !(strings.Contains(r.stderr, "url:") || strings.Contains(r.stderr, "twiml:")) {
			t.Fatalf("%v: exit %d %q", args, r.code, r.stderr)
		}
	}
}
