package main

import (
	"fmt"
	"io"
)

// goal is one of issue 14's targets as this run measured it: the figure it
// is read from, its baseline and ratio, and whether it is met.
type goal struct {
	Target   string   `json:"target"`
	Scenario string   `json:"scenario"`
	Figure   string   `json:"figure"`
	Value    *float64 `json:"value,omitempty"`
	Unit     string   `json:"unit,omitempty"`
	Baseline *float64 `json:"baseline,omitempty"`
	Ratio    *float64 `json:"ratio,omitempty"`
	OK       *bool    `json:"ok,omitempty"`
	Missing  string   `json:"missing,omitempty"` // why there is no figure
}

// goals are issue 14's targets, each read from one figure of the table
// (which holds it to the target).
var goals = []struct{ target, scenario, figure string }{
	{"pipeline ≥ 0.6 of bare asynq", "throughput", "sms:send drained vs bare asynq no-op"},
	{"pipeline ≥ 1.0 of BullMQ + twilio-node", "peer", "ours (throughput path) vs BullMQ + twilio-node"},
	{"≤ 25 Redis commands per message (the handler path)", "throughput", "Redis commands per message (incl. inside Lua)"},
	{"≥ 0.9 of CONCURRENCY/latency at 100 ms", "twilio-latency", "sms:send drained vs bound CONCURRENCY/latency"},
	{"enqueue bulk of 100,000 ≥ 0.9 of bare asynq Enqueue ×16", "enqueue", "enqueued vs bare asynq Enqueue ×16"},
	{"idle ≤ 60 Redis commands per worker per second", "redis-cost", "idle Redis commands per worker per second"},
	{"critical p99 < 250 ms (idle)", "latency", "critical p99, idle"},
}

// targetsOf reads each goal from rows.
func targetsOf(rows []row) []goal {
	var out []goal
	for _, g := range goals {
		t := goal{Target: g.target, Scenario: g.scenario, Figure: g.figure, Missing: "scenario not run (-run)"}
		for _, r := range rows {
			if r.Scenario != g.scenario {
				continue
			}
			switch {
			case r.Skipped != "":
				t.Missing = "skipped: " + r.Skipped
			case r.Err != "":
				t.Missing = "error: " + r.Err
			default:
				t.Missing = "figure not in the row"
			}
			for _, f := range r.Figures {
				if f.Name == g.figure {
					v := f.Value
					t.Value, t.Unit, t.Baseline, t.Ratio, t.OK, t.Missing = &v, f.Unit, f.Baseline, f.Ratio, f.OK, ""
				}
			}
		}
		out = append(out, t)
	}
	return out
}

// printTargets writes the targets table.
func printTargets(w io.Writer, goals []goal) {
	fmt.Fprintln(w, "| target (issue 14) | figure | ours | baseline | ratio | |")
	fmt.Fprintln(w, "|---|---|---:|---:|---:|---|")
	for _, g := range goals {
		if g.Value == nil {
			fmt.Fprintf(w, "| %s | %s: %s | | | | – |\n", cell(g.Target), g.Scenario, cell(g.Missing))
			continue
		}
		base, ratio, mark := "", "", ""
		if g.Baseline != nil {
			base = withUnit(*g.Baseline, g.Unit)
		}
		if g.Ratio != nil {
			ratio = formatValue(*g.Ratio)
		}
		if g.OK != nil {
			mark = map[bool]string{true: "✓", false: "✗"}[*g.OK]
		}
		fmt.Fprintf(w, "| %s | %s: %s | %s | %s | %s | %s |\n", cell(g.Target), g.Scenario, cell(g.Figure), withUnit(*g.Value, g.Unit), base, ratio, mark)
	}
}
