package httpapi

import (
	"context"
	"fmt"
	"os"
	"os/exec"
	"path/filepath"
	"slices"
	"strconv"
	"testing"
	"time"

	"github.com/chromedp/chromedp"
	"github.com/hibiken/asynq"

	"github.com/sbagenthub/twilio-worker/tasks"
)

// EnvRequireChromium makes a missing chromium a test failure (CI sets it).
const EnvRequireChromium = "REQUIRE_CHROMIUM"

// chromium returns the browser to drive, or skips (fails under
// REQUIRE_CHROMIUM=1) when there is none.
func chromium(t *testing.T) string {
	t.Helper()
	for _, name := range []string{"chromium", "chromium-browser"} {
		if p, err := exec.LookPath(name); err == nil {
			return p
		}
	}
	msg := "no chromium on PATH: the dashboard's browser test needs it (Debian: apt-get install chromium)"
	if os.Getenv(EnvRequireChromium) == "1" {
		t.Fatal(msg + "; REQUIRE_CHROMIUM=1")
	}
	t.Skip(msg + "; skipped (REQUIRE_CHROMIUM=1 makes this a failure)")
	return ""
}

// artifactsDir is $ARTIFACTS_DIR, else ./artifacts at the module root.
func artifactsDir(t *testing.T) string {
	t.Helper()
	dir := os.Getenv("ARTIFACTS_DIR")
	if dir == "" {
		dir = filepath.Join("..", "artifacts")
	}
	if err := os.MkdirAll(dir, 0o755); err != nil {
		t.Fatal(err)
	}
	return dir
}

// TestDashboardInBrowser opens /monitoring/ in headless Chromium and reads
// the queue table: critical, default and bulk with the tasks queued here.
func TestDashboardInBrowser(t *testing.T) {
	t.Parallel()
	exe := chromium(t)
	s := newAPIServer(t, nil)
	want := map[string]int{"critical": 3, "default": 2, "bulk": 1}
	for q, n := range want {
		for i := range n {
			task, err := tasks.NewSendSMSTask(tasks.SMSPayload{To: "+14155551234", Body: fmt.Sprintf("%s %d", q, i)}, tasks.Rules{}, asynq.Queue(q))
			if err != nil {
				t.Fatal(err)
			}
			if _, err := s.Client.Enqueue(task); err != nil {
				t.Fatal(err)
			}
		}
	}

	opts := []chromedp.ExecAllocatorOption{
		chromedp.ExecPath(exe),
		chromedp.UserDataDir(t.TempDir()),
		chromedp.WindowSize(1280, 1000),
		chromedp.Headless, chromedp.NoSandbox, chromedp.DisableGPU, chromedp.NoFirstRun, chromedp.NoDefaultBrowserCheck,
		chromedp.Flag("disable-quic", true),
		chromedp.Flag("disable-background-networking", true),
		chromedp.Flag("disable-component-update", true),
		chromedp.Flag("disable-sync", true),
		chromedp.Flag("disable-dev-shm-usage", true),
	}
	ctx, cancel := context.WithTimeout(t.Context(), 90*time.Second)
	defer cancel()
	ctx, cancelAlloc := chromedp.NewExecAllocator(ctx, opts...)
	defer cancelAlloc()
	ctx, cancelBrowser := chromedp.NewContext(ctx, chromedp.WithLogf(t.Logf))
	defer cancelBrowser()

	// The dashboard's queue table, one row per queue, cells as text, once
	// the page has fetched the queues and shows all three.
	const readRows = `(() => {
		const rows = Array.from(document.querySelectorAll("table tbody tr"))
			.map(r => Array.from(r.querySelectorAll("td,th")).map(c => c.innerText.trim()));
		const names = rows.map(r => r[0]);
		return ["critical", "default", "bulk"].every(q => names.includes(q)) ? rows : null;
	})()`
	if err := chromedp.Do(ctx, chromedp.Navigate(s.url+"/monitoring/")); err != nil {
		t.Fatalf("browser: open the dashboard: %v", err)
	}
	rows, err := chromedp.Run(ctx, chromedp.Poll[[][]string](readRows, chromedp.WithPollingTimeout(60*time.Second)))
	if err != nil {
		body, _ := chromedp.Run(ctx, chromedp.Evaluate[string](`document.body.innerText`))
		t.Fatalf("browser: the queue table never showed critical, default and bulk: %v; page text: %.500q", err, body)
	}
	header, err := chromedp.Run(ctx, chromedp.Evaluate[[]string](`Array.from(document.querySelectorAll("table thead th")).map(c => c.innerText.trim())`))
	if err != nil {
		t.Fatalf("browser: read the table header: %v", err)
	}
	shot, err := chromedp.Run(ctx, chromedp.FullScreenshot(100)) // quality 100: PNG
	if err != nil {
		t.Fatalf("browser: screenshot: %v", err)
	}
	path := filepath.Join(artifactsDir(t), "dashboard.png")
	if err := os.WriteFile(path, shot, 0o644); err != nil {
		t.Fatal(err)
	}
	t.Logf("screenshot: %s (%d bytes); header %q, rows %q", path, len(shot), header, rows)

	// Each queue's row shows its size in the Size column.
	size := slices.Index(header, "Size")
	if size < 0 {
		t.Fatalf("no Size column in %q", header)
	}
	for q, n := range want {
		i := slices.IndexFunc(rows, func(r []string) bool { return len(r) > size && r[0] == q })
		if i < 0 {
			t.Fatalf("no row for queue %s in %q", q, rows)
		}
		if got := rows[i][size]; got != strconv.Itoa(n) {
			t.Fatalf("queue %s shows size %q, want %d (row %q)", q, got, n, rows[i])
		}
	}
}
