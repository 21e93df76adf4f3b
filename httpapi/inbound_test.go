package httpapi_test

import (
	"context"
	"encoding/json"
	"io"
	"net/http"
	"net/http/httptest"
	"net/url"
	"strings"
	"testing"

	"github.com/redis/go-redis/v9"

	"github.com/sbagenthub/twilio-worker/httpapi"
	"github.com/sbagenthub/twilio-worker/internal/redistest"
	"github.com/sbagenthub/twilio-worker/optout"
	"github.com/sbagenthub/twilio-worker/twiliosim"
)

const token = "0123456789abcdef0123456789abcdef"

var bg = context.Background()

type env struct {
	url    string
	rdb    *redis.Client
	store  *optout.Store
	public string
}

// newEnv serves the worker's routes with PUBLIC_URL set to the test server
// (or to nothing when public is false).
func newEnv(t *testing.T, public bool, mod ...func(*httpapi.Server)) *env {
	t.Helper()
	rdb := redistest.Start(t).Client(t)
	e := &env{rdb: rdb, store: optout.NewStore(rdb)}
	s := &httpapi.Server{Redis: rdb, OptOuts: e.store, AuthToken: token}
	for _, m := range mod {
		m(s)
	}
	hs := httptest.NewUnstartedServer(nil)
	e.url = "http://" + hs.Listener.Addr().String()
	if public {
		s.PublicURL, e.public = e.url, e.url
	}
	hs.Config.Handler = s.Handler()
	hs.Start()
	t.Cleanup(hs.Close)
	return e
}

type answer struct {
	status int
	body   string
}

func (e *env) inbound(t *testing.T, form url.Values, sig string) answer {
	t.Helper()
	req, _ := http.NewRequest(http.MethodPost, e.url+"/twilio/inbound", strings.NewReader(form.Encode()))
	req.Header.Set("Content-Type", "application/x-www-form-urlencoded")
	if sig != "" {
		req.Header.Set("X-Twilio-Signature", sig)
	}
	resp, err := http.DefaultClient.Do(req)
	if err != nil {
		t.Fatal(err)
	}
	defer resp.Body.Close()
	b, _ := io.ReadAll(resp.Body)
	return answer{resp.StatusCode, string(b)}
}

func (e *env) signed(t *testing.T, form url.Values) answer {
	t.Helper()
	return e.inbound(t, form, twiliosim.Sign(token, e.public+"/twilio/inbound", form))
}

func msg(from, body string, extra ...string) url.Values {
	v := url.Values{"From": {from}, "To": {"+15005550006"}, "Body": {body}, "MessageSid": {"SM123"}, "AccountSid": {"AC1"}}
	for i := 0; i+1 < len(extra); i += 2 {
		v.Set(extra[i], extra[i+1])
	}
	return v
}

func TestInboundKeywords(t *testing.T) {
	t.Parallel()
	e := newEnv(t, true, func(s *httpapi.Server) { s.HelpText = "Acme: help at acme.example <3" })
	type state struct{ sms, voice, consent bool }
	tests := []struct {
		name   string
		form   url.Values
		before state
		want   state
		reply  string
	}{
		{"STOP", msg("+14155550001", "STOP"), state{consent: true}, state{sms: true}, "<Response/>"},
		{"stop trimmed, any case", msg("+14155550002", "  sToP \n"), state{}, state{sms: true}, "<Response/>"},
		{"unsubscribe", msg("+14155550003", "unsubscribe"), state{}, state{sms: true}, "<Response/>"},
		{"cancel end quit revoke optout", msg("+14155550004", "Revoke"), state{}, state{sms: true}, "<Response/>"},
		{"STOPALL stops calls too", msg("+14155550005", "stopall"), state{}, state{sms: true, voice: true}, "<Response/>"},
		{"not the whole body", msg("+14155550006", "please stop"), state{}, state{}, "<Response/>"},
		{"START", msg("+14155550007", "start"), state{sms: true, voice: true}, state{voice: true}, "<Response/>"},
		{"UNSTOP", msg("+14155550008", "UNSTOP"), state{sms: true}, state{}, "<Response/>"},
		{"YES", msg("+14155550009", "yes"), state{sms: true}, state{}, "<Response/>"},
		{"HELP", msg("+14155550010", "help"), state{}, state{}, "<Response><Message>Acme: help at acme.example &lt;3</Message></Response>"},
		{"INFO", msg("+14155550011", "Info"), state{}, state{}, "<Message>Acme"},
		{"Advanced Opt-Out custom keyword", msg("+14155550012", "arret", "OptOutType", "STOP"), state{}, state{sms: true}, "<Response/>"},
		{"Advanced Opt-Out START", msg("+14155550013", "reprendre", "OptOutType", "START"), state{sms: true}, state{}, "<Response/>"},
		{"Advanced Opt-Out HELP", msg("+14155550014", "aide", "OptOutType", "HELP"), state{}, state{}, "<Message>Acme"},
	}
	for _, tt := range tests {
		t.Run(tt.name, func(t *testing.T) {
			from := tt.form.Get("From")
			set := func(s state) {
				if s.sms {
					e.store.Add(bg, optout.SMS, from, optout.SourceCLI)
				}
				if s.voice {
					e.store.Add(bg, optout.Voice, from, optout.SourceCLI)
				}
				if s.consent {
					e.store.AddConsent(bg, optout.SMS, from, optout.SourceCLI)
				}
			}
			set(tt.before)
			a := e.signed(t, tt.form)
			if a.status != 200 || !strings.Contains(a.body, tt.reply) {
				t.Fatalf("answer %d %q, want 200 with %q", a.status, a.body, tt.reply)
			}
			st, err := e.store.State(bg, from)
			if err != nil {
				t.Fatal(err)
			}
			got := state{st.OptedOut["sms"], st.OptedOut["voice"], st.Consent["sms"]}
			if got != tt.want {
				t.Fatalf("state %+v, want %+v", got, tt.want)
			}
		})
	}
	// Every message is in tw:inbound.
	n, err := e.rdb.XLen(bg, httpapi.InboundKey).Result()
	if err != nil || n != int64(len(tests)) {
		t.Fatalf("tw:inbound holds %d (%v), want %d", n, err, len(tests))
	}
	hist, _ := e.store.History(bg, "+14155550001")
	if len(hist) < 2 || hist[0].Source != optout.SourceKeyword {
		t.Fatalf("history %+v: the keyword is the source", hist)
	}
}

