package twiliosim

import (
	"context"
	"fmt"
	"net/http"
	"net/http/httptest"
	"net/url"
	"runtime"
	"strings"
	"sync"
	"testing"
	"time"
)

func TestSign(t *testing.T) {
	t.Parallel()
	// The vector from twilio-go's client/request_validator_test.go.
	const (
		u    = "https://mycompany.com/myapp.php?foo=1&bar=2"
		want = "vOEb5UThFn24KEfnOFLQY2AE5FY="
	)
	params := map[string]string{
		"Digits": "1234", "CallSid": "CA1234567890ABCDE", "To": "+18005551212", "Caller": "+14158675309",
		"From": "+14158675309", "ReasonConferenceEnded": "test", "Reason": "Participant",
	}
	form := url.Values{}
	for k, v := range params {
		form.Set(k, v)
	}
	if got := twilioSignature("12345", u, params); got != want {
		t.Fatalf("test helper gives %q, want %q", got, want)
	}
	if got := Sign("12345", u, form); got != want {
		t.Fatalf("Sign = %q, want %q", got, want)
	}
	if got := Sign("12346", u, form); got == want {
		t.Fatal("Sign ignores the token")
	}
}

func TestParseLatency(t *testing.T) {
	t.Parallel()
	tests := []struct {
		in      string
		want    Latency
		wantErr bool
	}{
		{"0", Latency{}, false},
		{"", Latency{}, false},
		{"100ms", Latency{100 * time.Millisecond, 100 * time.Millisecond}, false},
		{"50ms-150ms", Latency{50 * time.Millisecond, 150 * time.Millisecond}, false},
		{" 1s - 2s ", Latency{time.Second, 2 * time.Second}, false},
		{"150ms-50ms", Latency{}, true},
		{"-5ms", Latency{}, true},
		{"fast", Latency{}, true},
		{"10ms-", Latency{}, true},
	}
	for _, tt := range tests {
		t.Run(tt.in, func(t *testing.T) {
			t.Parallel()
			got, err := ParseLatency(tt.in)
			if (err != nil) != tt.wantErr || got != tt.want {
				t.Fatalf("ParseLatency(%q) = %v, %v; want %v, error %v", tt.in, got, err, tt.want, tt.wantErr)
			}
			if err == nil {
				back, err := ParseLatency(got.String())
				if err != nil || back != got {
					t.Errorf("round trip of %v via %q: %v %v", got, got.String(), back, err)
				}
			}
		})
	}
}

func TestConfigValidate(t *testing.T) {
	t.Parallel()
	tests := []struct {
		name  string
		cfg   Config
		field string // "" = valid
	}{
		{"zero", Config{}, ""},
		{"bad sid", Config{AccountSID: "AC123"}, "AccountSID"},
		{"error rate", Config{ErrorRate: 2}, "ErrorRate"},
		{"drop rate", Config{DropRate: -1}, "DropRate"},
		{"max concurrent", Config{MaxConcurrent: -1}, "MaxConcurrent"},
		{"inbound", Config{InboundURL: "nope"}, "InboundURL"},
		{"ring", Config{CallRing: -time.Second}, "CallRing"},
		{"latency", Config{Latency: Latency{Min: 2, Max: 1}}, "Latency"},
	}
	for _, tt := range tests {
		t.Run(tt.name, func(t *testing.T) {
			t.Parallel()
			err := tt.cfg.Validate()
			if tt.field == "" {
				if err != nil {
					t.Fatal(err)
				}
				return
			}
			if err == nil || !strings.HasPrefix(err.Error(), tt.field) {
				t.Fatalf("Validate() = %v, want an error naming %s", err, tt.field)
			}
		})
	}
}

func TestErrorRate(t *testing.T) {
	t.Parallel()
	s := newSim(t, Config{ErrorRate: 1})
	var sawJSON, sawHTML bool
	for range 4 {
		r := s.post(t, s.base()+"/Messages.json", msgForm("+14155551234", "x"))
		if r.status != http.StatusServiceUnavailable {
			t.Fatalf("status %d, want 503", r.status)
		}
		if strings.HasPrefix(r.header.Get("Content-Type"), "text/html") {
			sawHTML = true
			if !strings.Contains(string(r.body), "503 Service Unavailable") {
				t.Errorf("HTML body %s", r.body)
			}
		} else {
			sawJSON = true
			wantError(t, r, http.StatusServiceUnavailable, 20503)
		}
	}
	if !sawJSON || !sawHTML {
		t.Errorf("JSON %v HTML %v, want both", sawJSON, sawHTML)
	}
	if n := len(s.Messages()); n != 0 {
		t.Errorf("%d messages created by 503s", n)
	}
	if err := s.UpdateKnobs(func(k *Knobs) { k.ErrorRate = 0 }); err != nil {
		t.Fatal(err)
	}
	s.sendMessage(t, msgForm("+14155551234", "works again"))
}

