// Command bench runs the worker's benchmark scenarios against real worker
// processes, a private redis-server and the Twilio simulator, prints a
// Markdown table and writes the figures as JSON.
//
//	go run ./cmd/bench [-short] [-json bench-results.json] [-run NAME]
//
// Each scenario is one row of the table; add one by appending to scenarios.
package main

import (
	"context"
	"encoding/json"
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

// scenario is one row of the table.
type scenario struct {
	name string
	desc string
	run  func(ctx context.Context, env *env) ([]figure, error)
}

var scenarios = []scenario{
	{"sender-limit", "2 workers, 1 sender at SENDER_RATE=20/s, single-segment messages to distinct recipients", senderLimit},
}

// figure is one measured value, with the target it is held to when it has one.
type figure struct {
	Name   string  `json:"name"`
	Value  float64 `json:"value"`
	Unit   string  `json:"unit,omitempty"`
	Target string  `json:"target,omitempty"` // e.g. ">= 0.95"
	OK     *bool   `json:"ok,omitempty"`
}

// row is a scenario's outcome.
type row struct {
	Scenario string        `json:"scenario"`
	Desc     string        `json:"description"`
	Figures  []figure      `json:"figures"`
	Err      string        `json:"error,omitempty"`
	Took     time.Duration `json:"tookNs"`
}

// env is what scenarios share: where the binaries are, and the options.
type env struct {
	short bool
	dir   string // temporary directory: binaries, redis data
	log   io.Writer
}

func main() {
	os.Exit(run(os.Args[1:], os.Stdout, os.Stderr))
}

func run(args []string, stdout, stderr io.Writer) int {
	fs := flag.NewFlagSet("bench", flag.ContinueOnError)
	fs.SetOutput(stderr)
	short := fs.Bool("short", false, "a quick look: smaller runs")
	jsonPath := fs.String("json", "bench-results.json", "write the figures here (empty: do not write)")
	only := fs.String("run", "", "run only the scenarios whose name matches this regular expression")
	if err := fs.Parse(args); err != nil {
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

	e := &env{short: *short, dir: dir, log: stderr}
	var rows []row
	failed := false
	for _, s := range scenarios {
		if match != nil && !match.MatchString(s.name) {
			continue
		}
		fmt.Fprintf(stderr, "bench: %s…\n", s.name)
		start := time.Now()
		figs, err := s.run(ctx, e)
		r := row{Scenario: s.name, Desc: s.desc, Figures: figs, Took: time.Since(start)}
		if err != nil {
			r.Err = err.Error()
			failed = true
		}
		for _, f := range figs {
			if f.OK != nil && !*f.OK {
				failed = true
			}
		}
		rows = append(rows, r)
	}
	printTable(stdout, rows)
	if *jsonPath != "" {
		b, _ := json.MarshalIndent(rows, "", "  ")
		if err := os.WriteFile(*jsonPath, append(b, '\n'), 0o644); err != nil {
			fmt.Fprintln(stderr, "bench:", err)
			return 1
		}
		fmt.Fprintf(stderr, "bench: figures written to %s\n", *jsonPath)
	}
	if failed {
		return 1
	}
	return 0
}

func printTable(w io.Writer, rows []row) {
	fmt.Fprintln(w, "| scenario | figure | value | target | |")
	fmt.Fprintln(w, "|---|---|---:|---|---|")
	for _, r := range rows {
		name := r.Scenario
		if r.Err != "" {
			fmt.Fprintf(w, "| %s | error | %s | | ✗ |\n", name, strings.ReplaceAll(r.Err, "|", "\\|"))
			name = ""
		}
		for _, f := range r.Figures {
			mark := ""
			if f.OK != nil {
				mark = map[bool]string{true: "✓", false: "✗"}[*f.OK]
			}
			fmt.Fprintf(w, "| %s | %s | %s %s | %s | %s |\n", name, f.Name, formatValue(f.Value), f.Unit, f.Target, mark)
			name = ""
		}
	}
}

func formatValue(v float64) string {
	if v == float64(int64(v)) {
		return fmt.Sprint(int64(v))
	}
	return fmt.Sprintf("%.3f", v)
}

// held returns f with OK set by the comparison.
func held(f figure, ok bool) figure {
	f.OK = &ok
	return f
}
