package campaign

import (
	"context"
	"errors"
	"fmt"
	"sync"
	"testing"

	"github.com/redis/go-redis/v9"

	"github.com/sbagenthub/twilio-worker/internal/redistest"
)

// TestScriptPipe: scripts run through the pipe from many goroutines each get
// their own answer, a script Redis does not know yet is loaded by
// Script.Run's EVAL fallback, other commands pass through, and a caller
// whose context ends gets its error.
func TestScriptPipe(t *testing.T) {
	t.Run("node", func(t *testing.T) { testScriptPipe(t, redistest.Start(t).Client(t)) })
	// A cluster client splits each pipeline by slot: keys k0…k6 are on
	// different masters.
	t.Run("cluster", func(t *testing.T) { testScriptPipe(t, redistest.StartCluster(t).Client(t)) })
}

func testScriptPipe(t *testing.T, rdb redis.UniversalClient) {
	ctx := context.Background()
	pipe := newScriptPipe(rdb)
	defer pipe.close()
	// A fresh script: the first EVALSHAs fail with NOSCRIPT in their
	// pipeline, and Script.Run falls back to EVAL.
	incr := redis.NewScript(`return redis.call('INCRBY', KEYS[1], ARGV[1])`)
	const n = 500
	got := make([]int64, n)
	errs := make([]error, n)
	var wg sync.WaitGroup
	for i := range n {
		wg.Go(func() {
			got[i], errs[i] = incr.Run(ctx, pipe, []string{fmt.Sprintf("k%d", i%7)}, i).Int64()
		})
	}
	wg.Wait()
	sums := map[int]int64{}
	for i := range n {
		if errs[i] != nil {
			t.Fatalf("script %d: %v", i, errs[i])
		}
		sums[i%7] += int64(i)
	}
	for k, want := range sums {
		v, err := rdb.Get(ctx, fmt.Sprintf("k%d", k)).Int64()
		if err != nil || v != want {
			t.Fatalf("k%d = %d, %v; want %d", k, v, err, want)
		}
	}
	// Each answer is its own script's: the running total after adding i
	// is at least i, and the last of each key is the key's sum.
	for i := range n {
		if got[i] < int64(i) || got[i] > sums[i%7] {
			t.Fatalf("script %d answered %d, outside [%d, %d]", i, got[i], i, sums[i%7])
		}
	}
	if err := pipe.Set(ctx, "plain", "x", 0).Err(); err != nil {
		t.Fatalf("a plain command through the pipe: %v", err)
	}
	canceled, cancel := context.WithCancel(ctx)
	cancel()
	if err := incr.Run(canceled, pipe, []string{"k0"}, 1).Err(); !errors.Is(err, context.Canceled) {
		t.Fatalf("canceled caller: %v, want context.Canceled", err)
	}
}
