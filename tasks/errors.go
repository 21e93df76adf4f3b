package tasks

import (
	"context"
	"errors"
	"fmt"
	"math/rand/v2"
	"time"

	"github.com/hibiken/asynq"

	"github.com/sbagenthub/twilio-worker/ratelimit"
)

// FieldError is bad input: it names the field and what is wrong with the
// value, never the value itself when that may be a phone number.
type FieldError struct {
	Field   string
	Problem string
	Err     error // the underlying reason, when there is one
}

func (e *FieldError) Error() string { return e.Field + ": " + e.Problem }
func (e *FieldError) Unwrap() error { return e.Err }

func fieldErr(field, format string, args ...any) *FieldError {
	return &FieldError{Field: field, Problem: fmt.Sprintf(format, args...)}
}

// Backoff bounds for transient failures.
const (
	BackoffBase = time.Second
	BackoffCap  = 10 * time.Minute
	// MaxRetryDefault is how many failures a task may have before it is archived.
	MaxRetryDefault = 10
	// asynqMaxRetry is the MaxRetry given to asynq. asynq archives a task
	// whose retry count reached it before asking IsFailure, so a task with
	// ten failures behind it would be archived by its next wait on a rate
	// limit. The handlers keep the failure budget themselves (giveUp), and
	// asynq's count only ever rises on failures.
	asynqMaxRetry = 1000
)

// giveUp turns a failure into an archive once the task has failed
// MaxRetryDefault times before; waits (DeferError) never count.
func giveUp(ctx context.Context, err error) error {
	var d *ratelimit.DeferError
	if err == nil || errors.Is(err, asynq.SkipRetry) || errors.As(err, &d) {
		return err
	}
	if n, ok := asynq.GetRetryCount(ctx); ok && n >= MaxRetryDefault {
		return fmt.Errorf("gave up after %d failed attempts: %w: %w", n+1, err, asynq.SkipRetry)
	}
	return err
}

// RetryDelay is the asynq.RetryDelayFunc of the worker: a DeferError's own
// time, else exponential backoff (1 s, 2 s, 4 s … capped at 10 min) with
// jitter, so that retries of a burst of failures do not arrive together.
//
// asynq keeps retry times in whole Unix seconds, truncating: a task deferred
// to 12:00:00.400 would run at 12:00:00, before its time. A deferral is
// therefore rounded up to the next whole second, so that a task is never
// woken before its Until (it may be up to a second late).
var RetryDelay = NewRetryDelay(BackoffBase, BackoffCap)

// NewRetryDelay returns a RetryDelayFunc with its own backoff bounds.
func NewRetryDelay(base, ceiling time.Duration) asynq.RetryDelayFunc {
	return func(n int, err error, _ *asynq.Task) time.Duration {
		var d *ratelimit.DeferError
		if errors.As(err, &d) {
			return max(time.Until(CeilSecond(d.Until)), 0)
		}
		return backoff(n, base, ceiling)
	}
}

// CeilSecond rounds t up to a whole second (asynq's resolution for
// scheduled and retry times).
func CeilSecond(t time.Time) time.Time {
	r := t.Truncate(time.Second)
	if r.Before(t) {
		r = r.Add(time.Second)
	}
	return r
}

func backoff(n int, base, ceiling time.Duration) time.Duration {
	d := ceiling
	if n < 30 && base<<n > 0 {
		d = min(base<<n, ceiling)
	}
	// Equal jitter: at least half the delay, at most all of it.
	return d/2 + rand.N(d/2+1)
}

// IsFailure is the asynq IsFailure predicate: waiting is not failing.
func IsFailure(err error) bool {
	var d *ratelimit.DeferError
	return !errors.As(err, &d)
}

// archive marks err as final: the task is archived with this reason.
func archive(format string, args ...any) error {
	return fmt.Errorf(format+": %w", append(args, asynq.SkipRetry)...)
}
