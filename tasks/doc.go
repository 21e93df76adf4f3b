// Package tasks owns the worker's task types: their names, payloads,
// constructors (which validate and normalise before anything is queued) and
// handlers (which decide each task's fate from Twilio's answer).
//
// Producers queue tasks through the producer package (which builds them with
// NewSendSMSTask and NewMakeCallTask, claims the idempotency key and books
// the rate-limit slot); the worker registers the handlers on an asynq.ServeMux and
// configures its server with RetryDelay and IsFailure, so that waiting on a
// rate limit consumes no retry and transient failures back off with jitter.
//
// A task's fate follows from the error its handler returns:
//   - nil: done; the result (the seed's response shape) is kept RESULT_TTL.
//   - an error wrapping asynq.SkipRetry: archived at once with a reason a
//     person can act on (bad number, opted out, expired, Twilio config).
//   - *ratelimit.DeferError: run again at its Until; not a failure.
//   - anything else: retried with exponential backoff and jitter.
package tasks
