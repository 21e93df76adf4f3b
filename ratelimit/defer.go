// Package ratelimit holds the worker's limits: per-sender and per-recipient
// rates shared by every worker process through Redis, and the local pacing of
// requests to Twilio. A task that may not go now is given a time to come back
// (DeferError) instead of holding a worker slot while it waits.
package ratelimit

import (
	"fmt"
	"time"
)

// DeferError tells the task runner to run the task again at Until. It is not
// a failure: it consumes no retry.
type DeferError struct {
	Until  time.Time
	Reason string // "sender +1415***1234 at 1/s", "Twilio 20429", …
}

func (e *DeferError) Error() string {
	return fmt.Sprintf("deferred until %s: %s", e.Until.UTC().Format(time.RFC3339Nano), e.Reason)
}
