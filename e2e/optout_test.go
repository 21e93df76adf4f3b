package e2e

import (
	"bufio"
	"context"
	"encoding/json"
	"fmt"
	"io"
	"net/http"
	"net/url"
	"os"
	"os/exec"
	"path/filepath"
	"strconv"
	"strings"
	"syscall"
	"testing"
	"time"

	"github.com/hibiken/asynq"

	"github.com/sbagenthub/twilio-worker/commlog"
	"github.com/sbagenthub/twilio-worker/tasks"
	"github.com/sbagenthub/twilio-worker/twiliosim"
)

const simToken = "00000000000000000000000000000000"

// newPublicStack is newStack with PUBLIC_URL set to the worker's own address
// (when public) and the simulator's inbound webhooks pointed at it.
func newPublicStack(t *testing.T, public bool, workerEnv ...string) *stack {
	t.Helper()
	return newPublicStackOn(t, onNode, public, workerEnv...)
}

// newPublicStackOn is newPublicStack on a Redis of the given kind.
func newPublicStackOn(t *testing.T, kind string, public bool, workerEnv ...string) *stack {
	t.Helper()
	s := &stack{redis: startRedis(t, kind)}
	simAddr := freeAddr(t)
	s.http = freeAddr(t)
	start(t, nil, bin.twiliosim, "--addr", simAddr, "--delivery-delay", "10ms",
		"--inbound-url", "http://"+s.http+"/twilio/inbound")
	s.simURL = "http://" + simAddr
	waitHTTP(t, s.simURL+"/sim/messages")
	s.env = []string{"REDIS_URL=" + s.redis.URL()}
	env := []string{
		"REDIS_URL=" + s.redis.URL(), "HTTP_ADDR=" + s.http,
		"TWILIO_API_URL=" + s.simURL, "TWILIO_ACCOUNT_SID=AC00000000000000000000000000000000",
		"TWILIO_AUTH_TOKEN=" + simToken, "TWILIO_PHONE_NUMBER=+15005550006",
	}
	if public {
		env = append(env, "PUBLIC_URL=http://"+s.http)
	}
	s.worker = start(t, append(env, workerEnv...), bin.worker)
	waitHTTP(t, "http://"+s.http+"/healthz")
	return s
}

// simInbound has the simulator deliver an inbound SMS and returns the
// worker's HTTP status and body as the simulator saw them.
func simInbound(t *testing.T, s *stack, from, body string) (int, string) {
	t.Helper()
	b, _ := json.Marshal(map[string]string{"from": from, "to": "+15005550006", "body": body})
	resp, err := http.Post(s.simURL+"/sim/inbound", "application/json", strings.NewReader(string(b)))
	if err != nil {
		t.Fatal(err)
	}
	defer resp.Body.Close()
	var out struct {
		Status int
		Body   string
	}
	if err := json.NewDecoder(resp.Body).Decode(&out); err != nil || resp.StatusCode != 200 {
		t.Fatalf("sim inbound: %d %v", resp.StatusCode, err)
	}
	return out.Status, out.Body
}

func apiDo(t *testing.T, s *stack, method, path string) int {
	t.Helper()
	req, _ := http.NewRequest(method, "http://"+s.http+path, nil)
	resp, err := http.DefaultClient.Do(req)
	if err != nil {
		t.Fatal(err)
	}
	resp.Body.Close()
	return resp.StatusCode
}

func enqueueSMS(t *testing.T, s *stack, args ...string) string {
	t.Helper()
	r := runEnqueue(t, s.env, append([]string{"sms"}, args...)...)
	if r.code != 0 {
		t.Fatalf("enqueue sms %v: exit %d %s", args, r.code, r.stderr)
	}
	var out struct{ TaskID string }
	r.json(t, &out)
	return out.TaskID
}

func messagesTo(t *testing.T, s *stack, to string) []simMessage {
	t.Helper()
	var out []simMessage
	for _, m := range simMessages(t, s.simURL) {
		if m.To == to {
			out = append(out, m)
		}
	}
	return out
}

