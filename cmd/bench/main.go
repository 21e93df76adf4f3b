// Command bench runs the worker's benchmark scenarios against real worker
// processes, a private redis-server and the Twilio simulator, and prints a
// Markdown table (and writes JSON) with the machine it ran on and, for each
// figure, the baseline measured in the same run (bare asynq on the same
// Redis, or the bound the figure is held to) and the ratio.
//
//	go run ./cmd/bench [-short] [-strict] [-json bench-results.json] [-run NAME]
//
// A missed target is a finding, reported with ✗; the exit status is 1 only
// when a scenario could not run (or, with -strict, when a target is missed).
// Each scenario is one row group of the table; add one by appending to
// scenarios.
package main

import (
	"context"
	"encoding/json"
	"errors"
	"flag"
	"fmt"
	"io"
	"os"
	"os/signal"
	"regexp"
	"strings"
	"syscall"
	"time"
)

// scenario is one group of rows of the table.
type scenario struct {
	name string
	desc string
	run  func(ctx context.Context, env *env) (result, error)
	// ownRedis, when set, says why the scenario runs only on a private
	// redis-server of its own; with -cluster or -redis its row says so.
	ownRedis string
}

// ownRedis is why a scenario that starts its own redis-server does not run
// on a cluster or on the Redis -redis names.
const ownRedis = "not ported to -cluster / -redis: it starts its own private redis-server"

var scenarios = []scenario{
	{"throughput", "N sms:send pre-queued on default, CONCURRENCY=50, zero-latency simulator, limits and Twilio pacing (TWILIO_MAX_RPS/TWILIO_MAX_CONCURRENT=10000) not binding, first delivery poll 1 min out; drain time vs bare asynq (no-op handler, same concurrency, Redis, queues, task options and payload size)", throughput, ""},
	{"twilio-latency", "N sms:send pre-queued, simulator at 100 ms, CONCURRENCY=200, limits and Twilio pacing not binding; drain rate vs the bound CONCURRENCY/latency = 2000/s", twilioLatency, ""},
	{"enqueue", "N recipients through the producer path (enqueue bulk, or the producer (producer.SendSMS) from 16 goroutines) vs asynq.Client.Enqueue from 16 goroutines, same payload size, same Redis", enqueueRate, ""},
	{"latency", "critical sms:send (CONCURRENCY=50, zero-latency simulator, limits and pacing not binding), enqueue to the simulator's createdAt, samples 20 ms apart, idle and while a bulk campaign drains; baseline: bare asynq enqueue to no-op handler start, idle", latency, ""},
	{"sender-limit", "1 sender shared by 2 workers at SENDER_RATE=20/s, then by 4 workers at 50/s; single-segment messages to distinct recipients", senderLimit, ownRedis},
	{"pool", "2 workers, SENDER_POOL of 20 numbers at SENDER_RATE=5/s each, 10,000 messages without a sender through producer.SendSMS (booked against the pool's 100/s), zero-latency simulator", senderPool, ""},
	{"memory", "Redis bytes per pending task (INFO used_memory before/after N tasks): sms:send through the producer (producer.SendSMS) vs a bare asynq task with payload {}", memory, ""},
	{"peer", "the same N messages through our pipeline (the throughput row's path, CONCURRENCY=50) and through BullMQ + twilio-node (Queue.addBulk, a Worker at concurrency 50 whose job runs SISMEMBER on the opt-out set, then client.messages.create), same Redis and simulator; Redis commands include each side's enqueue", peerScenario, ""},
	{"redis-cost", "Redis commands (INFO stats, incl. inside Lua): 4 idle workers over a window, and per message for producer.SendSMS, enqueue bulk and the handler path", redisCost, ""},
}

// figure is one measured value, with the baseline it is compared with and
// the target it is held to, when it has them.
type figure struct {
	Name     string   `json:"name"`
	Value    float64  `json:"value"`
	Unit     string   `json:"unit,omitempty"`
	Baseline *float64 `json:"baseline,omitempty"` // same unit as Value
	Ratio    *float64 `json:"ratio,omitempty"`    // Value / Baseline
	Target   string   `json:"target,omitempty"`   // e.g. "ratio >= 0.6", "< 250 ms"
	OK       *bool    `json:"ok,omitempty"`
}

// result is what a scenario measured; Note says what was measured when that
// depends on the run (e.g. which producer path).
type result struct {
	Figures []figure
	Note    string
}

