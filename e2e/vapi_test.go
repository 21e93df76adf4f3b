package e2e

import (
	"encoding/json"
	"net/http"
	"slices"
	"strings"
	"testing"
	"time"

	"github.com/sbagenthub/twilio-worker/vapi"
)

const vapiToken = "e2e-vapi-server-token"

// vapiStack is a stack whose worker talks to a vapisim binary, and the
// simulator reports to the worker's /vapi/server.
type vapiStack struct {
	*stack
	vapiURL string
}

func newVAPIStack(t *testing.T, vapiArgs, twilioArgs []string, workerEnv ...string) *vapiStack {
	t.Helper()
	httpAddr, vapiAddr := freeAddr(t), freeAddr(t)
	start(t, nil, bin.vapisim, append([]string{"--addr", vapiAddr, "--api-key", "e2e-vapi-key",
		"--server-url", "http://" + httpAddr + "/vapi/server", "--server-token", vapiToken}, vapiArgs...)...)
	vs := &vapiStack{vapiURL: "http://" + vapiAddr}
	waitHTTP(t, vs.vapiURL+"/sim/calls")
	vs.stack = newStackAt(t, httpAddr, twilioArgs, append([]string{
		"VAPI_SERVER_TOKEN=" + vapiToken, "VAPI_API_KEY=e2e-vapi-key", "VAPI_API_URL=" + vs.vapiURL,
		"VAPI_PHONE_NUMBER_ID=e2e-phone-number", "VAPI_ASSISTANT_ID=asst-default",
	}, workerEnv...)...)
	return vs
}

type toolAnswer struct {
	Status int
	CallID string
	Body   struct {
		Results []vapi.ToolResult
	}
}

// toolCall makes vapisim send a tool-calls message and returns the worker's answer.
func (vs *vapiStack) toolCall(t *testing.T, req map[string]any) toolAnswer {
	t.Helper()
	b, _ := json.Marshal(req)
	r := call(t, "POST", vs.vapiURL+"/sim/tool-call", string(b), nil)
	if r.status != 200 {
		t.Fatalf("sim tool-call: %d %s", r.status, r.body)
	}
	var a toolAnswer
	if err := json.Unmarshal([]byte(r.body), &a); err != nil {
		t.Fatalf("sim tool-call answer %s: %v", r.body, err)
	}
	return a
}

// waitMessagesTo waits until twiliosim holds n messages to number.
func waitMessagesTo(t *testing.T, simURL, to string, n int) []simMessage {
	t.Helper()
	deadline := time.Now().Add(30 * time.Second)
	for {
		ms := messagesTo(t, &stack{simURL: simURL}, to)
		if len(ms) >= n {
			return ms
		}
		if time.Now().After(deadline) {
			t.Fatalf("%d messages, want %d", len(ms), n)
		}
		time.Sleep(20 * time.Millisecond)
	}
}

func oneResult(t *testing.T, a toolAnswer) vapi.ToolResult {
	t.Helper()
	if a.Status != 200 || len(a.Body.Results) != 1 {
		t.Fatalf("answer %+v: want 200 with one result", a)
	}
	res := a.Body.Results[0]
	if strings.ContainsAny(res.Result+res.Error, "\r\n") {
		t.Fatalf("result %+v is not on one line", res)
	}
	return res
}