func TestMaxConcurrent(t *testing.T) {
	t.Parallel()
	s := newSim(t, Config{MaxConcurrent: 1, Latency: Latency{300 * time.Millisecond, 300 * time.Millisecond}})
	const n = 4
	results := make([]response, n)
	var wg sync.WaitGroup
	for i := range n {
		wg.Add(1)
		go func() {
			defer wg.Done()
			results[i] = s.get(t, s.base()+"/Messages.json", nil)
		}()
	}
	wg.Wait()
	var ok, limited int
	for _, r := range results {
		switch r.status {
		case http.StatusOK:
			ok++
		case http.StatusTooManyRequests:
			limited++
			e := wantError(t, r, http.StatusTooManyRequests, 20429)
			if e.Message != "Too Many Requests" || r.header.Get("Retry-After") != "1" {
				t.Errorf("429 message %q Retry-After %q", e.Message, r.header.Get("Retry-After"))
			}
			if r.header.Get("Twilio-Concurrent-Requests") < "2" {
				t.Errorf("Twilio-Concurrent-Requests %q on a 429", r.header.Get("Twilio-Concurrent-Requests"))
			}
		default:
			t.Errorf("status %d: %s", r.status, r.body)
		}
	}
	if ok < 1 || limited < 1 {
		t.Errorf("%d ok, %d limited; want some of each", ok, limited)
	}
}

func TestLatency(t *testing.T) {
	t.Parallel()
	s := newSim(t, Config{Latency: Latency{40 * time.Millisecond, 60 * time.Millisecond}})
	start := time.Now()
	s.get(t, s.base()+".json", nil)
	if d := time.Since(start); d < 40*time.Millisecond {
		t.Errorf("answered after %v, want at least 40ms", d)
	}

	// A client that gives up frees its slot at once.
	if err := s.UpdateKnobs(func(k *Knobs) { k.Latency = Latency{10 * time.Second, 10 * time.Second} }); err != nil {
		t.Fatal(err)
	}
	ctx, cancel := context.WithTimeout(context.Background(), 30*time.Millisecond)
	defer cancel()
	req, _ := http.NewRequestWithContext(ctx, http.MethodGet, s.URL+s.base()+".json", nil)
	req.SetBasicAuth(s.AccountSID(), s.AuthToken())
	if resp, err := http.DefaultClient.Do(req); err == nil {
		resp.Body.Close()
		t.Fatal("request answered despite a 10s latency")
	}
	eventually(t, 2*time.Second, "in-flight count back to 0", func() bool { return s.InFlight() == 0 })
}

func TestDrop(t *testing.T) {
	t.Parallel()
	s := newSim(t, Config{DropRate: 1})
	client := &http.Client{Transport: &http.Transport{DisableKeepAlives: true}}
	for _, tt := range []struct {
		path string
		form url.Values
	}{
		{"/Messages.json", msgForm("+14155551234", "dropped")},
		{"/Calls.json", callForm("+14155551234")},
	} {
		req, _ := http.NewRequest(http.MethodPost, s.URL+s.base()+tt.path, strings.NewReader(tt.form.Encode()))
		req.Header.Set("Content-Type", "application/x-www-form-urlencoded")
		req.SetBasicAuth(s.AccountSID(), s.AuthToken())
		resp, err := client.Do(req)
		if err == nil {
			resp.Body.Close()
			t.Fatalf("%s: got %d, want a dropped connection", tt.path, resp.StatusCode)
		}
	}
	r := s.do(t, http.MethodGet, "/sim/messages", nil, "", "")
	if ms := decode[[]Message](t, r); len(ms) != 1 || ms[0].Body != "dropped" {
		t.Errorf("/sim/messages after a drop: %s", r.body)
	}
	if len(s.Calls()) != 1 {
		t.Errorf("%d calls after a drop, want 1", len(s.Calls()))
	}
	// Reads are never dropped.
	if r := s.get(t, s.base()+"/Messages.json", nil); r.status != http.StatusOK {
		t.Errorf("list with DropRate 1: %d", r.status)
	}
}

func TestEviction(t *testing.T) {
	t.Parallel()
	cfg := testConfig()
	cfg.MaxRecords = 3
	s := newSim(t, cfg)
	var sids []string
	for i := range 5 {
		sids = append(sids, *s.sendMessage(t, msgForm("+14155551234", fmt.Sprint(i))).Sid)
	}
	ms := s.Messages()
	if len(ms) != 3 || ms[0].Sid != sids[2] || ms[2].Sid != sids[4] {
		t.Fatalf("kept %d messages, want the newest 3", len(ms))
	}
	wantError(t, s.get(t, s.base()+"/Messages/"+sids[0]+".json", nil), http.StatusNotFound, 20404)
}

