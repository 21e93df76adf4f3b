package ledger_test

import (
	"context"
	"errors"
	"testing"
	"time"

	"github.com/sbagenthub/twilio-worker/internal/redistest"
	"github.com/sbagenthub/twilio-worker/ledger"
)

// to is the recipient every ledger test uses (the keys' hash tag).
const to = "+14155551234"

func TestLedgerLifecycle(t *testing.T) {
	t.Parallel()
	ctx := context.Background()
	l := ledger.New(redistest.Start(t).Client(t))
	e, err := l.Get(ctx, "t1", to)
	if err != nil || e.Sent() || e.Pending() {
		t.Fatalf("fresh entry %+v %v", e, err)
	}
	start := time.Now()
	if err := l.Begin(ctx, "t1", to, start); err != nil {
		t.Fatal(err)
	}
	if err := l.Begin(ctx, "t1", to, start.Add(time.Minute)); err != nil {
		t.Fatal(err)
	}
	e, _ = l.Get(ctx, "t1", to)
	if !e.Pending() || e.Attempts != 2 || !e.StartedAt.Equal(start.UTC().Truncate(time.Nanosecond)) {
		t.Fatalf("entry %+v: the first start must be kept", e)
	}
	// Both attempts met a definite error (Twilio answered): nothing to reconcile.
	for range 2 {
		if err := l.Abandon(ctx, "t1", to); err != nil {
			t.Fatal(err)
		}
	}
	if e, _ = l.Get(ctx, "t1", to); e.Pending() {
		t.Fatal("abandoned attempts still pending")
	}
	if err := l.Commit(ctx, "t1", to, "SM1"); err != nil {
		t.Fatal(err)
	}
	if e, _ = l.Get(ctx, "t1", to); !e.Sent() || e.SID != "SM1" {
		t.Fatalf("entry %+v", e)
	}
	if err := l.Commit(ctx, "t1", to, "SM1"); err != nil {
		t.Fatalf("re-commit by the owner: %v", err)
	}
	if err := l.Commit(ctx, "t2", to, "SM1"); !errors.Is(err, ledger.ErrClaimed) {
		t.Fatalf("another task took SM1: %v", err)
	}
}

func TestReconcileClaimsOnlyUnclaimedRecentMatches(t *testing.T) {
	t.Parallel()
	ctx := context.Background()
	l := ledger.New(redistest.Start(t).Client(t))
	start := time.Now()
	for _, id := range []string{"a", "b", "c"} {
		if err := l.Begin(ctx, id, to, start); err != nil {
			t.Fatal(err)
		}
	}
	// Newest first, as Twilio lists: two identical texts to one number.
	cands := []ledger.Candidate{
		{SID: "SM3", Created: start.Add(2 * time.Second), Matches: true},
		{SID: "SMx", Created: start.Add(time.Second), Matches: false},
		{SID: "SM2", Created: start.Add(time.Second), Matches: true},
		{SID: "SMold", Created: start.Add(-time.Hour), Matches: true},
	}
	got := map[string]string{}
	for _, id := range []string{"a", "b", "c"} {
		e, _ := l.Get(ctx, id, to)
		sid, err := l.Reconcile(ctx, e, cands)
		if err != nil {
			t.Fatal(err)
		}
		got[id] = sid
	}
	if got["a"] != "SM2" || got["b"] != "SM3" || got["c"] != "" {
		t.Fatalf("claims %v: each message may be one task's only, and an old one is nobody's", got)
	}
}

func TestAbandonKeepsAnEarlierUnknownAttempt(t *testing.T) {
	t.Parallel()
	ctx := context.Background()
	l := ledger.New(redistest.Start(t).Client(t))
	start := time.Now()
	// Attempt 1: the answer was lost (no Abandon, no Commit).
	if err := l.Begin(ctx, "t", to, start); err != nil {
		t.Fatal(err)
	}
	// Attempt 2 met a 503: it certainly created nothing, but attempt 1 may have.
	if err := l.Begin(ctx, "t", to, start.Add(time.Second)); err != nil {
		t.Fatal(err)
	}
	if err := l.Abandon(ctx, "t", to); err != nil {
		t.Fatal(err)
	}
	if e, _ := l.Get(ctx, "t", to); !e.Pending() || !e.StartedAt.Equal(start.UTC()) {
		t.Fatalf("entry %+v: the next attempt must still reconcile from attempt 1's start", e)
	}
}

// A worker that finds entries of the layout before hash tags (tw:send:TASK,
// tw:sid:SID) reads them: a task that sent before the upgrade does not send
// again, and a SID another task claimed before it stays theirs.
func TestLedgerReadsLegacyKeys(t *testing.T) {
	t.Parallel()
	ctx := context.Background()
	rdb := redistest.Start(t).Client(t)
	rdb.HSet(ctx, "tw:send:old-1", "startedAt", time.Now().UnixNano(), "attempts", 1, "sid", "SMold")
	rdb.Set(ctx, "tw:sid:SMtaken", "old-2", time.Hour)
	l := ledger.New(rdb).ReadLegacy(true)
	e, err := l.Get(ctx, "old-1", to)
	if err != nil || !e.Sent() || e.SID != "SMold" {
		t.Fatalf("legacy entry read as %+v, %v", e, err)
	}
	if rdb.Exists(ctx, "tw:send:old-1").Val() != 0 || rdb.HGet(ctx, "tw:send:{"+to+"}:old-1", "sid").Val() != "SMold" {
		t.Error("the legacy entry was not moved to its tagged key")
	}
	if err := l.Commit(ctx, "new-1", to, "SMtaken"); !errors.Is(err, ledger.ErrClaimed) {
		t.Errorf("commit of a SID claimed under the old key: %v, want ErrClaimed", err)
	}
	if e, _ := ledger.New(rdb).Get(ctx, "old-1", to); e.SID != "SMold" {
		t.Errorf("without ReadLegacy the moved entry reads %+v", e)
	}
}
