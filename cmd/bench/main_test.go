package main

import (
	"strings"
	"testing"
	"time"
)

func TestWindowAndRate(t *testing.T) {
	t0 := time.Unix(1000, 0)
	var at []time.Time
	for i := range 41 { // 20/s for two seconds, out of order
		at = append(at, t0.Add(time.Duration(40-i)*50*time.Millisecond))
	}
	if got := maxInWindow(at, time.Second); got != 21 {
		t.Fatalf("max in window %d, want 21 (both ends closed)", got)
	}
	if got := achievedRate(at); got < 19.99 || got > 20.01 {
		t.Fatalf("rate %v, want 20", got)
	}
	at = append(at, t0.Add(25*time.Millisecond))
	if got := maxInWindow(at, time.Second); got != 22 {
		t.Fatalf("max in window %d, want 22", got)
	}
}

func TestParseMetrics(t *testing.T) {
	text := `# HELP twilioworker_task_runs_total Handler invocations by task type.
# TYPE twilioworker_task_runs_total counter
twilioworker_task_runs_total{type="sms:send"} 412
twilioworker_task_runs_total{type="call:make"} 3
twilioworker_sms_sent_total 400
`
	m, err := parseMetrics(strings.NewReader(text), `twilioworker_task_runs_total{type="sms:send"}`, "twilioworker_sms_sent_total")
	if err != nil || m[`twilioworker_task_runs_total{type="sms:send"}`] != 412 || m["twilioworker_sms_sent_total"] != 400 || len(m) != 2 {
		t.Fatalf("%v %v", m, err)
	}
}