// TestClose checks that Close ends every goroutine the server started.
// Not parallel: it counts goroutines.
func TestClose(t *testing.T) {
	h := newHook(t)
	http.DefaultTransport.(*http.Transport).CloseIdleConnections()
	before := runtime.NumGoroutine()

	cfg := testConfig()
	cfg.DeliveryDelay = time.Hour // leave events pending
	s := New(cfg)
	ts := httptest.NewServer(s)
	client := &http.Client{Transport: &http.Transport{}}
	for i := range 5 {
		form := msgForm("+14155551234", fmt.Sprint(i))
		form.Set("StatusCallback", h.srv.URL)
		req, _ := http.NewRequest(http.MethodPost, ts.URL+"/2010-04-01/Accounts/"+s.AccountSID()+"/Messages.json", strings.NewReader(form.Encode()))
		req.Header.Set("Content-Type", "application/x-www-form-urlencoded")
		req.SetBasicAuth(s.AccountSID(), s.AuthToken())
		resp, err := client.Do(req)
		if err != nil {
			t.Fatal(err)
		}
		resp.Body.Close()
	}
	if s.sched.pending() != 5 {
		t.Errorf("%d pending events, want 5", s.sched.pending())
	}
	client.CloseIdleConnections()
	ts.Close()
	s.Close()
	s.Close() // twice is fine

	select {
	case <-s.sched.done:
	default:
		t.Error("scheduler still running after Close")
	}
	eventually(t, 2*time.Second, fmt.Sprintf("goroutines back to %d", before), func() bool {
		return runtime.NumGoroutine() <= before
	})
}

// TestLoad hammers one server from many goroutines; run it with -race.
func TestLoad(t *testing.T) {
	t.Parallel()
	cfg := testConfig()
	cfg.MaxRecords = 500
	s := newSim(t, cfg)
	h := newHook(t)
	const workers, each = 40, 15
	var wg sync.WaitGroup
	var mu sync.Mutex
	var failures []string
	fail := func(format string, args ...any) {
		mu.Lock()
		failures = append(failures, fmt.Sprintf(format, args...))
		mu.Unlock()
	}
	for w := range workers {
		wg.Add(1)
		go func() {
			defer wg.Done()
			for i := range each {
				to := fmt.Sprintf("+1415%07d", w*100+i)
				form := msgForm(to, "load")
				form.Set("StatusCallback", h.srv.URL)
				r := s.post(t, s.base()+"/Messages.json", form)
				if r.status != http.StatusCreated {
					fail("create: %d %s", r.status, r.body)
					continue
				}
				m := decode[tgMessage](t, r)
				if r := s.get(t, s.base()+"/Messages/"+*m.Sid+".json", nil); r.status != http.StatusOK && r.status != http.StatusNotFound {
					fail("fetch: %d", r.status)
				}
				switch i % 3 {
				case 0:
					if r := s.get(t, s.base()+"/Messages.json", url.Values{"To": {to}, "PageSize": {"5"}}); r.status != http.StatusOK {
						fail("list: %d", r.status)
					}
				case 1:
					if r := s.post(t, s.base()+"/Calls.json", callForm(to)); r.status != http.StatusCreated {
						fail("call: %d", r.status)
					}
				case 2:
					if r := s.do(t, http.MethodGet, "/sim/messages", nil, "", ""); r.status != http.StatusOK {
						fail("sim: %d", r.status)
					}
				}
			}
		}()
	}
	wg.Wait()
	for _, f := range failures {
		t.Error(f)
	}
	if n := len(s.Messages()); n != cfg.MaxRecords {
		t.Errorf("%d messages kept, want %d", n, cfg.MaxRecords)
	}
}

func FuzzCreateMessage(f *testing.F) {
	for _, seed := range []string{
		"To=%2B14155551234&From=%2B15005550006&Body=hi",
		"To=+14155551234&From=+15005550006&Body=hi",
		"To=%2B15005550001&Body=",
		"MessagingServiceSid=MG0123456789abcdef0123456789abcdef&To=%2B14155551234&Body=x&ValidityPeriod=99999999999999999999",
		"To=%zz",
		"Body=" + strings.Repeat("%F0%9F%98%80", 1700),
		"To=%2B1&MediaUrl=http://&StatusCallback=%00",
		"",
	} {
		f.Add(seed, "application/x-www-form-urlencoded")
	}
	f.Add("--x\r\nContent-Disposition: form-data; name=\"To\"\r\n\r\n+14155551234\r\n--x--\r\n", "multipart/form-data; boundary=x")
	s := New(Config{DeliveryDelay: time.Hour, CallRing: time.Hour, MaxRecords: 50})
	f.Cleanup(s.Close)
	path := "/2010-04-01/Accounts/" + s.AccountSID() + "/Messages.json"
	f.Fuzz(func(t *testing.T, body, contentType string) {
		for _, p := range []string{path, strings.Replace(path, "Messages", "Calls", 1)} {
			req := httptest.NewRequest(http.MethodPost, p, strings.NewReader(body))
			req.Header.Set("Content-Type", contentType)
			req.SetBasicAuth(s.AccountSID(), s.AuthToken())
			rec := httptest.NewRecorder()
			s.ServeHTTP(rec, req)
			if rec.Code >= 500 {
				t.Fatalf("%s %q (%s): %d %s", p, body, contentType, rec.Code, rec.Body)
			}
		}
	})
}
