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

func TestTargetsReadFromRows(t *testing.T) {
	tp := ratioAtLeast(figure{Name: "sms:send drained vs bare asynq no-op", Value: 700, Unit: "msg/s"}, 1000, 0.6)
	idle := held(figure{Name: "idle Redis commands per worker per second", Value: 72, Target: "≤ 60"}, false)
	rows := []row{
		{Scenario: "throughput", Figures: []figure{tp}},
		{Scenario: "peer", Skipped: "node is not on PATH"},
		{Scenario: "redis-cost", Figures: []figure{idle}},
		{Scenario: "latency", Err: "boom"},
	}
	got := map[string]goal{}
	for _, g := range targetsOf(rows) {
		got[g.Scenario+"/"+g.Figure] = g
	}
	if len(got) != len(goals) {
		t.Fatalf("%d targets, want %d", len(got), len(goals))
	}
	if g := got["throughput/"+tp.Name]; g.Value == nil || *g.Value != 700 || *g.Ratio != 0.7 || !*g.OK {
		t.Fatalf("throughput %+v", g)
	}
	if g := got["redis-cost/"+idle.Name]; g.OK == nil || *g.OK {
		t.Fatalf("idle %+v", g)
	}
	if g := got["peer/ours (throughput path) vs BullMQ + twilio-node"]; g.Value != nil || g.Missing != "skipped: node is not on PATH" {
		t.Fatalf("peer %+v", g)
	}
	if g := got["latency/critical p99, idle"]; g.Missing != "error: boom" {
		t.Fatalf("latency %+v", g)
	}
	if g := got["enqueue/enqueued vs bare asynq Enqueue ×16"]; g.Missing != "scenario not run (-run)" {
		t.Fatalf("enqueue %+v", g)
	}
	var b strings.Builder
	printTable(&b, rows)
	printTargets(&b, targetsOf(rows))
	for _, want := range []string{"| peer | skipped: node is not on PATH |", "| ≤ 25 Redis commands per message (the handler path) | throughput: figure not in the row |", "| 700 msg/s | 1000 msg/s | 0.700 | ✓ |"} {
		if !strings.Contains(b.String(), want) {
			t.Fatalf("no %q in\n%s", want, b.String())
		}
	}
}

func TestRedisHostPort(t *testing.T) {
	if h, p, err := redisHostPort("redis://127.0.0.1:6390/0"); err != nil || h != "127.0.0.1" || p != "6390" {
		t.Fatalf("%q %q %v", h, p, err)
	}
	for _, u := range []string{"redis-cluster://127.0.0.1:7000", "redis-sentinel://h:26379?master=m", "redis://u:secret@h:6379/0"} {
		if _, _, err := redisHostPort(u); err == nil {
			t.Fatalf("%s: no error", u)
		}
	}
}

func TestNPMReason(t *testing.T) {
	out := "npm error code ECONNREFUSED\nnpm error syscall connect\nnpm error errno ECONNREFUSED\nnpm error FetchError: request failed\nnpm error A complete log of this run can be found in: /root/.npm/_logs/x-debug-0.log\n"
	if got, want := npmReason(out), "npm error code ECONNREFUSED; npm error syscall connect; npm error errno ECONNREFUSED"; got != want {
		t.Fatalf("%q, want %q", got, want)
	}
	if got := npmReason("npm error A complete log of this run can be found in: x.log\n"); got != "no output" {
		t.Fatalf("%q", got)
	}
}

func TestPeerRedisEnv(t *testing.T) {
	got, err := peerRedisEnv("redis-cluster://127.0.0.1:7000,127.0.0.1:7001")
	if err != nil || len(got) != 1 || got[0] != "REDIS_NODES=127.0.0.1:7000,127.0.0.1:7001" {
		t.Fatalf("%q %v", got, err)
	}
	got, err = peerRedisEnv("redis://127.0.0.1:6390/0")
	if err != nil || len(got) != 2 || got[0] != "REDIS_HOST=127.0.0.1" || got[1] != "REDIS_PORT=6390" {
		t.Fatalf("%q %v", got, err)
	}
	if _, err := peerRedisEnv("redis-cluster://u:pw@h:7000"); err == nil {
		t.Fatal("credentials: no error")
	}
}
