package twilioapi_test

import (
	"bytes"
	"context"
	"errors"
	"fmt"
	"log/slog"
	"net"
	"net/http/httptest"
	"os"
	"path/filepath"
	"strings"
	"sync"
	"testing"
	"time"

	"github.com/sbagenthub/twilio-worker/tasks"
	"github.com/sbagenthub/twilio-worker/twilioapi"
	"github.com/sbagenthub/twilio-worker/twiliosim"
)

var _ tasks.Messenger = (*twilioapi.Client)(nil)

const from = "+15005550006"

// newSim starts a simulator over real HTTP and a client pointed at it.
func newSim(t *testing.T, cfg twiliosim.Config, mod ...func(*twilioapi.Config)) (*twiliosim.Server, *twilioapi.Client) {
	t.Helper()
	if cfg.DeliveryDelay == 0 {
		cfg.DeliveryDelay = 5 * time.Millisecond
	}
	if cfg.CallRing == 0 {
		cfg.CallRing = 20 * time.Millisecond
	}
	if cfg.CallDuration == 0 {
		cfg.CallDuration = 1100 * time.Millisecond
	}
	sim := twiliosim.New(cfg)
	hs := httptest.NewServer(sim)
	t.Cleanup(func() { hs.Close(); sim.Close() })
	c := twilioapi.Config{
		AccountSID: sim.AccountSID(), AuthToken: twilioapi.Secret(sim.AuthToken()),
		PhoneNumber: from, BaseURL: hs.URL, Timeout: 5 * time.Second,
	}
	for _, m := range mod {
		m(&c)
	}
	client, err := twilioapi.New(c)
	if err != nil {
		t.Fatal(err)
	}
	return sim, client
}

func asTwilio(t *testing.T, err error) *twilioapi.Error {
	t.Helper()
	var te *twilioapi.Error
	if !errors.As(err, &te) {
		t.Fatalf("error %v (%T) is not a *twilioapi.Error", err, err)
	}
	return te
}

func TestSendSMSDecodesEveryField(t *testing.T) {
	t.Parallel()
	sim, c := newSim(t, twiliosim.Config{})
	msg, err := c.SendSMS(context.Background(), twilioapi.SendParams{To: "+14155551234", Body: "Your verification code is 123456", ValidityPeriod: 10 * time.Minute})
	if err != nil {
		t.Fatal(err)
	}
	if !strings.HasPrefix(msg.SID, "SM") || len(msg.SID) != 34 {
		t.Errorf("sid %q", msg.SID)
	}
	if msg.To != "+14155551234" || msg.From != from || msg.Status != "queued" || msg.NumSegments != 1 {
		t.Errorf("message %+v", msg)
	}
	if msg.DateCreated.IsZero() || time.Since(msg.DateCreated) > time.Minute {
		t.Errorf("date created %v", msg.DateCreated)
	}
	got := sim.Messages()
	if len(got) != 1 || got[0].Sid != msg.SID || got[0].Body != "Your verification code is 123456" {
		t.Fatalf("simulator has %+v", got)
	}
	if got[0].ValidityPeriod != 600 {
		t.Errorf("validity period %d, want 600", got[0].ValidityPeriod)
	}
	// Fetch follows the status to delivered.
	deadline := time.Now().Add(5 * time.Second)
	for {
		m, err := c.FetchMessage(context.Background(), msg.SID)
		if err != nil {
			t.Fatal(err)
		}
		if m.Status == "delivered" {
			if m.DateSent.IsZero() {
				t.Error("delivered message has no date sent")
			}
			break
		}
		if time.Now().After(deadline) {
			t.Fatalf("status still %q", m.Status)
		}
		time.Sleep(10 * time.Millisecond)
	}
}