func TestVAPIToolCallTextsTheCaller(t *testing.T) {
	t.Parallel()
	vs := newVAPIStack(t, nil, nil)
	const caller = "+14155550190"

	// Arguments as an object (as VAPI sends them), no "to": the caller.
	a := vs.toolCall(t, map[string]any{"name": "sendSMS", "id": "call_obj", "arguments": map[string]any{"body": "Here is the link"},
		"customer": caller, "phoneNumber": "+15005550006"})
	res := oneResult(t, a)
	if res.ToolCallID != "call_obj" || res.Error != "" || res.Result == "" {
		t.Fatalf("result %+v", res)
	}
	first := waitMessagesTo(t, vs.simURL, caller, 1)
	if first[0].Body != "Here is the link" || first[0].From != "+15005550006" {
		t.Fatalf("message %+v", first[0])
	}

	// Arguments as a JSON string (as VAPI documents them).
	b := vs.toolCall(t, map[string]any{"name": "sendSMS", "id": "call_str", "arguments": map[string]any{"body": "Second one"},
		"argumentsAsString": true, "customer": caller})
	if res := oneResult(t, b); res.Error != "" {
		t.Fatalf("string arguments: %+v", res)
	}
	waitMessagesTo(t, vs.simURL, caller, 2)

	// The same tool call of the same VAPI call again: the task is found, not repeated.
	key := vapi.ToolKey(a.CallID, "call_obj")
	if st := waitStatus(t, vs.env, key); st.State != "completed" {
		t.Fatalf("task %s: %+v", key, st)
	}
	again := vs.toolCall(t, map[string]any{"name": "sendSMS", "id": "call_obj", "callId": a.CallID,
		"arguments": map[string]any{"body": "Here is the link"}, "customer": caller})
	if res := oneResult(t, again); !strings.Contains(res.Result, first[0].Sid) {
		t.Fatalf("repeated tool call answered %+v; want the first message %s", res, first[0].Sid)
	}
	if ms := messagesTo(t, vs.stack, caller); len(ms) != 2 {
		t.Fatalf("%d messages after a repeated tool call; want 2", len(ms))
	}

	// A wrong token: 401, and no task is made.
	wrong := vs.toolCall(t, map[string]any{"name": "sendSMS", "id": "call_wrong", "token": "not-the-token",
		"arguments": map[string]any{"body": "never"}, "customer": "+14155550191"})
	if wrong.Status != http.StatusUnauthorized {
		t.Fatalf("wrong token: status %d", wrong.Status)
	}
	if r := runEnqueue(t, vs.env, "status", vapi.ToolKey(wrong.CallID, "call_wrong")); r.code != 2 {
		t.Fatalf("a task exists for a refused tool call: exit %d %s", r.code, r.stdout)
	}

	// A bad number: that call's single-line error naming to.
	bad := vs.toolCall(t, map[string]any{"name": "sendSMS", "id": "call_bad", "arguments": map[string]any{"to": "+1 555", "body": "x"}})
	if res := oneResult(t, bad); res.Result != "" || !strings.HasPrefix(res.Error, "to:") {
		t.Fatalf("bad number: %+v", res)
	}

	// The opt-out list applies as everywhere: the assistant learns it was not sent.
	if err := vs.redis.Client(t).SAdd(bg, "tw:{optout}:optout:sms", "+14155550199").Err(); err != nil {
		t.Fatal(err)
	}
	out := vs.toolCall(t, map[string]any{"name": "sendSMS", "id": "call_out", "customer": "+14155550199", "arguments": map[string]any{"body": "x"}})
	if res := oneResult(t, out); !strings.Contains(res.Error, "opted out") && !strings.Contains(res.Result, `"status":"queued"`) {
		t.Fatalf("opted-out caller: %+v", res)
	}
	if st := waitStatus(t, vs.env, vapi.ToolKey(out.CallID, "call_out")); !strings.Contains(string(st.Result), "skipped") {
		t.Fatalf("opted-out caller's task %+v %s", st, st.Result)
	}
	if ms := messagesTo(t, vs.stack, "+14155550199"); len(ms) != 0 {
		t.Fatalf("a message to an opted-out caller: %+v", ms)
	}

	// Several calls in one message come back in their order.
	multi := vs.toolCall(t, map[string]any{"customer": "+14155550192", "toolCalls": []map[string]any{
		{"id": "t1", "name": "sendSMS", "arguments": map[string]any{"body": "one"}},
		{"id": "t2", "name": "getCallStatus", "arguments": map[string]any{"callSid": "nope"}},
		{"id": "t3", "name": "sendSMS", "arguments": map[string]any{"to": "+14155550193", "body": "three"}},
	}})
	if multi.Status != 200 || len(multi.Body.Results) != 3 {
		t.Fatalf("multi: %+v", multi)
	}
	for i, want := range []string{"t1", "t2", "t3"} {
		if got := multi.Body.Results[i]; got.ToolCallID != want {
			t.Fatalf("result %d is %+v; want %s", i, got, want)
		}
	}
	if r := multi.Body.Results; r[0].Error != "" || !strings.HasPrefix(r[1].Error, "callSid:") || r[2].Error != "" {
		t.Fatalf("multi results %+v", r)
	}
	waitMessagesTo(t, vs.simURL, "+14155550192", 1)
	waitMessagesTo(t, vs.simURL, "+14155550193", 1)

	if out := vs.worker.output(); strings.Contains(out, "4155550190") || strings.Contains(out, vapiToken) {
		t.Fatal("a full number or the server token in the worker's log")
	}
}

