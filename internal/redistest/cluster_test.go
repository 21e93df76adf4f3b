package redistest_test

import (
	"context"
	"strings"
	"testing"
	"time"

	"github.com/redis/go-redis/v9"

	"github.com/sbagenthub/twilio-worker/internal/redistest"
)

func TestStartCluster(t *testing.T) {
	t.Parallel()
	c := redistest.StartCluster(t)
	if len(c.Nodes) != 3 || !strings.HasPrefix(c.URL(), "redis-cluster://") {
		t.Fatalf("cluster %v, URL %s", c.Nodes, c.URL())
	}
	cl := c.Client(t)
	ctx := context.Background()
	masters := map[string]bool{}
	// Keys with different tags land on different masters; all three serve.
	for _, k := range []string{"{a}", "{b}", "{c}", "{d}", "{e}", "{f}", "{g}", "{h}"} {
		if err := cl.Set(ctx, k, "v", time.Minute).Err(); err != nil {
			t.Fatalf("SET %s: %v", k, err)
		}
		n, err := cl.MasterForKey(ctx, k)
		if err != nil {
			t.Fatal(err)
		}
		masters[n.Options().Addr] = true
	}
	if len(masters) < 2 {
		t.Errorf("8 tags all on %v: slots not spread over the masters", masters)
	}
	// Cross-slot scripts fail, so the project's keys must be tagged.
	err := cl.Eval(ctx, "return redis.call('MSET', KEYS[1], 1, KEYS[2], 2)", []string{"{a}x", "{b}x"}).Err()
	if err == nil || !strings.Contains(err.Error(), "CROSSSLOT") {
		t.Errorf("cross-slot script: %v, want CROSSSLOT", err)
	}
}

func TestSentinelFailover(t *testing.T) {
	t.Parallel()
	s := redistest.StartSentinel(t)
	first := s.Master(t)
	rdb := redis.NewFailoverClient(&redis.FailoverOptions{MasterName: redistest.SentinelMaster, SentinelAddrs: []string{s.Sentinel.Addr}})
	defer rdb.Close()
	ctx := context.Background()
	if err := rdb.Set(ctx, "k", "before", 0).Err(); err != nil {
		t.Fatal(err)
	}
	s.Failover(t)
	second := s.Master(t)
	if second == first {
		t.Fatalf("master still %s after failover", first.Addr)
	}
	// The client follows the new master, and the write made before survived.
	deadline := time.Now().Add(30 * time.Second)
	for {
		err := rdb.Set(ctx, "k2", "after", 0).Err()
		if err == nil {
			break
		}
		if time.Now().After(deadline) {
			t.Fatalf("write after failover: %v", err)
		}
		time.Sleep(50 * time.Millisecond)
	}
	if v, err := rdb.Get(ctx, "k").Result(); err != nil || v != "before" {
		t.Errorf("GET k after failover = %q, %v", v, err)
	}
	s.Failover(t)
	if s.Master(t) != first {
		t.Errorf("second failover did not return to %s", first.Addr)
	}
}
