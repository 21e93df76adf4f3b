package main

import (
	"bytes"
	"context"
	"errors"
	"os"
	"os/exec"
	"strings"
	"testing"
	"time"

	"github.com/sbagenthub/twilio-worker/phone"
)

func TestPercentile(t *testing.T) {
	ms := func(v ...int) []time.Duration {
		var out []time.Duration
		for _, x := range v {
			out = append(out, time.Duration(x)*time.Millisecond)
		}
		return out
	}
	hundred := make([]time.Duration, 100)
	for i := range hundred {
		hundred[i] = time.Duration(100-i) * time.Millisecond // 100 … 1, reversed
	}
	for _, tc := range []struct {
		name string
		ds   []time.Duration
		p    float64
		want time.Duration
	}{
		{"empty", nil, 50, 0},
		{"one", ms(7), 99, 7 * time.Millisecond},
		{"median of odd", ms(5, 1, 3), 50, 3 * time.Millisecond},
		{"median of even is the lower", ms(4, 1, 3, 2), 50, 2 * time.Millisecond},
		{"p99 of 100 is the 99th", hundred, 99, 99 * time.Millisecond},
		{"p100 is the max", hundred, 100, 100 * time.Millisecond},
		{"p1 of 100 is the min", hundred, 1, time.Millisecond},
		{"p99 of 10 is the max", ms(1, 2, 3, 4, 5, 6, 7, 8, 9, 10), 99, 10 * time.Millisecond},
	} {
		t.Run(tc.name, func(t *testing.T) {
			in := append([]time.Duration(nil), tc.ds...)
			if got := percentile(tc.ds, tc.p); got != tc.want {
				t.Fatalf("percentile(%v, %v) = %v, want %v", tc.ds, tc.p, got, tc.want)
			}
			for i := range in {
				if in[i] != tc.ds[i] {
					t.Fatal("percentile reordered its input")
				}
			}
		})
	}
}

func TestFormatValue(t *testing.T) {
	for _, tc := range []struct {
		v    float64
		want string
	}{
		{5000, "5000"}, {0, "0"}, {1234.56, "1235"}, {42.25, "42.2"}, {1.054, "1.05"}, {0.9534, "0.953"}, {-0.5, "-0.500"},
	} {
		if got := formatValue(tc.v); got != tc.want {
			t.Errorf("formatValue(%v) = %q, want %q", tc.v, got, tc.want)
		}
	}
}

func TestRatioAtLeast(t *testing.T) {
	f := ratioAtLeast(figure{Name: "x", Value: 600}, 1000, 0.6)
	if f.Baseline == nil || *f.Baseline != 1000 || f.Ratio == nil || *f.Ratio != 0.6 || f.OK == nil || !*f.OK {
		t.Fatalf("600 vs 1000 held to 0.6: %+v", f)
	}
	if f.Target != "ratio ≥ 0.600" {
		t.Fatalf("target %q", f.Target)
	}
	f = ratioAtLeast(figure{Name: "x", Value: 599}, 1000, 0.6)
	if *f.OK {
		t.Fatal("599 vs 1000 passed a 0.6 ratio")
	}
	f = ratioAtLeast(figure{Name: "x", Value: 1}, 0, 0.6)
	if f.Ratio != nil || *f.OK {
		t.Fatalf("a zero baseline has no ratio and cannot pass: %+v", f)
	}
}

func TestPrintTable(t *testing.T) {
	ok := ratioAtLeast(figure{Name: "drained vs bare", Value: 3000, Unit: "msg/s"}, 4000, 0.6)
	miss := held(figure{Name: "p99 | idle", Value: 312.5, Unit: "ms", Target: "< 250 ms"}, false)
	rows := []row{
		{Scenario: "throughput", Figures: []figure{{Name: "messages", Value: 5000}, ok}},
		{Scenario: "latency", Err: "worker exited:\nboom", Figures: []figure{miss}},
	}
	var b bytes.Buffer
	printTable(&b, rows)
	want := `| scenario | figure | ours | baseline | ratio | target | |
|---|---|---:|---:|---:|---|---|
| throughput | messages | 5000 |  |  |  |  |
|  | drained vs bare | 3000 msg/s | 4000 msg/s | 0.750 | ratio ≥ 0.600 | ✓ |
| latency | error | worker exited: boom | | | | ✗ |
|  | p99 \| idle | 312 ms |  |  | < 250 ms | ✗ |
`
	if b.String() != want {
		t.Fatalf("table:\n%s\nwant:\n%s", b.String(), want)
	}
}