type vapiSimCall struct {
	ID, Status, EndedReason, AssistantID string
	Customer                             struct{ Number string }
	Events                               []string
}

func vapiCalls(t *testing.T, url string) []vapiSimCall {
	t.Helper()
	resp, err := http.Get(url + "/sim/calls")
	if err != nil {
		t.Fatal(err)
	}
	defer resp.Body.Close()
	var out []vapiSimCall
	if err := json.NewDecoder(resp.Body).Decode(&out); err != nil {
		t.Fatal(err)
	}
	return out
}

func TestVAPIAssistantCallPlacedOnceAndFollowed(t *testing.T) {
	t.Parallel()
	vs := newVAPIStack(t, []string{"--call-ring", "300ms", "--call-duration", "1s"}, nil, "CALL_POLL_FIRST=1s", "CALL_POLL_MAX=2s")
	base := "http://" + vs.http
	// Every create's answer is lost until the call exists.
	simConfig(t, vs.vapiURL, `{"dropRate":1}`)
	r := call(t, "POST", base+"/v1/actions", `{"action":"makeCall","arguments":{"to":"+14155550194","assistantId":"asst-1"}}`, nil)
	if r.status != 202 {
		t.Fatalf("makeCall: %d %s", r.status, r.body)
	}
	taskID := r.json(t)["taskId"].(string)
	deadline := time.Now().Add(30 * time.Second)
	for len(vapiCalls(t, vs.vapiURL)) == 0 {
		if time.Now().After(deadline) {
			t.Fatal("no VAPI call was created")
		}
		time.Sleep(20 * time.Millisecond)
	}
	simConfig(t, vs.vapiURL, `{"dropRate":0}`)

	st := waitStatusWithin(t, vs.env, taskID, 60)
	var res struct{ CallSid, Provider string }
	_ = json.Unmarshal(st.Result, &res)
	if st.State != "completed" || res.Provider != "vapi" || st.Retried < 1 {
		t.Fatalf("task %+v: want completed after the lost answer's retry", st)
	}
	list := vapiCalls(t, vs.vapiURL)
	if len(list) != 1 || list[0].ID != res.CallSid || list[0].AssistantID != "asst-1" || list[0].Customer.Number != "+14155550194" {
		t.Fatalf("VAPI calls %+v; want exactly one, the task's %s", list, res.CallSid)
	}

	poll := waitStatusWithin(t, vs.env, "call-poll~"+res.CallSid, 60)
	if poll.State != "completed" || !strings.Contains(string(poll.Result), `"status":"ended"`) {
		t.Fatalf("poll %+v %s", poll, poll.Result)
	}
	g := call(t, "POST", base+"/v1/actions", `{"action":"getCallStatus","arguments":{"callSid":"`+res.CallSid+`"}}`, nil)
	var cs struct {
		Status, EndedReason string
		Duration            int
		Cost                *float64
	}
	if err := json.Unmarshal([]byte(g.body), &cs); err != nil || g.status != 200 {
		t.Fatalf("getCallStatus: %d %s", g.status, g.body)
	}
	if cs.Status != "ended" || cs.EndedReason != "customer-ended-call" || cs.Duration < 1 || cs.Cost == nil {
		t.Fatalf("getCallStatus %s", g.body)
	}
	deadline = time.Now().Add(30 * time.Second)
	for !slices.Contains(vapiCalls(t, vs.vapiURL)[0].Events, "end-of-call-report") {
		if time.Now().After(deadline) {
			t.Fatalf("the worker did not take the end-of-call-report: %+v", vapiCalls(t, vs.vapiURL)[0])
		}
		time.Sleep(20 * time.Millisecond)
	}
	var cli callStatus
	runEnqueue(t, vs.env, "call-status", res.CallSid).json(t, &cli)
	if cli.Status != "ended" || cli.CallSid != res.CallSid {
		t.Fatalf("enqueue call-status %+v", cli)
	}
	// The log shows why it ended.
	deadline = time.Now().Add(30 * time.Second)
	for {
		lr := runEnqueue(t, vs.env, "log", "--task", taskID)
		if lr.code == 0 && strings.Contains(lr.stdout, `"reason":"customer-ended-call"`) {
			break
		}
		if time.Now().After(deadline) {
			t.Fatalf("enqueue log --task %s: %s %s", taskID, lr.stdout, lr.stderr)
		}
		time.Sleep(50 * time.Millisecond)
	}

	// enqueue call --assistant: the same path from the command line.
	r2 := runEnqueue(t, vs.env, "call", "--to", "+14155550197", "--assistant", "asst-cli")
	var q struct{ TaskID string }
	r2.json(t, &q)
	if st := waitStatus(t, vs.env, q.TaskID); st.State != "completed" || !strings.Contains(string(st.Result), `"provider":"vapi"`) {
		t.Fatalf("enqueue call --assistant: %+v %s", st, st.Result)
	}

	// "agent": true from an assistant's tool call: the default assistant.
	a := vs.toolCall(t, map[string]any{"name": "makeCall", "id": "call_agent", "arguments": map[string]any{"to": "+14155550195", "agent": true}})
	if res := oneResult(t, a); res.Error != "" {
		t.Fatalf("agent makeCall: %+v", res)
	}
	deadline = time.Now().Add(30 * time.Second)
	for {
		var found *vapiSimCall
		for _, c := range vapiCalls(t, vs.vapiURL) {
			if c.Customer.Number == "+14155550195" {
				found = &c
			}
		}
		if found != nil {
			if found.AssistantID != "asst-default" {
				t.Fatalf("agent call %+v: want VAPI_ASSISTANT_ID", found)
			}
			break
		}
		if time.Now().After(deadline) {
			t.Fatal("the agent call was not placed")
		}
		time.Sleep(20 * time.Millisecond)
	}
}

