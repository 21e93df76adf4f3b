package optout_test

import (
	"context"
	"errors"
	"fmt"
	"io"
	"os"
	"runtime"
	"slices"
	"strconv"
	"strings"
	"sync/atomic"
	"testing"
	"time"

	"github.com/redis/go-redis/v9"

	"github.com/sbagenthub/twilio-worker/internal/redistest"
	"github.com/sbagenthub/twilio-worker/optout"
	"github.com/sbagenthub/twilio-worker/phone"
)

var bg = context.Background()

func newStore(t testing.TB) (*optout.Store, *redistest.Server) {
	t.Helper()
	srv := redistest.Start(t)
	return optout.NewStore(srv.Client(t)), srv
}

func TestAddRemoveCheckHistory(t *testing.T) {
	t.Parallel()
	s, _ := newStore(t)
	const n = "+14155550100"
	if out, err := s.OptedOut(bg, optout.SMS, n); err != nil || out {
		t.Fatalf("fresh number opted out = %v, %v", out, err)
	}
	if changed, err := s.Add(bg, optout.SMS, n, optout.SourceKeyword); err != nil || !changed {
		t.Fatalf("Add = %v, %v", changed, err)
	}
	if changed, _ := s.Add(bg, optout.SMS, n, optout.SourceCLI); changed {
		t.Fatal("a second Add reported a change")
	}
	if err := s.Check(bg, optout.SMS, n); !errors.Is(err, optout.ErrOptedOut) {
		t.Fatalf("Check = %v, want ErrOptedOut", err)
	}
	if err := s.Check(bg, optout.Voice, n); err != nil {
		t.Fatalf("voice Check = %v: an SMS opt-out is not a voice one", err)
	}
	if _, err := s.AddConsent(bg, optout.SMS, n, optout.SourceAPI); err != nil {
		t.Fatal(err)
	}
	if ok, _ := s.HasConsent(bg, optout.SMS, n); !ok {
		t.Fatal("consent not recorded")
	}
	if changed, err := s.Remove(bg, optout.SMS, n, optout.SourceKeyword); err != nil || !changed {
		t.Fatalf("Remove = %v, %v", changed, err)
	}
	if c, _ := s.Count(bg, optout.SMS); c != 0 {
		t.Fatalf("count %d after remove", c)
	}
	hist, err := s.History(bg, n)
	if err != nil {
		t.Fatal(err)
	}
	var got []string
	for _, ev := range hist {
		got = append(got, ev.Action+"/"+string(ev.Source))
	}
	want := []string{"opt-in/keyword", "consent/api", "opt-out/cli", "opt-out/keyword"}
	if !slices.Equal(got, want) {
		t.Fatalf("history %v, want %v (newest first)", got, want)
	}
	if _, err := s.Add(bg, optout.Channel("fax"), n, optout.SourceCLI); err == nil {
		t.Fatal("an unknown channel was accepted")
	}
}

func TestEachWalksEveryNumber(t *testing.T) {
	t.Parallel()
	s, _ := newStore(t)
	want := map[string]bool{}
	var lines strings.Builder
	for i := range 2500 {
		n := fmt.Sprintf("+1415%03d%04d", 200+i/10000, i%10000)
		want[n] = true
		lines.WriteString(n + "\n")
	}
	if _, err := s.ImportFile(bg, strings.NewReader(lines.String()), optout.ImportOptions{Lists: []optout.List{optout.OptOutList(optout.Voice)}}); err != nil {
		t.Fatal(err)
	}
	seen := map[string]bool{}
	if err := s.Each(bg, optout.OptOutList(optout.Voice), func(n string) error { seen[n] = true; return nil }); err != nil {
		t.Fatal(err)
	}
	if len(seen) != len(want) {
		t.Fatalf("Each saw %d numbers, want %d", len(seen), len(want))
	}
	for n := range want {
		if !seen[n] {
			t.Fatalf("Each missed %s", n)
		}
	}
}

func TestImportFile(t *testing.T) {
	t.Parallel()
	s, _ := newStore(t)
	if _, err := s.Add(bg, optout.SMS, "+14155550101", optout.SourceCLI); err != nil {
		t.Fatal(err)
	}
	in := strings.Join([]string{
		"phone,name",               // 1: a header: invalid
		"+1 (415) 555-0101,Alice",  // 2: already opted out
		"",                         // 3: blank
		"# comment",                // 4
		"\"+44 20 7123 4567\";Bob", // 5
		"415-555-0102",             // 6: national, region US
		"12",                       // 7: invalid
		strings.Repeat("9", 5000),  // 8: too long a line
		"+14155550102",             // 9: a duplicate of line 6
		"  +61 2 1234 5678\t x",    // 10
		"+14155550103\r",           // 11: CRLF
	}, "\n")
	rep, err := s.ImportFile(bg, strings.NewReader(in), optout.ImportOptions{
		Lists: []optout.List{optout.OptOutList(optout.SMS), optout.OptOutList(optout.Voice)}, Region: "US", Name: "list.csv", Batch: 3})
	if err != nil {
		t.Fatal(err)
	}
	if rep.Lines != 11 || rep.Valid != 6 || rep.Invalid != 3 || !slices.Equal(rep.InvalidLines, []int64{1, 7, 8}) || !rep.Complete {
		t.Fatalf("report %+v", rep)
	}
	if rep.Added["optout:sms"] != 4 || rep.Added["optout:voice"] != 5 {
		t.Fatalf("added %v, want sms 4 (one was there), voice 5", rep.Added)
	}
	for _, n := range []string{"+14155550101", "+442071234567", "+14155550102", "+61212345678", "+14155550103"} {
		if out, _ := s.OptedOut(bg, optout.Voice, n); !out {
			t.Fatalf("%s not imported", n)
		}
	}
	hist, err := s.History(bg, "+442071234567")
	if err != nil {
		t.Fatal(err)
	}
	if len(hist) != 2 || hist[0].Source != optout.SourceImport || hist[0].Import != rep.ID {
		t.Fatalf("history %+v, want the import for both channels", hist)
	}
	// The number opted out earlier keeps its own history and gains the import.
	hist, _ = s.History(bg, "+14155550101")
	if len(hist) != 3 || hist[2].Source != optout.SourceCLI {
		t.Fatalf("history %+v", hist)
	}
	recs, err := s.Imports(bg, 10)
	if err != nil || len(recs) != 1 || recs[0].ID != rep.ID || recs[0].Valid != 6 || recs[0].Name != "list.csv" {
		t.Fatalf("imports %+v, %v", recs, err)
	}
}

