package keymigrate_test

import (
	"context"
	"sync"
	"testing"

	"github.com/sbagenthub/twilio-worker/campaign"
	"github.com/sbagenthub/twilio-worker/internal/keymigrate"
	"github.com/sbagenthub/twilio-worker/internal/redistest"
	"github.com/sbagenthub/twilio-worker/optout"
)

func TestNewName(t *testing.T) {
	t.Parallel()
	for old, want := range map[string]string{
		"tw:optout:sms":              "tw:{optout}:optout:sms",
		"tw:optout:voice":            "tw:{optout}:optout:voice",
		"tw:consent:sms":             "tw:{optout}:consent:sms",
		"tw:optout:history:+1415555": "tw:{optout}:history:+1415555",
		"tw:optout:imports":          "tw:{optout}:imports",
		"tw:optout:import:abc":       "tw:{optout}:import:abc",
		"tw:optout:imported:17":      "tw:{optout}:imported:17",
		"tw:rl:sender:+15005550006":  "tw:{rl}:sender:+15005550006",
		"tw:rl:config":               "tw:{rl}:config",
		"tw:campaign:inc-42":         "tw:campaign:{inc-42}",
		"tw:campaign:inc-42:to":      "tw:campaign:{inc-42}:to",
		"tw:campaign:inc-42:to:run1": "tw:campaign:{inc-42}:to:run1",
		"tw:{optout}:optout:sms":     "",
		"tw:log":                     "",
		"tw:send:task-1":             "",
		"asynq:{default}:pending":    "",
	} {
		got, ok := keymigrate.NewName(old)
		if got != want || ok != (want != "") {
			t.Errorf("NewName(%q) = %q, %v; want %q", old, got, ok, want)
		}
	}
}

// Old keys are moved where the stores read them; a key written under the new
// name meanwhile is merged, not overwritten; several workers running the
// migration at once move each key once.
func TestRunMovesOldKeys(t *testing.T) {
	t.Parallel()
	srv := redistest.Start(t)
	rdb := srv.Client(t)
	ctx := context.Background()
	must := func(err error) {
		t.Helper()
		if err != nil {
			t.Fatal(err)
		}
	}
	must(rdb.SAdd(ctx, "tw:optout:sms", "+14155550001", "+14155550002").Err())
	must(rdb.SAdd(ctx, optout.SMS.Key(), "+14155550003").Err()) // written by a new worker already
	must(rdb.LPush(ctx, "tw:optout:history:+14155550001", `{"channel":"sms","action":"opt-out","source":"cli","at":"2026-01-01T00:00:00Z"}`).Err())
	must(rdb.HSet(ctx, "tw:campaign:c1", "total", 2, "sent", 1).Err())
	must(rdb.HSet(ctx, "tw:campaign:c1:to", "+14155550001", "sent").Err())
	must(rdb.HSet(ctx, "tw:send:task-1", "startedAt", 1).Err())

	var wg sync.WaitGroup
	reps := make([]keymigrate.Report, 4)
	for i := range reps {
		wg.Add(1)
		go func() {
			defer wg.Done()
			r, err := keymigrate.Run(ctx, rdb)
			if err != nil {
				t.Error(err)
			}
			reps[i] = r
		}()
	}
	wg.Wait()
	moved, merged := 0, 0
	for _, r := range reps {
		moved += r.Moved
		merged += r.Merged
		if r.LegacyLedger != 1 {
			t.Errorf("report %+v: want the one ledger entry counted", r)
		}
	}
	if moved != 3 || merged != 1 {
		t.Errorf("moved %d, merged %d over four concurrent runs; want 3 and 1", moved, merged)
	}
	store := optout.NewStore(rdb)
	for _, n := range []string{"+14155550001", "+14155550002", "+14155550003"} {
		out, err := store.OptedOut(ctx, optout.SMS, n)
		if err != nil || !out {
			t.Errorf("%s opted out after the move: %v, %v", n, out, err)
		}
	}
	if ev, err := store.History(ctx, "+14155550001"); err != nil || len(ev) != 1 {
		t.Errorf("history after the move: %v, %v", ev, err)
	}
	st, err := campaign.NewStore(rdb).Status(ctx, "c1")
	if err != nil || st.Total != 2 || st.Sent != 1 {
		t.Errorf("campaign after the move: %+v, %v", st, err)
	}
	if n := rdb.Exists(ctx, "tw:optout:sms", "tw:campaign:c1", "tw:campaign:c1:to", "tw:optout:history:+14155550001").Val(); n != 0 {
		t.Errorf("%d old keys left", n)
	}
	again, err := keymigrate.Run(ctx, rdb)
	if err != nil || again.Moved+again.Merged != 0 {
		t.Errorf("a second run: %+v, %v", again, err)
	}
}