func TestErrorClasses(t *testing.T) {
	t.Parallel()
	_, c := newSim(t, twiliosim.Config{})
	ctx := context.Background()
	sms := func(to, from, body string) error {
		_, err := c.SendSMS(ctx, twilioapi.SendParams{To: to, From: from, Body: body})
		return err
	}
	call := func(to string) error {
		_, err := c.CreateCall(ctx, twilioapi.CallParams{To: to, URL: "https://example.com/twiml"})
		return err
	}
	tests := []struct {
		name  string
		err   error
		code  int
		class twilioapi.Class
	}{
		{"invalid To", sms("+15005550001", "", "hi"), 21211, twilioapi.ClassBadRecipient},
		{"unroutable To", sms("+15005550002", "", "hi"), 21612, twilioapi.ClassBadRecipient},
		{"region not permitted", sms("+15005550003", "", "hi"), 21408, twilioapi.ClassConfig},
		{"unsubscribed", sms("+15005550004", "", "hi"), 21610, twilioapi.ClassOptedOut},
		{"not a mobile", sms("+15005550009", "", "hi"), 21614, twilioapi.ClassBadRecipient},
		{"invalid From", sms("+14155551234", "+15005550001", "hi"), 21212, twilioapi.ClassConfig},
		{"From not owned", sms("+14155551234", "+15005550007", "hi"), 21606, twilioapi.ClassConfig},
		{"queue full", sms("+14155551234", "+15005550008", "hi"), 21611, twilioapi.ClassRateLimited},
		{"empty body", sms("+14155551234", "", ""), 21602, twilioapi.ClassInvalid},
		{"2000-character body", sms("+14155551234", "", strings.Repeat("a", 2000)), 21617, twilioapi.ClassInvalid},
		{"malformed To", sms("4155", "", "hi"), 21211, twilioapi.ClassBadRecipient},
		{"call invalid To", call("+15005550001"), 21217, twilioapi.ClassBadRecipient},
		{"call unreachable", call("+15005550002"), 21214, twilioapi.ClassBadRecipient},
		{"call not authorized", call("+15005550003"), 21215, twilioapi.ClassBadRecipient},
		{"call not allowed", call("+15005550004"), 21216, twilioapi.ClassBadRecipient},
	}
	for _, tt := range tests {
		t.Run(tt.name, func(t *testing.T) {
			te := asTwilio(t, tt.err)
			if te.Code != tt.code || te.Class != tt.class {
				t.Fatalf("got code %d class %s, want %d %s (%v)", te.Code, te.Class, tt.code, tt.class, te)
			}
			if twilioapi.ClassOf(tt.err) != tt.class || twilioapi.CodeOf(tt.err) != tt.code {
				t.Fatal("ClassOf/CodeOf disagree with the error")
			}
			if te.Status < 400 || te.Status >= 500 {
				t.Fatalf("status %d", te.Status)
			}
			if strings.Contains(te.Error(), "5005550") {
				t.Fatalf("error shows a full number: %s", te.Error())
			}
		})
	}
}

func TestWrongCredentials(t *testing.T) {
	t.Parallel()
	_, c := newSim(t, twiliosim.Config{}, func(c *twilioapi.Config) { c.AuthToken = "ffffffffffffffffffffffffffffffff" })
	_, err := c.SendSMS(context.Background(), twilioapi.SendParams{To: "+14155551234", Body: "hi"})
	te := asTwilio(t, err)
	if te.Status != 401 || te.Code != 20003 || te.Class != twilioapi.ClassConfig {
		t.Fatalf("got %v", te)
	}
	if err := c.CheckCredentials(context.Background()); twilioapi.CodeOf(err) != 20003 {
		t.Fatalf("CheckCredentials = %v", err)
	}
	if strings.Contains(te.Error(), "ffffffff") {
		t.Fatal("error shows the token")
	}
}

func TestCheckCredentials(t *testing.T) {
	t.Parallel()
	_, c := newSim(t, twiliosim.Config{})
	if err := c.CheckCredentials(context.Background()); err != nil {
		t.Fatal(err)
	}
}

func TestAPIKeyAuth(t *testing.T) {
	t.Parallel()
	key, secret := "SK"+strings.Repeat("1", 32), "keysecret123"
	_, c := newSim(t, twiliosim.Config{APIKeys: map[string]string{key: secret}}, func(c *twilioapi.Config) {
		c.AuthToken, c.APIKey, c.APISecret = "", key, twilioapi.Secret(secret)
	})
	if _, err := c.SendSMS(context.Background(), twilioapi.SendParams{To: "+14155551234", Body: "hi"}); err != nil {
		t.Fatal(err)
	}
}