func checkOptedOut(t *testing.T, s *stack, number string) bool {
	t.Helper()
	r := runEnqueue(t, s.env, "optout", "check", number)
	if r.code != 0 {
		t.Fatalf("optout check: exit %d %s", r.code, r.stderr)
	}
	var st struct{ OptedOut map[string]bool }
	r.json(t, &st)
	return st.OptedOut["sms"]
}

// Messages queued before their recipients opt out (by keyword through the
// simulator, by the CLI, by the API) are not sent; after START (or the
// matching remove) they are sent again. The queue is paused while the
// opt-outs happen, so nothing races.
func TestOptOutAfterQueueingIsHonoured(t *testing.T) {
	t.Parallel()
	onEachRedis(t, func(t *testing.T, kind string) {
		s := newPublicStackOn(t, kind, true)
		insp := asynq.NewInspectorFromRedisClient(s.redis.Client(t))
		const (
			byKeyword = "+14155550161"
			byCLI     = "+14155550162"
			byAPI     = "+14155550163"
			control   = "+14155550164"
		)
		if err := insp.PauseQueue(tasks.QueueDefault); err != nil {
			t.Fatal(err)
		}
		ids := map[string]string{}
		for _, n := range []string{byKeyword, byCLI, byAPI, control} {
			ids[n] = enqueueSMS(t, s, "--to", n, "--body", "Your order shipped")
		}
		if code, body := simInbound(t, s, byKeyword, " Stop "); code != 200 || !strings.Contains(body, "<Response/>") {
			t.Fatalf("STOP answered %d %q", code, body)
		}
		if r := runEnqueue(t, s.env, "optout", "add", byCLI); r.code != 0 {
			t.Fatalf("optout add: exit %d %s", r.code, r.stderr)
		}
		if code := apiDo(t, s, "PUT", "/v1/optouts/"+byAPI); code != 200 {
			t.Fatalf("PUT /v1/optouts: %d", code)
		}
		if err := insp.UnpauseQueue(tasks.QueueDefault); err != nil {
			t.Fatal(err)
		}
		for n, id := range ids {
			st := waitStatus(t, s.env, id)
			var res tasks.SMSResult
			_ = json.Unmarshal(st.Result, &res)
			wantSkipped := n != control
			if st.State != "completed" || (res.Status == "skipped") != wantSkipped {
				t.Fatalf("%s: status %+v, result %+v; skipped want %v", n, st, res, wantSkipped)
			}
			if wantSkipped && res.Reason != "recipient opted out" {
				t.Fatalf("%s: reason %q", n, res.Reason)
			}
		}
		if msgs := simMessages(t, s.simURL); len(msgs) != 1 || msgs[0].To != control {
			t.Fatalf("simulator got %+v; only the control number may be texted", msgs)
		}

		// Back in: START, remove, DELETE.
		if code, _ := simInbound(t, s, byKeyword, "START"); code != 200 {
			t.Fatalf("START answered %d", code)
		}
		if r := runEnqueue(t, s.env, "optout", "remove", byCLI); r.code != 0 {
			t.Fatalf("optout remove: exit %d %s", r.code, r.stderr)
		}
		if code := apiDo(t, s, "DELETE", "/v1/optouts/"+byAPI); code != 200 {
			t.Fatalf("DELETE /v1/optouts: %d", code)
		}
		for _, n := range []string{byKeyword, byCLI, byAPI} {
			if st := waitStatus(t, s.env, enqueueSMS(t, s, "--to", n, "--body", "Welcome back")); st.State != "completed" || strings.Contains(string(st.Result), "skipped") {
				t.Fatalf("%s after opting back in: %+v", n, st)
			}
			if len(messagesTo(t, s, n)) != 1 {
				t.Fatalf("%s: not texted after opting back in", n)
			}
		}
		// The keyword's history names its source.
		r := runEnqueue(t, s.env, "optout", "history", byKeyword)
		var h struct {
			History []struct{ Action, Source string }
		}
		r.json(t, &h)
		if len(h.History) < 2 || h.History[0].Action != "opt-in" || h.History[0].Source != "keyword" || h.History[1].Action != "opt-out" {
			t.Fatalf("history %+v", h.History)
		}
		// HELP gets the help text back, in TwiML.
		if code, body := simInbound(t, s, byKeyword, "help"); code != 200 || !strings.Contains(body, "<Message>") || !strings.Contains(body, "STOP") {
			t.Fatalf("HELP answered %d %q", code, body)
		}
		if strings.Contains(s.worker.output(), "4155550161") {
			t.Fatal("the worker logged a full phone number")
		}
	})
}

