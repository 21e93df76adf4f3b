package e2e

import (
	"bytes"
	"context"
	"encoding/json"
	"errors"
	"fmt"
	"os"
	"os/exec"
	"path/filepath"
	"strings"
	"testing"
	"time"

	"github.com/sbagenthub/twilio-worker/optout"
	"github.com/sbagenthub/twilio-worker/tasks"
)

type campaignSummary struct {
	Campaign                                             string
	Total, Enqueued, Duplicates, OptedOut, AlreadyQueued int
	InvalidCount                                         int
	Invalid                                              []struct {
		Line   int
		Reason string
	}
}

type campaignStatus struct {
	Campaign, State                                        string
	Total, Enqueued, Sent, Failed, Canceled, Done, Pending int
	Skipped                                                map[string]int
	Removed                                                int
}

func campaignStatusOf(t *testing.T, s *stack, id string) campaignStatus {
	t.Helper()
	r := runEnqueue(t, s.env, "campaign", "status", id)
	if r.code != 0 {
		t.Fatalf("enqueue campaign status: exit %d: %s", r.code, r.stderr)
	}
	var st campaignStatus
	r.json(t, &st)
	return st
}

// waitCampaign polls `enqueue campaign status` until cond holds.
func waitCampaign(t *testing.T, s *stack, id string, what string, cond func(campaignStatus) bool) campaignStatus {
	t.Helper()
	deadline := time.Now().Add(60 * time.Second)
	for {
		st := campaignStatusOf(t, s, id)
		if cond(st) {
			return st
		}
		if time.Now().After(deadline) {
			t.Fatalf("campaign %s: timed out waiting for %s; status %+v", id, what, st)
		}
		time.Sleep(50 * time.Millisecond)
	}
}

func writeFile(t *testing.T, name, content string) string {
	t.Helper()
	path := filepath.Join(t.TempDir(), name)
	if err := os.WriteFile(path, []byte(content), 0o600); err != nil {
		t.Fatal(err)
	}
	return path
}

func TestBulkCampaignReachesEachRecipientOnce(t *testing.T) {
	t.Parallel()
	onEachRedis(t, func(t *testing.T, kind string) {
		s := newStackOn(t, kind, nil)
		if err := s.redis.Client(t).SAdd(bg, optout.SMS.Key(), "+14155551239").Err(); err != nil {
			t.Fatal(err)
		}
		list := writeFile(t, "customers.csv", strings.Join([]string{
			"name,phone,plan",
			"Ada,+1 (415) 555-1234,pro",  // 2
			"Bob,+14155551235,free",      // 3
			"Ada again,+14155551234,pro", // 4 duplicate
			"Cy,not a number,free",       // 5 invalid
			"Di,+14155551239,pro",        // 6 opted out
			"Ed,+1415555,free",           // 7 invalid: too short
			"",
			"Flo,+14155551236,pro",  // 9
			"Bob,+1 415 555 1235,x", // 10 duplicate
			"Gus,+14155551237,free", // 11
		}, "\n")+"\n")
		body := "Hi {{name}}: the API is down ({{plan}} plan). We are on it."
		r := runEnqueue(t, s.env, "bulk", "--campaign", "incident-42", "--body", body, list)
		if r.code != 0 {
			t.Fatalf("enqueue bulk: exit %d: %s", r.code, r.stderr)
		}
		var sum campaignSummary
		r.json(t, &sum)
		if sum.Campaign != "incident-42" || sum.Total != 9 || sum.Enqueued != 4 || sum.Duplicates != 2 || sum.OptedOut != 1 ||
			sum.AlreadyQueued != 0 || sum.InvalidCount != 2 || len(sum.Invalid) != 2 || sum.Invalid[0].Line != 5 || sum.Invalid[1].Line != 7 {
			t.Fatalf("summary %s", r.stdout)
		}
		var keys map[string]json.RawMessage
		_ = json.Unmarshal([]byte(r.stdout), &keys)
		for _, k := range []string{"campaign", "total", "enqueued", "duplicates", "invalid", "optedOut"} {
			if _, ok := keys[k]; !ok {
				t.Fatalf("summary lacks %q: %s", k, r.stdout)
			}
		}

		st := waitCampaign(t, s, "incident-42", "done", func(st campaignStatus) bool { return st.State == "done" })
		if st.Total != 4 || st.Sent != 4 || st.Done != 4 || st.Pending != 0 {
			t.Fatalf("status %+v", st)
		}
		want := map[string]string{
			"+14155551234": "Hi Ada: the API is down (pro plan). We are on it.",
			"+14155551235": "Hi Bob: the API is down (free plan). We are on it.",
			"+14155551236": "Hi Flo: the API is down (pro plan). We are on it.",
			"+14155551237": "Hi Gus: the API is down (free plan). We are on it.",
		}
		msgs := simMessages(t, s.simURL)
		got := map[string]int{}
		for _, m := range msgs {
			got[m.To]++
			if want[m.To] != m.Body {
				t.Errorf("message to %s: %q", m.To, m.Body)
			}
		}
		if len(msgs) != len(want) || len(got) != len(want) {
			t.Fatalf("simulator got %d messages to %v, want one to each of %d", len(msgs), got, len(want))
		}

		// Running the same command again queues nothing.
		r = runEnqueue(t, s.env, "bulk", "--campaign", "incident-42", "--body", body, list)
		if r.code != 0 {
			t.Fatalf("second enqueue bulk: exit %d: %s", r.code, r.stderr)
		}
		r.json(t, &sum)
		if sum.Total != 9 || sum.Enqueued != 0 || sum.AlreadyQueued != 4 || sum.Duplicates != 2 || sum.OptedOut != 1 || sum.InvalidCount != 2 {
			t.Fatalf("re-run summary %s", r.stdout)
		}
		if open := openTasks(t, s.redis.Client(t), tasks.TypeSendSMS); open != 0 {
			t.Fatalf("%d sms:send tasks still queued after the re-run, which queued nothing", open)
		}
		if n := len(simMessages(t, s.simURL)); n != 4 {
			t.Fatalf("after the re-run the simulator has %d messages, want 4", n)
		}

		// Bad input: exit 2, nothing queued.
		for _, args := range [][]string{
			{"bulk", "--campaign", "bad id", "--body", "x", list},
			{"bulk", "--campaign", "c2", "--body", "Hi {{nmae}}", list},
			{"bulk", "--campaign", "c2", list},
			{"campaign", "status", "nope"},
		} {
			if r := runEnqueue(t, s.env, args...); r.code != 2 {
				t.Errorf("enqueue %q: exit %d, want 2 (%s)", args, r.code, r.stderr)
			}
		}
	})
}

