package e2e

import (
	"encoding/json"
	"strings"
	"testing"
	"time"
)

type logEntry struct {
	Event, TaskID, SID, To, Status, Reason, Body, Source string
}

func readLog(t *testing.T, env []string, args ...string) []logEntry {
	t.Helper()
	r := runEnqueue(t, env, append([]string{"log"}, args...)...)
	if r.code != 0 {
		t.Fatalf("enqueue log: exit %d %s", r.code, r.stderr)
	}
	var out []logEntry
	for _, line := range strings.Split(strings.TrimSpace(r.stdout), "\n") {
		if line == "" {
			continue
		}
		var e logEntry
		if err := json.Unmarshal([]byte(line), &e); err != nil {
			t.Fatalf("log line %q: %v", line, err)
		}
		out = append(out, e)
	}
	return out
}

func TestLogShowsAMessageFromQueuedToDelivered(t *testing.T) {
	t.Parallel()
	s := newStack(t, nil, "CALL_POLL_FIRST=1s")
	r := runEnqueue(t, s.env, "sms", "--to", "+14155550190", "--body", "Your code is 424242")
	var out struct{ TaskID string }
	r.json(t, &out)
	var events []string
	deadline := time.Now().Add(30 * time.Second)
	for {
		events = events[:0]
		entries := readLog(t, s.env, "--to", "+1 415 555 0190")
		for _, e := range entries {
			events = append(events, e.Event)
			if e.To == "+14155550190" {
				t.Fatal("enqueue log printed a full number without --unmask")
			}
			if strings.Contains(e.Body, "424242") {
				t.Fatal("a body in the log although LOG_BODIES defaults to redact")
			}
		}
		if len(events) > 0 && events[len(events)-1] == "delivered" {
			break
		}
		if time.Now().After(deadline) {
			t.Fatalf("history %v never reached delivered", events)
		}
		time.Sleep(100 * time.Millisecond)
	}
	if got := strings.Join(events, " "); got != "queued sending sent delivered" {
		t.Fatalf("history %q, want queued sending sent delivered", got)
	}
	full := readLog(t, s.env, "--task", out.TaskID, "--unmask")
	if len(full) < 3 || full[0].To != "+14155550190" {
		t.Fatalf("--task/--unmask: %+v", full)
	}
	// Opt-out changes are part of the record too.
	if r := runEnqueue(t, s.env, "optout", "add", "+14155550190"); r.code != 0 {
		t.Fatalf("optout add: %d %s", r.code, r.stderr)
	}
	last := readLog(t, s.env, "--to", "+14155550190", "--since", "1m")
	if e := last[len(last)-1]; e.Event != "opt-out" || e.Source != "cli" {
		t.Fatalf("last entry %+v, want the CLI's opt-out", e)
	}
	if r := runEnqueue(t, s.env, "log", "--since", "-1h"); r.code != 2 {
		t.Fatalf("negative --since: exit %d", r.code)
	}
}