func TestRateLimitedWithRetryAfter(t *testing.T) {
	t.Parallel()
	sim, c := newSim(t, twiliosim.Config{MaxConcurrent: 1, Latency: twiliosim.Latency{Min: 300 * time.Millisecond, Max: 300 * time.Millisecond}})
	var wg sync.WaitGroup
	errs := make([]error, 4)
	for i := range errs {
		wg.Add(1)
		go func() {
			defer wg.Done()
			_, errs[i] = c.SendSMS(context.Background(), twilioapi.SendParams{To: fmt.Sprintf("+1415555%04d", i), Body: "hi"})
		}()
	}
	wg.Wait()
	limited := 0
	for _, err := range errs {
		if err == nil {
			continue
		}
		te := asTwilio(t, err)
		if te.Class != twilioapi.ClassRateLimited || te.Code != 20429 || te.Status != 429 {
			t.Fatalf("got %v", te)
		}
		if te.RetryAfter != time.Second {
			t.Fatalf("RetryAfter %v, want 1s (header lost?)", te.RetryAfter)
		}
		if te.ConcurrentRequests < 1 {
			t.Fatalf("Twilio-Concurrent-Requests not captured: %d", te.ConcurrentRequests)
		}
		limited++
	}
	if limited == 0 || limited == len(errs) {
		t.Fatalf("%d of %d limited; want some but not all", limited, len(errs))
	}
	if n := len(sim.Messages()); n != len(errs)-limited {
		t.Fatalf("simulator has %d messages, want %d", n, len(errs)-limited)
	}
}

func TestServiceUnavailableJSONAndHTML(t *testing.T) {
	t.Parallel()
	sim, c := newSim(t, twiliosim.Config{ErrorRate: 1})
	sawHTML := false
	for i := 0; i < 4; i++ {
		_, err := c.SendSMS(context.Background(), twilioapi.SendParams{To: "+14155551234", Body: "hi"})
		te := asTwilio(t, err)
		if te.Class != twilioapi.ClassTransient || te.Status != 503 {
			t.Fatalf("got %v", te)
		}
		if te.Code == 0 {
			sawHTML = true
			if !strings.Contains(te.Message, "503") {
				t.Fatalf("HTML body not summarised: %q", te.Message)
			}
		}
	}
	if !sawHTML {
		t.Fatal("never saw the HTML 503")
	}
	if n := len(sim.Messages()); n != 0 {
		t.Fatalf("503 created %d messages", n)
	}
}

func TestTimeoutAfterWriteIsAmbiguous(t *testing.T) {
	t.Parallel()
	sim, c := newSim(t, twiliosim.Config{Latency: twiliosim.Latency{Min: time.Second, Max: time.Second}},
		func(c *twilioapi.Config) { c.Timeout = 100 * time.Millisecond })
	_, err := c.SendSMS(context.Background(), twilioapi.SendParams{To: "+14155551234", Body: "hi"})
	if te := asTwilio(t, err); te.Class != twilioapi.ClassAmbiguous {
		t.Fatalf("send: got %v, want ambiguous", te)
	}
	_, err = c.FetchMessage(context.Background(), "SM"+strings.Repeat("0", 32))
	if te := asTwilio(t, err); te.Class != twilioapi.ClassTransient {
		t.Fatalf("fetch: got %v, want transient (a read is safe to repeat)", te)
	}
	_ = sim
}

func TestDropAfterCreateIsAmbiguous(t *testing.T) {
	t.Parallel()
	sim, c := newSim(t, twiliosim.Config{DropRate: 1})
	_, err := c.SendSMS(context.Background(), twilioapi.SendParams{To: "+14155551234", Body: "dropped"})
	if te := asTwilio(t, err); te.Class != twilioapi.ClassAmbiguous {
		t.Fatalf("got %v, want ambiguous", te)
	}
	if n := len(sim.Messages()); n != 1 {
		t.Fatalf("simulator has %d messages, want the 1 created before the drop", n)
	}
	// Reconciliation finds it by listing.
	if err := sim.UpdateKnobs(func(k *twiliosim.Knobs) { k.DropRate = 0 }); err != nil {
		t.Fatal(err)
	}
	list, err := c.ListMessages(context.Background(), twilioapi.ListParams{To: "+14155551234", From: from})
	if err != nil {
		t.Fatal(err)
	}
	if len(list) != 1 || list[0].Body != "dropped" {
		t.Fatalf("list = %+v", list)
	}
}

