package metrics

// Label values known in advance (DESIGN.md). New creates their series at
// zero, so that every metric of DESIGN.md is on /metrics from the start and
// rate() sees the first increment.
var (
	knownTaskTypes   = []string{"sms:send"}
	knownSkipReasons = []string{"optout", "quiet_hours", "expired", "canceled", "invalid"}
	knownDeferScopes = []string{"sender", "recipient", "call"}
	knownCallStatus  = []string{"completed", "busy", "no-answer", "failed", "canceled"}
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
