// Package twilioapi is the worker's one door to Twilio: the only package that
// imports twilio-go. It sends SMS, places and fetches calls, lists messages
// for reconciliation, and turns every failure into an *Error whose Class says
// what the task should do (DESIGN.md's error policy): stop, wait, retry, or
// reconcile because Twilio may already have acted.
//
// twilio-go has no contexts, no base-URL setting and drops response headers on
// errors. Client works around all three with a per-call http.Client whose
// RoundTripper binds the caller's context, rewrites the host to BaseURL (the
// simulator in tests and local mode), and records whether the request was
// written and what Retry-After, Twilio-Concurrent-Requests and the status were.
package twilioapi