func TestBulkCampaignCancelStopsTheRest(t *testing.T) {
	t.Parallel()
	// Two handler slots and 20 ms per send: 1,000 recipients take about ten seconds.
	s := newStack(t, []string{"--latency", "20ms"}, "CONCURRENCY=2")
	var list strings.Builder
	const n = 1000
	for i := range n {
		fmt.Fprintf(&list, "+1415%07d\n", 2000000+i)
	}
	r := runEnqueueStdin(t, s.env, list.String(), "bulk", "--campaign", "oncall", "--body", "Page: db-1 down", "-")
	if r.code != 0 {
		t.Fatalf("enqueue bulk: exit %d: %s", r.code, r.stderr)
	}
	waitCampaign(t, s, "oncall", "a few sends", func(st campaignStatus) bool { return st.Sent >= 10 })
	r = runEnqueue(t, s.env, "campaign", "cancel", "oncall")
	if r.code != 0 {
		t.Fatalf("enqueue campaign cancel: exit %d: %s", r.code, r.stderr)
	}
	st := waitCampaign(t, s, "oncall", "nothing pending", func(st campaignStatus) bool { return st.Pending == 0 })
	sent := len(simMessages(t, s.simURL))
	if st.State != "canceled" || st.Total != n || st.Sent != sent || st.Sent+st.Canceled != n || st.Canceled == 0 {
		t.Fatalf("status %+v with %d messages at the simulator", st, sent)
	}
	if open := openTasks(t, s.redis.Client(t), tasks.TypeSendSMS); open != 0 {
		t.Fatalf("%d sms:send tasks of the canceled campaign could still send", open)
	}
	if again := len(simMessages(t, s.simURL)); again != sent {
		t.Fatalf("%d messages after the campaign ended, %d before", again, sent)
	}
	if r := runEnqueueStdin(t, s.env, "+14155551234\n", "bulk", "--campaign", "oncall", "--body", "x"); r.code != 2 {
		t.Fatalf("bulk to a canceled campaign: exit %d (%s)", r.code, r.stderr)
	}
}

func TestCriticalMessageOvertakesADrainingCampaign(t *testing.T) {
	t.Parallel()
	s := newStack(t, []string{"--latency", "5ms"}, "CONCURRENCY=2")
	var list strings.Builder
	const n = 2000
	for i := range n {
		fmt.Fprintf(&list, "+1415%07d\n", 3000000+i)
	}
	r := runEnqueueStdin(t, s.env, list.String(), "bulk", "--campaign", "big", "--body", "Maintenance tonight", "-")
	if r.code != 0 {
		t.Fatalf("enqueue bulk: exit %d: %s", r.code, r.stderr)
	}
	waitCampaign(t, s, "big", "the campaign draining", func(st campaignStatus) bool { return st.Sent >= 20 })
	r = runEnqueue(t, s.env, "sms", "--to", "+14155550100", "--body", "Your code is 123456", "--queue", "critical", "--valid-for", "5m")
	if r.code != 0 {
		t.Fatalf("enqueue sms: exit %d: %s", r.code, r.stderr)
	}
	var out struct{ TaskID string }
	r.json(t, &out)
	if st := waitStatus(t, s.env, out.TaskID); st.State != "completed" {
		t.Fatalf("2FA code %+v", st)
	}
	st := campaignStatusOf(t, s, "big")
	if st.Pending == 0 {
		t.Fatalf("the campaign finished before the critical message: %+v", st)
	}
	t.Logf("critical message completed with %d of %d campaign messages still pending", st.Pending, n)
}

// runEnqueueStdin is runEnqueue with stdin.
func runEnqueueStdin(t *testing.T, env []string, stdin string, args ...string) result {
	t.Helper()
	ctx, cancel := context.WithTimeout(bg, 60*time.Second)
	defer cancel()
	cmd := exec.CommandContext(ctx, bin.enqueue, args...)
	cmd.Env = append(baseEnv(), env...)
	cmd.Stdin = strings.NewReader(stdin)
	var out, errb bytes.Buffer
	cmd.Stdout, cmd.Stderr = &out, &errb
	err := cmd.Run()
	code := 0
	var ee *exec.ExitError
	if errors.As(err, &ee) {
		code = ee.ExitCode()
	} else if err != nil {
		t.Fatal(err)
	}
	return result{code, out.String(), errb.String()}
}
