package httpapi

import (
	"net/http"
	"net/http/httptest"
	"strings"
	"sync"
	"sync/atomic"
	"testing"
	"time"

	"github.com/sbagenthub/twilio-worker/twilioapi"
	"github.com/sbagenthub/twilio-worker/twiliosim"
)

// simTwilio is the simulator over real HTTP, counting account fetches (the
// credentials check), and a client for it with the given auth token.
func simTwilio(t *testing.T, authToken string) (*twilioapi.Client, *atomic.Int64) {
	t.Helper()
	sim := twiliosim.New(twiliosim.Config{})
	var fetches atomic.Int64
	hs := httptest.NewServer(http.HandlerFunc(func(w http.ResponseWriter, r *http.Request) {
		if strings.HasSuffix(r.URL.Path, "/Accounts/"+sim.AccountSID()+".json") {
			fetches.Add(1)
		}
		sim.ServeHTTP(w, r)
	}))
	t.Cleanup(func() { hs.Close(); sim.Close() })
	if authToken == "" {
		authToken = sim.AuthToken()
	}
	tw, err := twilioapi.New(twilioapi.Config{AccountSID: sim.AccountSID(), AuthToken: twilioapi.Secret(authToken),
		PhoneNumber: "+15005550006", BaseURL: hs.URL, Timeout: 5 * time.Second})
	if err != nil {
		t.Fatal(err)
	}
	return tw, &fetches
}

func TestReadyz(t *testing.T) {
	t.Parallel()
	tw, fetches := simTwilio(t, "")
	s := newAPIServer(t, func(s *Server) { s.Twilio = tw })
	for i := range 3 {
		r := do(t, "GET", s.url+"/readyz", nil, nil)
		if r.status != 200 || !strings.Contains(string(r.body), `"checks":{"redis":"ok","twilio":"ok"}`) {
			t.Fatalf("probe %d: %d %s", i, r.status, r.body)
		}
	}
	if n := fetches.Load(); n != 1 {
		t.Fatalf("three probes fetched the account %d times; the verdict must be cached", n)
	}
	if r := do(t, "GET", s.url+"/healthz", nil, nil); r.status != 200 {
		t.Fatalf("healthz %d", r.status)
	}
}

func TestReadyzRefusedCredentials(t *testing.T) {
	t.Parallel()
	const wrong = "ffffffffffffffffffffffffffffffff"
	tw, _ := simTwilio(t, wrong)
	s := newAPIServer(t, func(s *Server) { s.Twilio = tw })
	r := do(t, "GET", s.url+"/readyz", nil, nil)
	body := string(r.body)
	if r.status != 503 || !strings.Contains(body, `"redis":"ok"`) || !strings.Contains(body, `"twilio":"credentials refused`) {
		t.Fatalf("readyz with a wrong token: %d %s", r.status, body)
	}
	if strings.Contains(body, wrong) {
		t.Fatal("readyz shows the auth token")
	}
}

// TestCredentialsCache: an accepted check counts for CredentialsCacheOK, a
// failed one for CredentialsCacheFail; a fake clock, no sleeping.
func TestCredentialsCache(t *testing.T) {
	t.Parallel()
	tw, fetches := simTwilio(t, "")
	var mu sync.Mutex
	now := time.Date(2025, 1, 15, 10, 30, 0, 0, time.UTC)
	rd := &readiness{now: func() time.Time { mu.Lock(); defer mu.Unlock(); return now }}
	advance := func(d time.Duration) { mu.Lock(); now = now.Add(d); mu.Unlock() }
	check := func(want int64) {
		t.Helper()
		if err := rd.twilio(t.Context(), tw); err != nil {
			t.Fatal(err)
		}
		if n := fetches.Load(); n != want {
			t.Fatalf("%d fetches, want %d", n, want)
		}
	}
	check(1)
	advance(CredentialsCacheOK - time.Second)
	check(1)
	advance(2 * time.Second)
	check(2)

	bad, badFetches := simTwilio(t, "ffffffffffffffffffffffffffffffff")
	rdBad := &readiness{now: rd.now}
	for range 2 {
		if err := rdBad.twilio(t.Context(), bad); err == nil {
			t.Fatal("wrong credentials accepted")
		}
	}
	advance(CredentialsCacheFail + time.Second)
	_ = rdBad.twilio(t.Context(), bad)
	if n := badFetches.Load(); n != 2 {
		t.Fatalf("failed check: %d fetches, want 2 (one cached, one after %s)", n, CredentialsCacheFail)
	}
}