func TestPrintReport(t *testing.T) {
	rep := report{Machine: machine{Date: time.Date(2026, 3, 1, 12, 0, 0, 0, time.UTC), CPU: "Some CPU", Cores: 2,
		OS: "linux/amd64 6.1", Go: "go1.26.8", Redis: "7.0.15", Asynq: "v0.26.0", LoadBefore: "2.50 2.88 2.79", LoadAfter: "3.00 2.90 2.80"},
		Short: true, Rows: []row{{Scenario: "enqueue", Desc: "N recipients", Note: "Measured: tasks.EnqueueSMS", Took: 1500 * time.Millisecond}}}
	var b bytes.Buffer
	printReport(&b, rep)
	for _, want := range []string{
		"Run 2026-03-01 12:00 UTC (-short) on Some CPU, 2 cores, linux/amd64 6.1; go1.26.8; redis-server 7.0.15; asynq v0.26.0. Load average 2.50 2.88 2.79 before, 3.00 2.90 2.80 after.",
		"| scenario | figure |",
		"- **enqueue** (1.5s): N recipients. Measured: tasks.EnqueueSMS.",
	} {
		if !strings.Contains(b.String(), want) {
			t.Errorf("report lacks %q:\n%s", want, b.String())
		}
	}
}

// TestExitStatus: a missed target is reported and exits 0 (1 with -strict);
// a scenario that cannot run exits 1.
func TestExitStatus(t *testing.T) {
	saved := scenarios
	t.Cleanup(func() { scenarios = saved })
	missed := func(context.Context, *env) (result, error) {
		return result{Figures: []figure{held(figure{Name: "p99", Value: 300, Target: "< 250"}, false)}}, nil
	}
	broken := func(context.Context, *env) (result, error) {
		return result{}, errors.New("redis-server is not on PATH")
	}
	for _, tc := range []struct {
		name string
		run  func(context.Context, *env) (result, error)
		args []string
		want int
	}{
		{"missed target", missed, nil, 0},
		{"missed target, strict", missed, []string{"-strict"}, 1},
		{"scenario error", broken, nil, 1},
	} {
		t.Run(tc.name, func(t *testing.T) {
			scenarios = []scenario{{name: "fake", desc: "fake", run: tc.run}}
			var out, errOut bytes.Buffer
			if got := run(append(tc.args, "-json", ""), &out, &errOut); got != tc.want {
				t.Fatalf("exit %d, want %d\n%s\n%s", got, tc.want, out.String(), errOut.String())
			}
			if !strings.Contains(out.String(), "| fake |") || !strings.Contains(out.String(), "✗") {
				t.Fatalf("the table does not show the finding:\n%s", out.String())
			}
		})
	}
}

func TestStatusField(t *testing.T) {
	status := "Name:\tworker\nVmPeak:\t 1234 kB\nVmHWM:\t   51200 kB\nVmRSS:\t   40000 kB\nThreads:\t12\n"
	if got, err := statusField(status, "VmHWM"); err != nil || got != 51200*1024 {
		t.Fatalf("VmHWM = %d, %v", got, err)
	}
	if got, err := statusField(status, "Threads"); err != nil || got != 12 {
		t.Fatalf("Threads = %d, %v", got, err)
	}
	if _, err := statusField(status, "VmSwap"); err == nil {
		t.Fatal("a missing field read without error")
	}
}

func TestInfoField(t *testing.T) {
	info := "# Memory\r\nused_memory:1048576\r\nused_memory_human:1.00M\r\nused_memory_rss:2000000\r\n"
	if got, err := infoField(info, "used_memory"); err != nil || got != 1048576 {
		t.Fatalf("used_memory = %d, %v", got, err)
	}
	if _, err := infoField(info, "maxmemory"); err == nil {
		t.Fatal("a missing field read without error")
	}
}

