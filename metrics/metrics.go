// Package metrics defines the worker's Prometheus metrics (namespace
// twilioworker_, names fixed by DESIGN.md). A nil *Metrics records nothing, so
// code under test need not set one up.
package metrics

import (
	"time"

	"github.com/prometheus/client_golang/prometheus"
)

// Namespace prefixes every metric.
const Namespace = "twilioworker"

// Metrics holds the collectors.
type Metrics struct {
	TaskRuns        *prometheus.CounterVec   // task_runs_total{type}
	SMSSent         prometheus.Counter       // sms_sent_total
	SMSSkipped      *prometheus.CounterVec   // sms_skipped_total{reason}
	TwilioRequests  *prometheus.CounterVec   // twilio_requests_total{op,code}
	TwilioDuration  *prometheus.HistogramVec // twilio_request_duration_seconds{op}
	RateLimitDefers *prometheus.CounterVec   // ratelimit_deferred_total{scope}
	Calls           *prometheus.CounterVec   // calls_total{status}
	FraudBlocks     *prometheus.CounterVec   // fraud_blocked_total{reason,country}
	VAPIToolCalls   *prometheus.CounterVec   // vapi_tool_calls_total{tool,outcome}
}

// New creates the collectors and registers them with reg (when not nil).
func New(reg prometheus.Registerer) *Metrics {
	m := &Metrics{
		TaskRuns: prometheus.NewCounterVec(prometheus.CounterOpts{Namespace: Namespace,
			Name: "task_runs_total", Help: "Handler invocations by task type."}, []string{"type"}),
		SMSSent: prometheus.NewCounter(prometheus.CounterOpts{Namespace: Namespace,
			Name: "sms_sent_total", Help: "Messages accepted by Twilio."}),
		SMSSkipped: prometheus.NewCounterVec(prometheus.CounterOpts{Namespace: Namespace,
			Name: "sms_skipped_total", Help: "Messages not sent (quiet_hours: deferred, counted at each deferral), by reason (optout, no_consent, quiet_hours, unknown_timezone, expired, canceled, invalid)."}, []string{"reason"}),
		TwilioRequests: prometheus.NewCounterVec(prometheus.CounterOpts{Namespace: Namespace,
			Name: "twilio_requests_total", Help: "Requests to Twilio by operation and outcome (HTTP status or Twilio code)."}, []string{"op", "code"}),
		TwilioDuration: prometheus.NewHistogramVec(prometheus.HistogramOpts{Namespace: Namespace,
			Name: "twilio_request_duration_seconds", Help: "Duration of requests to Twilio.",
			Buckets: []float64{.01, .025, .05, .1, .25, .5, 1, 2.5, 5, 10, 20}}, []string{"op"}),
		RateLimitDefers: prometheus.NewCounterVec(prometheus.CounterOpts{Namespace: Namespace,
			Name: "ratelimit_deferred_total", Help: "Tasks rescheduled by a rate limit, by scope (sender, recipient, call, twilio)."}, []string{"scope"}),
		Calls: prometheus.NewCounterVec(prometheus.CounterOpts{Namespace: Namespace,
			Name: "calls_total", Help: "Calls by final status."}, []string{"status"}),
		FraudBlocks: prometheus.NewCounterVec(prometheus.CounterOpts{Namespace: Namespace,
			Name: "fraud_blocked_total", Help: "Messages and calls the fraud guard refused, by reason (country, number_type, prefix_rate, country_segments, twilio) and destination country."}, []string{"reason", "country"}),
		VAPIToolCalls: prometheus.NewCounterVec(prometheus.CounterOpts{Namespace: Namespace,
			Name: "vapi_tool_calls_total", Help: "VAPI assistants' tool calls by tool and outcome (done, queued, error)."}, []string{"tool", "outcome"}),
	}
	m.initKnownLabels()
	if reg != nil {
		reg.MustRegister(m.TaskRuns, m.SMSSent, m.SMSSkipped, m.TwilioRequests, m.TwilioDuration, m.RateLimitDefers, m.Calls, m.FraudBlocks, m.VAPIToolCalls)
	}
	return m
}

// TaskRun counts one handler invocation.
func (m *Metrics) TaskRun(taskType string) {
	if m != nil {
		m.TaskRuns.WithLabelValues(taskType).Inc()
	}
}

// Sent counts a message Twilio accepted.
func (m *Metrics) Sent() {
	if m != nil {
		m.SMSSent.Inc()
	}
}

// Skipped counts a message not sent.
func (m *Metrics) Skipped(reason string) {
	if m != nil {
		m.SMSSkipped.WithLabelValues(reason).Inc()
	}
}

// Deferred counts a task rescheduled by a limit.
func (m *Metrics) Deferred(scope string) {
	if m != nil {
		m.RateLimitDefers.WithLabelValues(scope).Inc()
	}
}

// Call counts a call that reached a final status.
func (m *Metrics) Call(status string) {
	if m != nil {
		m.Calls.WithLabelValues(status).Inc()
	}
}

// FraudBlocked counts a message or call the fraud guard refused.
func (m *Metrics) FraudBlocked(reason, country string) {
	if m != nil {
		m.FraudBlocks.WithLabelValues(reason, country).Inc()
	}
}

// ObserveTwilio records one Twilio request; it fits twilioapi.Config.Observe.
func (m *Metrics) ObserveTwilio(op, outcome string, took time.Duration) {
	if m != nil {
		m.TwilioRequests.WithLabelValues(op, outcome).Inc()
		m.TwilioDuration.WithLabelValues(op).Observe(took.Seconds())
	}
}

// VAPIToolCall counts one tool call of a VAPI assistant; it fits
// vapi.Handler.Observe.
func (m *Metrics) VAPIToolCall(tool, outcome string) {
	if m != nil {
		m.VAPIToolCalls.WithLabelValues(tool, outcome).Inc()
	}
}

// ObserveLogEntries registers twilioworker_log_entries, the length of the
// communications log stream, read by entries at each scrape (one XLEN). A
// read that fails reports nothing for that scrape.
func ObserveLogEntries(reg prometheus.Registerer, entries func() (int64, error)) {
	if reg == nil {
		return
	}
	reg.MustRegister(&lenCollector{desc: prometheus.NewDesc(prometheus.BuildFQName(Namespace, "", "log_entries"),
		"Entries in the communications log stream (tw:log), bounded by LOG_MAX_ENTRIES and LOG_RETENTION.", nil, nil), read: entries})
}

type lenCollector struct {
	desc *prometheus.Desc
	read func() (int64, error)
}

func (c *lenCollector) Describe(ch chan<- *prometheus.Desc) { ch <- c.desc }

func (c *lenCollector) Collect(ch chan<- prometheus.Metric) {
	n, err := c.read()
	if err != nil {
		ch <- prometheus.NewInvalidMetric(c.desc, err)
		return
	}
	ch <- prometheus.MustNewConstMetric(c.desc, prometheus.GaugeValue, float64(n))
}