// row is a scenario's outcome.
type row struct {
	Scenario string        `json:"scenario"`
	Desc     string        `json:"description"`
	Note     string        `json:"note,omitempty"`
	Figures  []figure      `json:"figures"`
	Err      string        `json:"error,omitempty"`
	Skipped  string        `json:"skipped,omitempty"` // why the scenario did not run here`
	Took     time.Duration `json:"tookNs"`
}

// report is the whole run, as written to JSON.
type report struct {
	Machine machine `json:"machine"`
	Short   bool    `json:"short"`
	Redis   string  `json:"redis"`
	Rows    []row   `json:"rows"`
	Targets []goal  `json:"targets"`
}

// env is what scenarios share: where the binaries are, and the options.
type env struct {
	short    bool
	dir      string // temporary directory: binaries, redis data
	log      io.Writer
	redisURL string // -redis: run on this Redis (emptied by each scenario) instead of a private one
	cluster  bool   // -cluster: a private 3-master Redis Cluster per scenario
}

func main() {
	os.Exit(run(os.Args[1:], os.Stdout, os.Stderr))
}

func run(args []string, stdout, stderr io.Writer) int {
	fs := flag.NewFlagSet("bench", flag.ContinueOnError)
	fs.SetOutput(stderr)
	short := fs.Bool("short", false, "a quick look: smaller runs")
	strict := fs.Bool("strict", false, "exit 1 when a figure misses its target, too")
	jsonPath := fs.String("json", "bench-results.json", "write the figures here (empty: do not write)")
	only := fs.String("run", "", "run only the scenarios whose name matches this regular expression")
	redisURL := fs.String("redis", os.Getenv("BENCH_REDIS_URL"), "run on this Redis (REDIS_URL syntax, redis-cluster:// too; default $BENCH_REDIS_URL) instead of a private redis-server: EVERY KEY IN IT IS DELETED")
	cluster := fs.Bool("cluster", false, "run on a private 3-master Redis Cluster (redis-server and redis-cli on PATH)")
	if err := fs.Parse(args); err != nil {
		return 2
	}
	if *cluster && *redisURL != "" {
		fmt.Fprintln(stderr, "bench: -cluster and -redis (or BENCH_REDIS_URL) exclude each other")
		return 2
	}
	var match *regexp.Regexp
	if *only != "" {
		var err error
		if match, err = regexp.Compile(*only); err != nil {
			fmt.Fprintf(stderr, "bench: -run: %v\n", err)
			return 2
		}
	}
	dir, err := os.MkdirTemp("", "twilio-worker-bench")
	if err != nil {
		fmt.Fprintln(stderr, "bench:", err)
		return 1
	}
	defer os.RemoveAll(dir)
	ctx, stop := signal.NotifyContext(context.Background(), os.Interrupt, syscall.SIGTERM)
	defer stop()

	e := &env{short: *short, dir: dir, log: stderr, redisURL: *redisURL, cluster: *cluster}
	rep := report{Machine: describeMachine(ctx), Short: *short, Redis: e.where()}
	errored, missed := false, false
	for _, s := range scenarios {
		if match != nil && !match.MatchString(s.name) {
			continue
		}
		fmt.Fprintf(stderr, "bench: %s…\n", s.name)
		start := time.Now()
		var res result
		var err error
		if s.ownRedis != "" && (e.cluster || e.redisURL != "") {
			err = errSkip{s.ownRedis}
		} else {
			res, err = s.run(ctx, e)
		}
		r := row{Scenario: s.name, Desc: s.desc, Note: res.Note, Figures: res.Figures, Took: time.Since(start)}
		var skip errSkip
		if errors.As(err, &skip) {
			r.Skipped = skip.why
			fmt.Fprintf(stderr, "bench: %s: %v\n", s.name, err)
		} else if err != nil {
			r.Err = err.Error()
			errored = true
			fmt.Fprintf(stderr, "bench: %s: %v\n", s.name, err)
		}
		missed = missed || anyMissed(res.Figures)
		rep.Rows = append(rep.Rows, r)
	}
	rep.Machine.LoadAfter = loadAverage()
	rep.Targets = targetsOf(rep.Rows)
	printReport(stdout, rep)
	if *jsonPath != "" {
		b, _ := json.MarshalIndent(rep, "", "  ")
		if err := os.WriteFile(*jsonPath, append(b, '\n'), 0o644); err != nil {
			fmt.Fprintln(stderr, "bench:", err)
			return 1
		}
		fmt.Fprintf(stderr, "bench: figures written to %s\n", *jsonPath)
	}
	switch {
	case errored:
		return 1
	case missed && *strict:
		fmt.Fprintln(stderr, "bench: a target was missed (-strict)")
		return 1
	case missed:
		fmt.Fprintln(stderr, "bench: a target was missed (✗ in the table); a finding, not a failure (-strict makes it one)")
	}
	return 0
}