func TestInboundForgedOrUnsigned(t *testing.T) {
	t.Parallel()
	s := newPublicStack(t, true)
	const n = "+14155550171"
	form := url.Values{"From": {n}, "To": {"+15005550006"}, "Body": {"STOP"}, "MessageSid": {"SM1"}}
	for name, sig := range map[string]string{
		"missing":      "",
		"forged":       "Zm9yZ2VkIHNpZ25hdHVyZQ==",
		"wrong token":  twiliosim.Sign("ffffffffffffffffffffffffffffffff", "http://"+s.http+"/twilio/inbound", form),
		"wrong public": twiliosim.Sign(simToken, "https://example.com/twilio/inbound", form),
	} {
		req, _ := http.NewRequest("POST", "http://"+s.http+"/twilio/inbound", strings.NewReader(form.Encode()))
		req.Header.Set("Content-Type", "application/x-www-form-urlencoded")
		if sig != "" {
			req.Header.Set("X-Twilio-Signature", sig)
		}
		resp, err := http.DefaultClient.Do(req)
		if err != nil {
			t.Fatal(err)
		}
		resp.Body.Close()
		if resp.StatusCode != http.StatusForbidden {
			t.Fatalf("%s signature: %d, want 403", name, resp.StatusCode)
		}
	}
	if checkOptedOut(t, s, n) {
		t.Fatal("a forged STOP opted the number out")
	}
	// The real thing works.
	req, _ := http.NewRequest("POST", "http://"+s.http+"/twilio/inbound", strings.NewReader(form.Encode()))
	req.Header.Set("Content-Type", "application/x-www-form-urlencoded")
	req.Header.Set("X-Twilio-Signature", twiliosim.Sign(simToken, "http://"+s.http+"/twilio/inbound", form))
	resp, err := http.DefaultClient.Do(req)
	if err != nil {
		t.Fatal(err)
	}
	resp.Body.Close()
	if resp.StatusCode != 200 || !checkOptedOut(t, s, n) {
		t.Fatalf("a signed STOP: %d, opted out %v", resp.StatusCode, checkOptedOut(t, s, n))
	}

	// Without PUBLIC_URL nothing can be verified: 403 even for Twilio's own signature.
	s2 := newPublicStack(t, false)
	if code, _ := simInbound(t, s2, n, "STOP"); code != http.StatusForbidden {
		t.Fatalf("without PUBLIC_URL: %d, want 403", code)
	}
	if checkOptedOut(t, s2, n) {
		t.Fatal("opted out without PUBLIC_URL")
	}
}