func TestVAPIHangupEndsRingingCalls(t *testing.T) {
	t.Parallel()
	vs := newVAPIStack(t, []string{"--call-ring", "5m"}, []string{"--call-ring", "5m"}, "CALL_POLL_FIRST=1s", "CALL_POLL_MAX=2s")
	_, sid := placeCall(t, vs.stack, "--to", "+14155550196", "--say", "hello")
	deadline := time.Now().Add(30 * time.Second)
	for simCalls(t, vs.simURL)[sid].Status != "ringing" {
		if time.Now().After(deadline) {
			t.Fatalf("call %s never rang: %+v", sid, simCalls(t, vs.simURL)[sid])
		}
		time.Sleep(20 * time.Millisecond)
	}
	a := vs.toolCall(t, map[string]any{"name": "hangupCall", "id": "call_hang", "arguments": map[string]any{"callSid": sid}})
	if res := oneResult(t, a); res.Error != "" || !strings.Contains(res.Result, `"status":"canceled"`) {
		t.Fatalf("hangupCall: %+v", res)
	}
	if c := simCalls(t, vs.simURL)[sid]; c.Status != "canceled" {
		t.Fatalf("simulator's call %+v; want canceled", c)
	}
	poll := waitStatusWithin(t, vs.env, "call-poll~"+sid, 60)
	if !strings.Contains(string(poll.Result), `"status":"canceled"`) {
		t.Fatalf("poll %+v %s", poll, poll.Result)
	}

	// An assistant's ringing call: ended through VAPI's call control.
	r := call(t, "POST", "http://"+vs.http+"/v1/actions?wait=10s", `{"action":"makeCall","arguments":{"to":"+14155550198","agent":true}}`, nil)
	var placed struct{ CallSid, TaskID string }
	if err := json.Unmarshal([]byte(r.body), &placed); err != nil || (placed.CallSid == "" && placed.TaskID == "") {
		t.Fatalf("makeCall: %d %s", r.status, r.body)
	}
	if placed.CallSid == "" { // not placed within the wait: follow the task
		st := waitStatus(t, vs.env, placed.TaskID)
		_ = json.Unmarshal(st.Result, &placed)
	}
	h := call(t, "POST", "http://"+vs.http+"/v1/actions", `{"action":"hangupCall","arguments":{"callSid":"`+placed.CallSid+`"}}`, nil)
	if h.status != 200 {
		t.Fatalf("hangupCall of an assistant's call: %d %s", h.status, h.body)
	}
	poll = waitStatusWithin(t, vs.env, "call-poll~"+placed.CallSid, 60)
	if !strings.Contains(string(poll.Result), `"endedReason":"manually-canceled"`) {
		t.Fatalf("poll %+v %s", poll, poll.Result)
	}
	if c := vapiCalls(t, vs.vapiURL); len(c) != 1 || c[0].Status != "ended" {
		t.Fatalf("VAPI calls %+v", c)
	}
}