func anyMissed(figs []figure) bool {
	for _, f := range figs {
		if f.OK != nil && !*f.OK {
			return true
		}
	}
	return false
}

// printReport writes the machine, the table, and the scenarios' descriptions
// and notes, as Markdown.
func printReport(w io.Writer, rep report) {
	m := rep.Machine
	mode := ""
	if rep.Short {
		mode = " (-short)"
	}
	where := ""
	if rep.Redis != "" {
		where = "; on " + rep.Redis
	}
	fmt.Fprintf(w, "Run %s%s on %s, %d cores, %s; %s; redis-server %s; asynq %s%s. Load average %s before, %s after.\n\n",
		m.Date.Format("2006-01-02 15:04 MST"), mode, m.CPU, m.Cores, m.OS, m.Go, m.Redis, m.Asynq, where, m.LoadBefore, m.LoadAfter)
	printTable(w, rep.Rows)
	fmt.Fprintln(w)
	printTargets(w, rep.Targets)
	fmt.Fprintln(w)
	for _, r := range rep.Rows {
		fmt.Fprintf(w, "- **%s** (%s): %s", r.Scenario, r.Took.Round(100*time.Millisecond), r.Desc)
		if r.Note != "" {
			fmt.Fprintf(w, ". %s", r.Note)
		}
		fmt.Fprintln(w, ".")
	}
}

func printTable(w io.Writer, rows []row) {
	fmt.Fprintln(w, "| scenario | figure | ours | baseline | ratio | target | |")
	fmt.Fprintln(w, "|---|---|---:|---:|---:|---|---|")
	for _, r := range rows {
		name := r.Scenario
		if r.Err != "" {
			fmt.Fprintf(w, "| %s | error | %s | | | | ✗ |\n", name, cell(r.Err))
			name = ""
		}
		if r.Skipped != "" {
			fmt.Fprintf(w, "| %s | skipped: %s | | | | | |\n", name, cell(r.Skipped))
			name = ""
		}
		for _, f := range r.Figures {
			mark := ""
			if f.OK != nil {
				mark = map[bool]string{true: "✓", false: "✗"}[*f.OK]
			}
			base, ratio := "", ""
			if f.Baseline != nil {
				base = withUnit(*f.Baseline, f.Unit)
			}
			if f.Ratio != nil {
				ratio = formatValue(*f.Ratio)
			}
			fmt.Fprintf(w, "| %s | %s | %s | %s | %s | %s | %s |\n", name, cell(f.Name), withUnit(f.Value, f.Unit), base, ratio, cell(f.Target), mark)
			name = ""
		}
	}
}

// cell makes s safe inside a Markdown table cell.
func cell(s string) string {
	return strings.NewReplacer("|", "\\|", "\n", " ").Replace(s)
}

func withUnit(v float64, unit string) string {
	if unit == "" {
		return formatValue(v)
	}
	return formatValue(v) + " " + unit
}

// formatValue prints whole numbers as such and others with about three
// significant digits (at least the units).
func formatValue(v float64) string {
	a := v
	if a < 0 {
		a = -a
	}
	switch {
	case v == float64(int64(v)):
		return fmt.Sprint(int64(v))
	case a >= 100:
		return fmt.Sprintf("%.0f", v)
	case a >= 10:
		return fmt.Sprintf("%.1f", v)
	case a >= 1:
		return fmt.Sprintf("%.2f", v)
	default:
		return fmt.Sprintf("%.3f", v)
	}
}

// held returns f with OK set by the comparison.
func held(f figure, ok bool) figure {
	f.OK = &ok
	return f
}

// versus returns f with its baseline and the ratio value/baseline.
func versus(f figure, baseline float64) figure {
	f.Baseline = &baseline
	if baseline != 0 {
		r := f.Value / baseline
		f.Ratio = &r
	}
	return f
}

// ratioAtLeast returns f, compared with baseline, held to ratio >= min.
func ratioAtLeast(f figure, baseline, min float64) figure {
	f = versus(f, baseline)
	f.Target = fmt.Sprintf("ratio ≥ %s", formatValue(min))
	return held(f, f.Ratio != nil && *f.Ratio >= min)
}