// A marketing message whose recipient is inside quiet hours waits for the
// window's end (some seconds from now, in real time), reaches the simulator
// only after it, with the opt-out footer and without using a retry; a
// transactional one to the same zone is not deferred. The outcome is read
// from the communications log once both tasks are done, so a slow start or
// a slow poll changes nothing.
func TestMarketingWaitsForQuietHoursToEnd(t *testing.T) {
	t.Parallel()
	la, err := time.LoadLocation("America/Los_Angeles") // +1 415
	if err != nil {
		t.Fatal(err)
	}
	now := time.Now().In(la)
	// Room for the stack to start under the race detector on a machine
	// much busier than this one; checked below.
	end := now.Add(15 * time.Second).Truncate(time.Second)
	window := now.Add(-time.Hour).Format("15:04:05") + "-" + end.Format("15:04:05")
	s := newPublicStack(t, false, "QUIET_HOURS="+window)

	const mkt, txn = "+14155550181", "+14155550182"
	mid := enqueueSMS(t, s, "--to", mkt, "--body", "Spring sale: 20% off", "--class", "marketing")
	tid := enqueueSMS(t, s, "--to", txn, "--body", "Your order shipped")
	within := int(time.Until(end).Seconds()) + 30
	tst := waitStatusWithin(t, s.env, tid, within)
	st := waitStatusWithin(t, s.env, mid, within)
	if tst.State != "completed" || len(messagesTo(t, s, txn)) != 1 {
		t.Fatalf("transactional: %+v, %d messages", tst, len(messagesTo(t, s, txn)))
	}
	history := func(id string) []commlog.Entry {
		var out []commlog.Entry
		if _, err := commlog.New(s.redis.Client(t), commlog.Config{}).Read(bg, commlog.Filter{TaskID: id}, func(e commlog.Entry) error {
			out = append(out, e)
			return nil
		}); err != nil {
			t.Fatal(err)
		}
		return out
	}
	for _, e := range history(tid) {
		if e.Event == commlog.Deferred {
			t.Fatalf("transactional message deferred: %+v", e)
		}
	}

	// The marketing message: queued inside the window, deferred to its end
	// (without a retry), sent only after it.
	var queued, deferred, sending []commlog.Entry
	for _, e := range history(mid) {
		switch e.Event {
		case commlog.Queued:
			queued = append(queued, e)
		case commlog.Deferred:
			deferred = append(deferred, e)
		case commlog.Sending:
			sending = append(sending, e)
		}
	}
	if len(queued) != 1 || !queued[0].At.Before(end) {
		t.Fatalf("marketing queued %+v; the window ended at %s before the stack was up: nothing to show", queued, end)
	}
	if len(deferred) != 1 || !strings.Contains(deferred[0].Reason, "quiet hours") {
		t.Fatalf("marketing deferrals %+v; want one, for quiet hours (window %s)", deferred, window)
	}
	if until, err := time.Parse(time.RFC3339Nano, deferred[0].Until); err != nil || until.Sub(end).Abs() >= time.Second {
		t.Fatalf("deferred until %q; want the window's end %s", deferred[0].Until, end.UTC())
	}
	if st.State != "completed" || st.Retried != 0 {
		t.Fatalf("after the window: %+v; want completed without a retry", st)
	}
	msgs := messagesTo(t, s, mkt)
	if len(sending) != 1 || len(msgs) != 1 {
		t.Fatalf("%d requests logged and %d messages at the simulator; want one", len(sending), len(msgs))
	}
	if sending[0].At.Before(end) || msgs[0].CreatedAt.Before(end) {
		t.Fatalf("request started %s, received %s: inside quiet hours (until %s)", sending[0].At, msgs[0].CreatedAt, end)
	}
	if msgs[0].Body != "Spring sale: 20% off\n"+tasks.OptOutFooter {
		t.Fatalf("body %q: want the opt-out footer", msgs[0].Body)
	}
	resp, err := http.Get("http://" + s.http + "/metrics")
	if err != nil {
		t.Fatal(err)
	}
	b, _ := io.ReadAll(resp.Body)
	resp.Body.Close()
	if !strings.Contains(string(b), `twilioworker_sms_skipped_total{reason="quiet_hours"} 1`) {
		t.Fatal("sms_skipped_total{reason=\"quiet_hours\"} not counted")
	}
}