func TestConnectionRefusedIsTransient(t *testing.T) {
	t.Parallel()
	ln, err := net.Listen("tcp", "127.0.0.1:0")
	if err != nil {
		t.Fatal(err)
	}
	addr := ln.Addr().String()
	ln.Close()
	c, err := twilioapi.New(twilioapi.Config{AccountSID: twiliosim.AccountSIDDefault, AuthToken: twiliosim.AuthTokenDefault,
		PhoneNumber: from, BaseURL: "http://" + addr})
	if err != nil {
		t.Fatal(err)
	}
	_, err = c.SendSMS(context.Background(), twilioapi.SendParams{To: "+14155551234", Body: "hi"})
	if te := asTwilio(t, err); te.Class != twilioapi.ClassTransient {
		t.Fatalf("got %v, want transient", te)
	}
}

func TestContextCancel(t *testing.T) {
	t.Parallel()
	// The simulator answers only after 30 s: a client that ignores its
	// context gets that answer (no error); one that honours it gives up
	// with the context's error, however slow the machine.
	// (The client's own request timeout is longer still.)
	_, c := newSim(t, twiliosim.Config{Latency: twiliosim.Latency{Min: 30 * time.Second, Max: 30 * time.Second}},
		func(c *twilioapi.Config) { c.Timeout = time.Minute })
	ctx, cancel := context.WithTimeout(context.Background(), 50*time.Millisecond)
	defer cancel()
	start := time.Now()
	_, err := c.FetchCall(ctx, "CA"+strings.Repeat("0", 32))
	// A client that ignored its context would have the simulator's answer
	// (404 for this SID) instead of the context's deadline.
	if !errors.Is(err, context.DeadlineExceeded) {
		t.Fatalf("context not honoured: err=%v after %v", err, time.Since(start))
	}
	t.Logf("gave up after %v: %v", time.Since(start).Round(time.Millisecond), err)
}

func TestListMessagesPages(t *testing.T) {
	t.Parallel()
	_, c := newSim(t, twiliosim.Config{})
	ctx := context.Background()
	for i := 0; i < 7; i++ {
		if _, err := c.SendSMS(ctx, twilioapi.SendParams{To: "+14155550100", Body: fmt.Sprint("m", i)}); err != nil {
			t.Fatal(err)
		}
	}
	if _, err := c.SendSMS(ctx, twilioapi.SendParams{To: "+14155550199", Body: "other"}); err != nil {
		t.Fatal(err)
	}
	list, err := c.ListMessages(ctx, twilioapi.ListParams{To: "+14155550100", PageSize: 3})
	if err != nil {
		t.Fatal(err)
	}
	if len(list) != 7 {
		t.Fatalf("got %d messages over pages of 3, want 7", len(list))
	}
	if list[0].Body != "m6" {
		t.Fatalf("newest first: got %q first", list[0].Body)
	}
	limited, err := c.ListMessages(ctx, twilioapi.ListParams{To: "+14155550100", PageSize: 3, Limit: 4})
	if err != nil || len(limited) != 4 {
		t.Fatalf("limit 4: %d, %v", len(limited), err)
	}
}

func TestCallLifecycle(t *testing.T) {
	t.Parallel()
	sim, c := newSim(t, twiliosim.Config{})
	ctx := context.Background()
	tests := []struct{ to, final string }{
		{"+14155551234", "completed"},
		{"+15005551001", "busy"},
		{"+15005551002", "no-answer"},
		{"+15005551003", "failed"},
	}
	for _, tt := range tests {
		t.Run(tt.final, func(t *testing.T) {
			t.Parallel()
			call, err := c.CreateCall(ctx, twilioapi.CallParams{To: tt.to, Twiml: "<Response><Say>hi</Say></Response>"})
			if err != nil {
				t.Fatal(err)
			}
			if !strings.HasPrefix(call.SID, "CA") || call.Status != "queued" {
				t.Fatalf("call %+v", call)
			}
			deadline := time.Now().Add(10 * time.Second)
			for {
				got, err := c.FetchCall(ctx, call.SID)
				if err != nil {
					t.Fatal(err)
				}
				if twilioapi.Terminal(got.Status) {
					if got.Status != tt.final {
						t.Fatalf("ended %q, want %q", got.Status, tt.final)
					}
					if tt.final == "completed" && (got.Duration < 1 || got.EndTime.IsZero()) {
						t.Fatalf("completed call %+v", got)
					}
					break
				}
				if time.Now().After(deadline) {
					t.Fatalf("still %q", got.Status)
				}
				time.Sleep(20 * time.Millisecond)
			}
			if sc, ok := sim.Call(call.SID); !ok || sc.Fetches < 1 {
				t.Fatalf("simulator call %+v", sc)
			}
		})
	}
}

