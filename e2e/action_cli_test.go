package e2e

import (
	"encoding/json"
	"strings"
	"testing"
)

func TestEnqueueActionRunsTheHubsActions(t *testing.T) {
	t.Parallel()
	s := newStack(t, nil)
	r := runEnqueueStdin(t, s.env, `{"action":"sendSMS","arguments":{"to":"+14155551234","body":"Your verification code is 123456","priority":"critical"}}`, "action", "-")
	var out struct{ TaskID, Queue, To string }
	r.json(t, &out)
	if r.code != 0 || out.Queue != "critical" || out.To != "+14155551234" {
		t.Fatalf("sendSMS: exit %d %+v %s", r.code, out, r.stderr)
	}
	if st := waitStatus(t, s.env, out.TaskID); st.State != "completed" {
		t.Fatalf("status %+v", st)
	}

	r = runEnqueueStdin(t, s.env, `{"action":"makeCall","arguments":{"to":"+14155551234","url":"https://your-server.com/twiml/welcome"}}`, "action", "-")
	r.json(t, &out)
	st := waitStatus(t, s.env, out.TaskID)
	var placed struct{ CallSid string }
	_ = json.Unmarshal(st.Result, &placed)
	r = runEnqueueStdin(t, s.env, `{"action":"getCallStatus","arguments":{"callSid":"`+placed.CallSid+`"}}`, "action")
	var cs struct{ CallSid, Status string }
	r.json(t, &cs)
	if r.code != 0 || cs.CallSid != placed.CallSid || cs.Status == "" {
		t.Fatalf("getCallStatus: exit %d %s %s", r.code, r.stdout, r.stderr)
	}

	r = runEnqueueStdin(t, s.env, `{"action":"sendBulkSMS","arguments":{"campaign":"cli-1","body":"hi","recipients":["+14155550301","+14155550302","+14155550301"]}}`, "action", "-")
	var sum struct{ Total, Enqueued, Duplicates int }
	r.json(t, &sum)
	if r.code != 0 || sum.Total != 3 || sum.Enqueued != 2 || sum.Duplicates != 1 {
		t.Fatalf("sendBulkSMS: exit %d %+v %s", r.code, sum, r.stderr)
	}

	for _, bad := range []struct{ doc, field string }{
		{`{"action":"sendSMS","arguments":{"to":"+1415","body":"hi"}}`, "to:"},
		{`{"action":"fax","arguments":{}}`, "action"},
		{`{not json`, "not valid JSON"},
	} {
		r := runEnqueueStdin(t, s.env, bad.doc, "action")
		if r.code != 2 || !strings.Contains(r.stderr, bad.field) {
			t.Fatalf("%s: exit %d %q", bad.doc, r.code, r.stderr)
		}
	}
}