// `enqueue optout import` streams a file into the set. E2E_IMPORT_N sets the
// count (default 20000; 1000000 for the full run); the test reports the
// time and the peak RSS of the enqueue process, which must not grow with
// the count.
//
//	E2E_IMPORT_N=1000000 go test ./e2e -run TestOptOutImport -v
func TestOptOutImport(t *testing.T) {
	t.Parallel()
	n := 20000
	if v := os.Getenv("E2E_IMPORT_N"); v != "" {
		var err error
		if n, err = strconv.Atoi(v); err != nil || n < 1 {
			t.Fatalf("E2E_IMPORT_N=%q", v)
		}
	}
	s := newPublicStack(t, false)
	path := filepath.Join(t.TempDir(), "optouts.csv")
	f, err := os.Create(path)
	if err != nil {
		t.Fatal(err)
	}
	w := bufio.NewWriter(f)
	fmt.Fprintln(w, "phone,name")
	for i := range n {
		area := []string{"212", "415", "312", "617"}[i/8_000_000%4]
		j := i % 8_000_000
		fmt.Fprintf(w, "+1 %s %03d %04d,someone\n", area, 200+j/10000, j%10000)
	}
	fmt.Fprintln(w, "not a number")
	if err := w.Flush(); err != nil {
		t.Fatal(err)
	}
	f.Close()

	ctx, cancel := context.WithTimeout(context.Background(), 5*time.Minute)
	defer cancel()
	cmd := exec.CommandContext(ctx, bin.enqueue, "optout", "import", "--channel", "all", path)
	cmd.Env = append(baseEnv(), s.env...)
	var stderr strings.Builder
	cmd.Stderr = &stderr
	startAt := time.Now()
	out, err := cmd.Output()
	took := time.Since(startAt)
	if err != nil {
		t.Fatalf("import: %v: %s", err, stderr.String())
	}
	maxRSS := cmd.ProcessState.SysUsage().(*syscall.Rusage).Maxrss // KiB on Linux
	var rep struct {
		Lines, Valid, Invalid int64
		InvalidLines          []int64
		Added                 map[string]int64
		Complete              bool
	}
	if err := json.Unmarshal(out, &rep); err != nil {
		t.Fatalf("output %q: %v", out, err)
	}
	if rep.Valid != int64(n) || rep.Invalid != 2 || rep.Added["optout:sms"] != int64(n) || rep.Added["optout:voice"] != int64(n) || !rep.Complete {
		t.Fatalf("report %+v", rep)
	}
	if len(rep.InvalidLines) != 2 || rep.InvalidLines[0] != 1 || rep.InvalidLines[1] != int64(n+2) {
		t.Fatalf("invalid lines %v", rep.InvalidLines)
	}
	t.Logf("enqueue optout import of %d numbers into sms and voice: %v (%.0f numbers/s), peak RSS %.1f MiB",
		n, took.Round(time.Millisecond), float64(n)/took.Seconds(), float64(maxRSS)/1024)
	if maxRSS > 200*1024 {
		t.Fatalf("peak RSS %d MiB: the import is not streaming", maxRSS/1024)
	}
	// A check is one SISMEMBER, however many numbers there are.
	if !checkOptedOut(t, s, "+12122000001") {
		t.Fatal("an imported number is not opted out")
	}
	r := runEnqueue(t, s.env, "optout", "history", "+12122000001")
	if !strings.Contains(r.stdout, `"source":"import"`) {
		t.Fatalf("history %s", r.stdout)
	}
}

func TestWorkerRefusesBadComplianceSettings(t *testing.T) {
	t.Parallel()
	for _, tt := range []struct{ env, name string }{
		{"MARKETING_REQUIRES_CONSENT=maybe", "MARKETING_REQUIRES_CONSENT"},
		{"HELP_TEXT=" + strings.Repeat("h", 1700), "HELP_TEXT"},
		{"QUIET_HOURS=21:00-25:00", "QUIET_HOURS"},
	} {
		t.Run(tt.name, func(t *testing.T) {
			p := start(t, []string{tt.env}, bin.worker)
			select {
			case <-p.done:
			case <-time.After(20 * time.Second):
				t.Fatal("worker started with a malformed setting")
			}
			if code := p.cmd.ProcessState.ExitCode(); code != 2 || !strings.Contains(p.output(), tt.name) {
				t.Fatalf("exit %d, output %q; want 2 naming %s", code, p.output(), tt.name)
			}
		})
	}
}