func TestImportStopsOnRedisFailure(t *testing.T) {
	t.Parallel()
	srv := redistest.Start(t)
	opt := srv.Options()
	opt.MaxRetries, opt.DialTimeout = -1, 200*time.Millisecond
	rdb := redis.NewClient(opt)
	t.Cleanup(func() { rdb.Close() })
	s := optout.NewStore(rdb)
	var sent atomic.Int64
	r := &genReader{n: 1 << 30, onLine: func() {
		if sent.Add(1) == 3000 {
			srv.Stop(t)
		}
	}}
	ctx, cancel := context.WithTimeout(bg, 20*time.Second)
	defer cancel()
	rep, err := s.ImportFile(ctx, r, optout.ImportOptions{Lists: []optout.List{optout.OptOutList(optout.SMS)}, Batch: 500})
	if err == nil || rep == nil || rep.Complete {
		t.Fatal("import went on with Redis down")
	}
}

// genReader yields n distinct valid US numbers, one a line, without holding them.
type genReader struct {
	n, i   int
	buf    []byte
	onLine func()
}

func (g *genReader) Read(p []byte) (int, error) {
	for len(g.buf) < len(p) && g.i < g.n {
		// +1 212 NXX XXXX, NXX from 200: 8 million numbers per area code.
		area := []string{"212", "415", "312", "617"}[g.i/8_000_000%4]
		j := g.i % 8_000_000
		g.buf = append(g.buf, "+1"+area+strconv.Itoa(200+j/10000)+fmt.Sprintf("%04d", j%10000)+"\n"...)
		g.i++
		if g.onLine != nil {
			g.onLine()
		}
	}
	if len(g.buf) == 0 {
		return 0, io.EOF
	}
	n := copy(p, g.buf)
	g.buf = g.buf[n:]
	return n, nil
}

// TestImportMillion imports OPTOUT_IMPORT_N numbers (default 5000; set it
// to 1000000 for the full run) and reports the time and the peak Go heap.
// The heap must stay bounded: it does not grow with the count.
//
//	OPTOUT_IMPORT_N=1000000 go test ./optout -run TestImportMillion -v
func TestImportMillion(t *testing.T) {
	n := 5000
	if v := os.Getenv("OPTOUT_IMPORT_N"); v != "" {
		var err error
		if n, err = strconv.Atoi(v); err != nil || n < 1 {
			t.Fatalf("OPTOUT_IMPORT_N=%q: want a positive count", v)
		}
	}
	s, srv := newStore(t)
	phone.Parse("+14155550100", "") // load libphonenumber's metadata: not the import's memory
	runtime.GC()
	var base runtime.MemStats
	runtime.ReadMemStats(&base)
	var peak atomic.Uint64
	stop := make(chan struct{})
	done := make(chan struct{})
	go func() {
		defer close(done)
		var ms runtime.MemStats
		for {
			runtime.ReadMemStats(&ms)
			if ms.HeapInuse > peak.Load() {
				peak.Store(ms.HeapInuse)
			}
			select {
			case <-stop:
				return
			case <-time.After(20 * time.Millisecond):
			}
		}
	}()
	start := time.Now()
	rep, err := s.ImportFile(bg, &genReader{n: n}, optout.ImportOptions{Lists: []optout.List{optout.OptOutList(optout.SMS)}})
	took := time.Since(start)
	close(stop)
	<-done
	if err != nil {
		t.Fatal(err)
	}
	if rep.Valid != int64(n) || rep.Added["optout:sms"] != int64(n) || rep.Invalid != 0 {
		t.Fatalf("report %+v", rep)
	}
	if c, _ := s.Count(bg, optout.SMS); c != int64(n) {
		t.Fatalf("count %d, want %d", c, n)
	}
	// A check is one SISMEMBER whatever the size.
	const checks = 1000
	cstart := time.Now()
	for i := range checks {
		if out, err := s.OptedOut(bg, optout.SMS, fmt.Sprintf("+1212200%04d", i%min(n, 10000))); err != nil || !out {
			t.Fatalf("check %d: %v %v", i, out, err)
		}
	}
	perCheck := time.Since(cstart) / checks
	info, _ := srv.Client(t).InfoMap(bg, "memory").Result()
	t.Logf("redis used_memory after the import: %s", info["Memory"]["used_memory_human"])
	grew := int64(peak.Load()) - int64(base.HeapInuse)
	t.Logf("imported %d numbers in %v (%.0f/s); Go heap in use: %.1f MiB before, peak %.1f MiB (+%.1f MiB); one check %v",
		n, took.Round(time.Millisecond), float64(n)/took.Seconds(), float64(base.HeapInuse)/(1<<20),
		float64(peak.Load())/(1<<20), float64(grew)/(1<<20), perCheck)
	if grew > 32<<20 {
		t.Fatalf("the heap grew by %d MiB: the import is not streaming", grew>>20)
	}
}
