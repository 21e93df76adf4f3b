package e2e

import (
	"encoding/json"
	"net/http"
	"strings"
	"testing"
	"time"
)

const e2eService = "MG0123456789abcdef0123456789abcdef"

type simScheduled struct {
	Sid, To, Status, MessagingServiceSid string
	SendAt                               *time.Time
}

func simScheduledTo(t *testing.T, s *stack, to string) []simScheduled {
	t.Helper()
	resp, err := http.Get(s.simURL + "/sim/messages")
	if err != nil {
		t.Fatal(err)
	}
	defer resp.Body.Close()
	var all []simScheduled
	if err := json.NewDecoder(resp.Body).Decode(&all); err != nil {
		t.Fatal(err)
	}
	var out []simScheduled
	for _, m := range all {
		if m.To == to {
			out = append(out, m)
		}
	}
	return out
}

// handOff enqueues an SMS with --send-at and waits for its task to end: it
// is done at once, Twilio holding the message.
func handOff(t *testing.T, s *stack, to, id string, at time.Time) (sid string) {
	t.Helper()
	r := runEnqueue(t, s.env, "sms", "--to", to, "--body", "Your table is booked for 9:00", "--send-at", at.Format(time.RFC3339), "--id", id)
	if r.code != 0 {
		t.Fatalf("sms --send-at: exit %d %s", r.code, r.stderr)
	}
	st := waitStatus(t, s.env, id)
	var res struct{ MessageSid, Status, SendAt string }
	if err := json.Unmarshal(st.Result, &res); err != nil {
		t.Fatalf("result %s: %v", st.Result, err)
	}
	if st.State != "completed" || res.Status != "scheduled" || res.SendAt != at.Format(time.RFC3339) || res.MessageSid == "" {
		t.Fatalf("task %+v result %s; want completed, scheduled at Twilio for %s", st, st.Result, at)
	}
	return res.MessageSid
}

// sendAt 20 minutes ahead with a Messaging Service: handed to Twilio as a
// scheduled message at once (the asynq task done), exactly one message,
// with the right SendAt; canceled through enqueue cancel and the HTTP API;
// once Twilio has sent one, its cancel is 409.
func TestSendAtScheduledAtTwilio(t *testing.T) {
	t.Parallel()
	s := newStack(t, nil, "TWILIO_MESSAGING_SERVICE_SID="+e2eService)
	at := time.Now().Add(20 * time.Minute).UTC().Truncate(time.Second)
	const kept, byCLI, byAPI, late = "+14155550301", "+14155550302", "+14155550303", "+14155550304"

	sid := handOff(t, s, kept, "sched-kept", at)
	held := simScheduledTo(t, s, kept)
	if len(held) != 1 || held[0].Sid != sid || held[0].Status != "scheduled" || held[0].SendAt == nil ||
		!held[0].SendAt.Equal(at) || held[0].MessagingServiceSid != e2eService {
		t.Fatalf("simulator holds %+v; want one message %s scheduled for %s", held, sid, at)
	}
	var events []string
	for _, e := range readLog(t, s.env, "--task", "sched-kept") {
		events = append(events, e.Event)
	}
	if strings.Join(events, ",") != "queued,scheduled" {
		t.Fatalf("log events %v; want queued,scheduled", events)
	}

	// enqueue cancel, with the worker's Twilio settings.
	handOff(t, s, byCLI, "sched-cli", at)
	twEnv := append(append([]string{}, s.env...), "TWILIO_API_URL="+s.simURL,
		"TWILIO_ACCOUNT_SID=AC00000000000000000000000000000000", "TWILIO_AUTH_TOKEN=00000000000000000000000000000000")
	r := runEnqueue(t, twEnv, "cancel", "sched-cli")
	var canceled struct{ State string }
	r.json(t, &canceled)
	if r.code != 0 || canceled.State != "canceled" {
		t.Fatalf("enqueue cancel: exit %d %s %s", r.code, r.stdout, r.stderr)
	}
	if m := simScheduledTo(t, s, byCLI); len(m) != 1 || m[0].Status != "canceled" {
		t.Fatalf("after enqueue cancel the simulator has %+v", m)
	}

	// DELETE /v1/tasks/{id}.
	handOff(t, s, byAPI, "sched-api", at)
	if code := apiDo(t, s, http.MethodDelete, "/v1/tasks/sched-api"); code != http.StatusOK {
		t.Fatalf("DELETE /v1/tasks/sched-api: %d", code)
	}
	if m := simScheduledTo(t, s, byAPI); len(m) != 1 || m[0].Status != "canceled" {
		t.Fatalf("after DELETE the simulator has %+v", m)
	}

	// Twilio's time comes: it sends what it holds; a cancel then is 409.
	handOff(t, s, late, "sched-late", at)
	resp, err := http.Post(s.simURL+"/sim/clock", "application/json", strings.NewReader(`{"advance":"25m"}`))
	if err != nil {
		t.Fatal(err)
	}
	resp.Body.Close()
	deadline := time.Now().Add(30 * time.Second)
	for {
		k, l := simScheduledTo(t, s, kept), simScheduledTo(t, s, late)
		if k[0].Status == "delivered" && l[0].Status == "delivered" {
			break
		}
		if time.Now().After(deadline) {
			t.Fatalf("not delivered after its SendAt: %+v %+v", k, l)
		}
		time.Sleep(20 * time.Millisecond)
	}
	if code := apiDo(t, s, http.MethodDelete, "/v1/tasks/sched-late"); code != http.StatusConflict {
		t.Fatalf("DELETE after Twilio sent it: %d, want 409", code)
	}
	for _, to := range []string{kept, byCLI, byAPI, late} {
		if n := len(simScheduledTo(t, s, to)); n != 1 {
			t.Fatalf("%d messages to %s, want exactly 1", n, to)
		}
	}
	if m := simScheduledTo(t, s, byCLI); m[0].Status != "canceled" {
		t.Fatalf("a canceled message went: %+v", m)
	}
}

// A STOP from a recipient cancels at Twilio the messages it holds as
// scheduled for them, and only theirs.
func TestStopCancelsTwilioScheduledMessages(t *testing.T) {
	t.Parallel()
	s := newPublicStack(t, true, "TWILIO_MESSAGING_SERVICE_SID="+e2eService)
	at := time.Now().Add(30 * time.Minute).UTC().Truncate(time.Second)
	const stops, stays = "+14155550311", "+14155550312"
	handOff(t, s, stops, "stop-1", at)
	handOff(t, s, stops, "stop-2", at.Add(time.Hour))
	handOff(t, s, stays, "stay-1", at)
	if code, body := simInbound(t, s, stops, "STOP"); code != http.StatusOK {
		t.Fatalf("inbound STOP: %d %s", code, body)
	}
	for _, m := range simScheduledTo(t, s, stops) {
		if m.Status != "canceled" {
			t.Fatalf("after STOP the simulator has %+v", simScheduledTo(t, s, stops))
		}
	}
	if n := len(simScheduledTo(t, s, stops)); n != 2 {
		t.Fatalf("%d messages to the number that stopped, want 2", n)
	}
	if m := simScheduledTo(t, s, stays); len(m) != 1 || m[0].Status != "scheduled" {
		t.Fatalf("another recipient's message: %+v", m)
	}
	entries := readLog(t, s.env, "--task", "stop-1")
	if last := entries[len(entries)-1]; last.Event != "skipped" || !strings.Contains(last.Reason, "opted out") {
		t.Fatalf("log of stop-1 ends with %+v", last)
	}
}
