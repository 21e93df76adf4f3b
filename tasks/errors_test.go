package tasks

import (
	"context"
	"errors"
	"fmt"
	"testing"
	"time"

	"github.com/hibiken/asynq"

	"github.com/sbagenthub/twilio-worker/ratelimit"
)

func TestRetryDelay(t *testing.T) {
	for n := 0; n < 15; n++ {
		want := min(BackoffBase<<n, BackoffCap)
		for i := 0; i < 50; i++ {
			d := RetryDelay(n, errors.New("boom"), nil)
			if d < want/2 || d > want {
				t.Fatalf("retry %d: delay %v outside [%v, %v]", n, d, want/2, want)
			}
		}
	}
	until := time.Now().Add(3 * time.Second)
	d := RetryDelay(0, fmt.Errorf("wrapped: %w", &ratelimit.DeferError{Until: until}), nil)
	// asynq truncates the retry time to whole seconds: the task must not wake
	// before until, so the delay reaches the next whole second after it.
	if wake := time.Now().Add(d).Truncate(time.Second); wake.Before(until.Add(-10*time.Millisecond)) || d > 4*time.Second {
		t.Fatalf("defer delay %v: asynq would wake it at %v, before %v", d, wake, until)
	}
	if d := RetryDelay(100, errors.New("boom"), nil); d > BackoffCap {
		t.Fatalf("delay %v over the cap", d)
	}
}

func TestIsFailure(t *testing.T) {
	if IsFailure(&ratelimit.DeferError{Until: time.Now()}) {
		t.Fatal("a deferral counted as a failure")
	}
	if !IsFailure(errors.New("boom")) || !IsFailure(archive("bad")) {
		t.Fatal("a failure not counted")
	}
	if !errors.Is(archive("x %d", 1), asynq.SkipRetry) {
		t.Fatal("archive does not wrap SkipRetry")
	}
}

func TestGiveUpKeepsTheFailureBudget(t *testing.T) {
	// Outside a task run (no retry count) nothing changes.
	if err := giveUp(context.Background(), errors.New("boom")); errors.Is(err, asynq.SkipRetry) {
		t.Fatal("archived without a retry count")
	}
	if MaxRetryDefault >= asynqMaxRetry {
		t.Fatal("asynq's own ceiling must stay above the handlers' budget")
	}
}
