package metrics

// Label values known in advance (DESIGN.md). New creates their series at
// zero, so that every metric of DESIGN.md is on /metrics from the start and
// rate() sees the first increment.
// They are the values the handlers pass (tasks' Metrics calls): DESIGN.md's
// lists and those added since (skips for no consent and an unknown time
// zone, deferrals by Twilio's own limit and the sender pool, calls that
// could not be followed to their end).
var (
	knownTaskTypes   = []string{"sms:send", "sms:track", "call:make", "call:poll"}
	knownSkipReasons = []string{"optout", "quiet_hours", "expired", "canceled", "invalid", "no_consent", "unknown_timezone"}
	knownDeferScopes = []string{"sender", "recipient", "call", "twilio", "pool"}
	knownCallStatus  = []string{"completed", "busy", "no-answer", "failed", "canceled", "unknown"}
)

func (m *Metrics) initKnownLabels() {
	for _, v := range knownTaskTypes {
		m.TaskRuns.WithLabelValues(v)
	}
	for _, v := range knownSkipReasons {
		m.SMSSkipped.WithLabelValues(v)
	}
	for _, v := range knownDeferScopes {
		m.RateLimitDefers.WithLabelValues(v)
	}
	for _, v := range knownCallStatus {
		m.Calls.WithLabelValues(v)
	}
}