func TestSecretsNeverPrinted(t *testing.T) {
	t.Parallel()
	token := twilioapi.Secret("supersecrettoken1234")
	cfg := twilioapi.Config{AccountSID: twiliosim.AccountSIDDefault, AuthToken: token, APISecret: token}
	var buf bytes.Buffer
	slog.New(slog.NewJSONHandler(&buf, nil)).Info("cfg", "cfg", cfg, "token", token)
	for _, s := range []string{fmt.Sprint(cfg), fmt.Sprintf("%+v", cfg), fmt.Sprintf("%#v", cfg), buf.String()} {
		if strings.Contains(s, "supersecret") {
			t.Fatalf("secret printed: %s", s)
		}
	}
}

func TestConfigValidate(t *testing.T) {
	t.Parallel()
	ok := twilioapi.Config{AccountSID: twiliosim.AccountSIDDefault, AuthToken: twiliosim.AuthTokenDefault}
	tests := []struct {
		name string
		mod  func(*twilioapi.Config)
		want string
	}{
		{"ok", func(*twilioapi.Config) {}, ""},
		{"no sid", func(c *twilioapi.Config) { c.AccountSID = "" }, "TWILIO_ACCOUNT_SID is required"},
		{"bad sid", func(c *twilioapi.Config) { c.AccountSID = "XX12" }, "TWILIO_ACCOUNT_SID must be AC"},
		{"no token", func(c *twilioapi.Config) { c.AuthToken = "" }, "TWILIO_AUTH_TOKEN"},
		{"token with symbols", func(c *twilioapi.Config) { c.AuthToken = "abc$%def" }, "TWILIO_AUTH_TOKEN must be letters and digits"},
		{"bad key", func(c *twilioapi.Config) { c.APIKey = "SK1" }, "TWILIO_API_KEY"},
		{"bad url", func(c *twilioapi.Config) { c.BaseURL = "ftp://x" }, "TWILIO_API_URL"},
		{"bad service", func(c *twilioapi.Config) { c.MessagingServiceSID = "MG1" }, "TWILIO_MESSAGING_SERVICE_SID"},
	}
	for _, tt := range tests {
		t.Run(tt.name, func(t *testing.T) {
			c := ok
			tt.mod(&c)
			err := c.Validate()
			if tt.want == "" {
				if err != nil {
					t.Fatal(err)
				}
				return
			}
			if err == nil || !strings.Contains(err.Error(), tt.want) {
				t.Fatalf("Validate() = %v, want it to mention %q", err, tt.want)
			}
			if strings.Contains(err.Error(), "abc$%def") {
				t.Fatal("error shows the secret")
			}
		})
	}
}

func TestConfigFromHubFile(t *testing.T) {
	t.Parallel()
	path := filepath.Join(t.TempDir(), "hub.json")
	doc := `{"apiKeys":{"twilio_account_sid":"` + twiliosim.AccountSIDDefault + `","twilio_auth_token":"0123456789abcdef0123456789abcdef","twilio_phone_number":"+15005550006"}}`
	if err := os.WriteFile(path, []byte(doc), 0o600); err != nil {
		t.Fatal(err)
	}
	env := map[string]string{"TWILIO_CONFIG": path, "TWILIO_PHONE_NUMBER": "+14155550000"}
	cfg, err := twilioapi.ConfigFromEnv(func(k string) string { return env[k] })
	if err != nil {
		t.Fatal(err)
	}
	if cfg.AccountSID != twiliosim.AccountSIDDefault || cfg.AuthToken.Reveal() != "0123456789abcdef0123456789abcdef" {
		t.Fatalf("file not read: %+v", cfg)
	}
	if cfg.PhoneNumber != "+14155550000" {
		t.Fatalf("the variable must win over the file: %q", cfg.PhoneNumber)
	}
	if err := cfg.Validate(); err != nil {
		t.Fatal(err)
	}
	if err := os.WriteFile(path, []byte(`{"apiKeys":`), 0o600); err != nil {
		t.Fatal(err)
	}
	if _, err := twilioapi.ConfigFromEnv(func(k string) string { return env[k] }); err == nil || !strings.Contains(err.Error(), "TWILIO_CONFIG") {
		t.Fatalf("bad file: %v", err)
	}
}
