package tasks

import "regexp"

// InternalSep is in every task id the worker makes itself (a redelivery, a
// call's follow-up) and in no client key (KeyPattern), so a client's key can
// never take the id of a task the worker will need.
const InternalSep = "~"

// RedeliverySep joins a task id and the redelivery's number:
// order-42~redeliver-1.
const RedeliverySep = InternalSep + "redeliver-"

// KeyPattern is a client's idempotency key (Idempotency-Key, enqueue --id):
// 1-128 of A-Z a-z 0-9 . _ : -.
var KeyPattern = regexp.MustCompile(`^[A-Za-z0-9._:-]{1,128}$`)

// ValidKey reports whether key may name a client's task.
func ValidKey(key string) bool { return KeyPattern.MatchString(key) }