func TestMachineParsers(t *testing.T) {
	if got := redisVersion("Redis server v=7.0.15 sha=00000000:0 malloc=jemalloc-5.3.0 bits=64 build=ae4d7c971a948f0\n"); got != "7.0.15" {
		t.Fatalf("redis version %q", got)
	}
	cpu := "processor\t: 0\nvendor_id\t: GenuineIntel\nmodel name\t: Intel(R) Xeon(R) CPU @ 2.20GHz\nprocessor\t: 1\nmodel name\t: other\n"
	if got := cpuModel(strings.NewReader(cpu)); got != "Intel(R) Xeon(R) CPU @ 2.20GHz" {
		t.Fatalf("cpu model %q", got)
	}
}

func TestBenchNumbers(t *testing.T) {
	seen := map[string]bool{}
	for _, i := range []int{0, 1, 9999, 10000, 123456, 200000, 200099, 299999} {
		n := benchNumber(i)
		if seen[n] {
			t.Fatalf("benchNumber(%d) = %s again", i, n)
		}
		seen[n] = true
	}
	for i := 0; i < 300000; i += 10000 { // each area code, at both ends of its range
		for _, j := range []int{i, i + 9999} {
			n := benchNumber(j)
			if got, err := phone.Parse(n, ""); err != nil || got.String() != n {
				t.Fatalf("benchNumber(%d) = %s: parsed %q, %v", j, n, got, err)
			}
		}
	}
}

func TestPadding(t *testing.T) {
	for _, size := range []int{10, 100, 157} {
		if got := len(padding(size)); got != size {
			t.Errorf("padding(%d) is %d bytes", size, got)
		}
	}
}

func TestParallel(t *testing.T) {
	hits := make([]int32, 1000)
	if err := parallel(context.Background(), len(hits), 16, func(i int) error { hits[i]++; return nil }); err != nil {
		t.Fatal(err)
	}
	for i, h := range hits {
		if h != 1 {
			t.Fatalf("item %d called %d times", i, h)
		}
	}
	boom := errors.New("boom")
	err := parallel(context.Background(), 1000, 4, func(i int) error {
		if i == 10 {
			return boom
		}
		return nil
	})
	if !errors.Is(err, boom) {
		t.Fatalf("error %v, want boom", err)
	}
}

// TestMemoryScenario runs the one scenario that needs only redis-server,
// end to end, as a check of the wiring (no figure is held to anything).
func TestMemoryScenario(t *testing.T) {
	if _, err := exec.LookPath("redis-server"); err != nil {
		if requireRedis() {
			t.Fatal("REQUIRE_REDIS_SERVER is set and redis-server is not on PATH")
		}
		t.Skip("redis-server is not on PATH")
	}
	e := &env{short: true, dir: t.TempDir(), log: testWriter{t}}
	res, err := memory(t.Context(), e)
	if err != nil {
		t.Fatal(err)
	}
	got := map[string]figure{}
	for _, f := range res.Figures {
		got[f.Name] = f
	}
	per := got["Redis per pending sms:send vs bare asynq task"]
	if per.Value <= 0 || per.Baseline == nil || *per.Baseline <= 0 {
		t.Fatalf("bytes per task not measured: %+v", res.Figures)
	}
}

func requireRedis() bool { return strings.TrimSpace(os.Getenv("REQUIRE_REDIS_SERVER")) == "1" }

type testWriter struct{ t *testing.T }

func (w testWriter) Write(b []byte) (int, error) {
	w.t.Log(strings.TrimSpace(string(b)))
	return len(b), nil
}

func TestStatCPU(t *testing.T) {
	stat := "4242 (redis server) S 1 4242 4242 0 -1 4194560 500 0 0 0 1234 567 0 0 20 0 4 0 100 12345678 900 18446744073709551615\n"
	if got, err := statCPU(stat); err != nil || got != 1234+567 {
		t.Fatalf("statCPU = %d, %v; want 1801", got, err)
	}
	if _, err := statCPU("4242 (x) S 1"); err == nil {
		t.Fatal("a short stat line read without error")
	}
}