func TestInboundRefusesBadSignatures(t *testing.T) {
	t.Parallel()
	e := newEnv(t, true)
	form := msg("+14155550020", "STOP")
	tests := map[string]string{
		"missing":         "",
		"forged":          "bm90IGEgc2lnbmF0dXJl",
		"other token":     twiliosim.Sign("ffffffffffffffffffffffffffffffff", e.public+"/twilio/inbound", form),
		"other url":       twiliosim.Sign(token, "https://evil.example/twilio/inbound", form),
		"other body":      twiliosim.Sign(token, e.public+"/twilio/inbound", msg("+14155550020", "hello")),
		"signed for help": twiliosim.Sign(token, e.public+"/twilio/inbound", msg("+14155550020", "HELP")),
	}
	for name, sig := range tests {
		t.Run(name, func(t *testing.T) {
			if a := e.inbound(t, form, sig); a.status != http.StatusForbidden {
				t.Fatalf("answer %d %q, want 403", a.status, a.body)
			}
		})
	}
	if out, _ := e.store.OptedOut(bg, optout.SMS, "+14155550020"); out {
		t.Fatal("a forged STOP changed the list")
	}
	if n, _ := e.rdb.XLen(bg, httpapi.InboundKey).Result(); n != 0 {
		t.Fatalf("%d forged messages recorded", n)
	}
}

func TestInboundWithoutPublicURLIsForbidden(t *testing.T) {
	t.Parallel()
	e := newEnv(t, false)
	form := msg("+14155550021", "STOP")
	if a := e.inbound(t, form, twiliosim.Sign(token, e.url+"/twilio/inbound", form)); a.status != http.StatusForbidden {
		t.Fatalf("answer %d, want 403 without PUBLIC_URL", a.status)
	}
	if out, _ := e.store.OptedOut(bg, optout.SMS, "+14155550021"); out {
		t.Fatal("opted out without a verifiable signature")
	}
}

func TestOptOutsAPI(t *testing.T) {
	t.Parallel()
	e := newEnv(t, false, func(s *httpapi.Server) { s.Rules.DefaultRegion = "US" })
	do := func(method, path string) (int, map[string]any) {
		t.Helper()
		req, _ := http.NewRequest(method, e.url+path, nil)
		resp, err := http.DefaultClient.Do(req)
		if err != nil {
			t.Fatal(err)
		}
		defer resp.Body.Close()
		var out map[string]any
		if err := json.NewDecoder(resp.Body).Decode(&out); err != nil {
			t.Fatalf("%s %s: not JSON: %v", method, path, err)
		}
		return resp.StatusCode, out
	}
	code, out := do("PUT", "/v1/optouts/+14155550030?channel=all")
	if code != 200 || out["optedOut"].(map[string]any)["voice"] != true || len(out["changed"].([]any)) != 2 {
		t.Fatalf("PUT: %d %v", code, out)
	}
	code, out = do("DELETE", "/v1/optouts/(415)%20555-0030") // national form, DEFAULT_REGION US
	if code != 200 || out["optedOut"].(map[string]any)["sms"] != false || out["optedOut"].(map[string]any)["voice"] != true {
		t.Fatalf("DELETE: %d %v", code, out)
	}
	code, out = do("PUT", "/v1/consents/%2B14155550030")
	if code != 200 || out["consent"].(map[string]any)["sms"] != true {
		t.Fatalf("PUT consent: %d %v", code, out)
	}
	code, out = do("GET", "/v1/optouts/+14155550030")
	if code != 200 || out["number"] != "+14155550030" || len(out["history"].([]any)) != 4 {
		t.Fatalf("GET: %d %v", code, out)
	}
	for path, want := range map[string]string{
		"/v1/optouts/12345":                    `"field":"number"`,
		"/v1/optouts/+1415CALLNOW":             `"field":"number"`,
		"/v1/optouts/+14155550030?channel=fax": `"field":"channel"`,
	} {
		code, out := do("PUT", path)
		b, _ := json.Marshal(out)
		if (code != 422 && code != 400) || !strings.Contains(string(b), want) || !strings.Contains(string(b), `"code"`) {
			t.Fatalf("PUT %s: %d %s", path, code, b)
		}
	}
	if c, _ := e.store.Count(bg, optout.SMS); c != 0 {
		t.Fatalf("%d opted out after refused input", c)
	}
}
