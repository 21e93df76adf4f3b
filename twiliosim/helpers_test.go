package twiliosim

import (
	"crypto/hmac"
	"crypto/sha1"
	"encoding/base64"
	"encoding/json"
	"io"
	"net/http"
	"net/http/httptest"
	"net/url"
	"sort"
	"strings"
	"sync"
	"testing"
	"time"
)

// The types below mirror twilio-go v1.31.0's rest/api/v2010 models field by
// field (types and JSON names), so decoding into them fails exactly where
// twilio-go would. The tests may not import twilio-go itself.

type tgMessage struct {
	Body                *string                 `json:"body,omitempty"`
	NumSegments         *string                 `json:"num_segments,omitempty"`
	Direction           *string                 `json:"direction,omitempty"`
	From                *string                 `json:"from,omitempty"`
	To                  *string                 `json:"to,omitempty"`
	DateUpdated         *string                 `json:"date_updated,omitempty"`
	Price               *string                 `json:"price,omitempty"`
	ErrorMessage        *string                 `json:"error_message,omitempty"`
	Uri                 *string                 `json:"uri,omitempty"`
	AccountSid          *string                 `json:"account_sid,omitempty"`
	NumMedia            *string                 `json:"num_media,omitempty"`
	Status              *string                 `json:"status,omitempty"`
	MessagingServiceSid *string                 `json:"messaging_service_sid,omitempty"`
	Sid                 *string                 `json:"sid,omitempty"`
	DateSent            *string                 `json:"date_sent,omitempty"`
	DateCreated         *string                 `json:"date_created,omitempty"`
	ErrorCode           *int                    `json:"error_code,omitempty"`
	PriceUnit           *string                 `json:"price_unit,omitempty"`
	ApiVersion          *string                 `json:"api_version,omitempty"`
	SubresourceUris     *map[string]interface{} `json:"subresource_uris,omitempty"`
}

type tgCall struct {
	Sid             *string                 `json:"sid,omitempty"`
	DateCreated     *string                 `json:"date_created,omitempty"`
	DateUpdated     *string                 `json:"date_updated,omitempty"`
	ParentCallSid   *string                 `json:"parent_call_sid,omitempty"`
	AccountSid      *string                 `json:"account_sid,omitempty"`
	To              *string                 `json:"to,omitempty"`
	ToFormatted     *string                 `json:"to_formatted,omitempty"`
	From            *string                 `json:"from,omitempty"`
	FromFormatted   *string                 `json:"from_formatted,omitempty"`
	PhoneNumberSid  *string                 `json:"phone_number_sid,omitempty"`
	Status          *string                 `json:"status,omitempty"`
	StartTime       *string                 `json:"start_time,omitempty"`
	EndTime         *string                 `json:"end_time,omitempty"`
	Duration        *string                 `json:"duration,omitempty"`
	Price           *string                 `json:"price,omitempty"`
	PriceUnit       *string                 `json:"price_unit,omitempty"`
	Direction       *string                 `json:"direction,omitempty"`
	AnsweredBy      *string                 `json:"answered_by,omitempty"`
	ApiVersion      *string                 `json:"api_version,omitempty"`
	ForwardedFrom   *string                 `json:"forwarded_from,omitempty"`
	GroupSid        *string                 `json:"group_sid,omitempty"`
	CallerName      *string                 `json:"caller_name,omitempty"`
	QueueTime       *string                 `json:"queue_time,omitempty"`
	TrunkSid        *string                 `json:"trunk_sid,omitempty"`
	Uri             *string                 `json:"uri,omitempty"`
	SubresourceUris *map[string]interface{} `json:"subresource_uris,omitempty"`
}

type tgAccount struct {
	AuthToken       *string                 `json:"auth_token,omitempty"`
	DateCreated     *string                 `json:"date_created,omitempty"`
	DateUpdated     *string                 `json:"date_updated,omitempty"`
	FriendlyName    *string                 `json:"friendly_name,omitempty"`
	OwnerAccountSid *string                 `json:"owner_account_sid,omitempty"`
	Sid             *string                 `json:"sid,omitempty"`
	Status          *string                 `json:"status,omitempty"`
	SubresourceUris *map[string]interface{} `json:"subresource_uris,omitempty"`
	Type            *string                 `json:"type,omitempty"`
	Uri             *string                 `json:"uri,omitempty"`
}

type tgListMessages struct {
	End             int         `json:"end,omitempty"`
	FirstPageUri    string      `json:"first_page_uri,omitempty"`
	NextPageUri     *string     `json:"next_page_uri,omitempty"`
	Page            int         `json:"page,omitempty"`
	PageSize        int         `json:"page_size,omitempty"`
	PreviousPageUri *string     `json:"previous_page_uri,omitempty"`
	Start           int         `json:"start,omitempty"`
	Uri             string      `json:"uri,omitempty"`
	Messages        []tgMessage `json:"messages,omitempty"`
}

type tgListCalls struct {
	End             int      `json:"end,omitempty"`
	FirstPageUri    string   `json:"first_page_uri,omitempty"`
	NextPageUri     *string  `json:"next_page_uri,omitempty"`
	Page            int      `json:"page,omitempty"`
	PageSize        int      `json:"page_size,omitempty"`
	PreviousPageUri *string  `json:"previous_page_uri,omitempty"`
	Start           int      `json:"start,omitempty"`
	Uri             string   `json:"uri,omitempty"`
	Calls           []tgCall `json:"calls,omitempty"`
}

// tgError mirrors twilio-go's client.TwilioRestError.
type tgError struct {
	Code     int                    `json:"code"`
	Details  map[string]interface{} `json:"details"`
	Message  string                 `json:"message"`
	MoreInfo string                 `json:"more_info"`
	Status   int                    `json:"status"`
}

// sim is a simulator behind a real HTTP server.
type sim struct {
	*Server
	URL  string
	http *httptest.Server
}

// testConfig is quick enough for tests to watch whole lifecycles.
func testConfig() Config {
	return Config{
		DeliveryDelay: 5 * time.Millisecond,
		CallRing:      10 * time.Millisecond,
		CallDuration:  20 * time.Millisecond,
	}
}

func newSim(t testing.TB, cfg Config) *sim {
	t.Helper()
	s := New(cfg)
	ts := httptest.NewServer(s)
	t.Cleanup(func() {
		ts.Close()
		s.Close()
	})
	return &sim{Server: s, URL: ts.URL, http: ts}
}

func (s *sim) base() string { return "/2010-04-01/Accounts/" + s.AccountSID() }

type response struct {
	status int
	header http.Header
	body   []byte
}

// do sends a request authenticated as the account (user "" skips auth).
func (s *sim) do(t testing.TB, method, path string, form url.Values, user, pass string) response {
	t.Helper()
	var body io.Reader
	if form != nil && method == http.MethodPost {
		body = strings.NewReader(form.Encode())
	} else if form != nil {
		path += "?" + form.Encode()
	}
	req, err := http.NewRequest(method, s.URL+path, body)
	if err != nil {
		t.Fatal(err)
	}
	if body != nil {
		req.Header.Set("Content-Type", "application/x-www-form-urlencoded")
	}
	if user != "" {
		req.SetBasicAuth(user, pass)
	}
	resp, err := http.DefaultClient.Do(req)
	if err != nil {
		t.Fatalf("%s %s: %v", method, path, err)
	}
	defer resp.Body.Close()
	b, err := io.ReadAll(resp.Body)
	if err != nil {
		t.Fatal(err)
	}
	return response{status: resp.StatusCode, header: resp.Header, body: b}
}

func (s *sim) get(t testing.TB, path string, query url.Values) response {
	t.Helper()
	return s.do(t, http.MethodGet, path, query, s.AccountSID(), s.AuthToken())
}

func (s *sim) post(t testing.TB, path string, form url.Values) response {
	t.Helper()
	return s.do(t, http.MethodPost, path, form, s.AccountSID(), s.AuthToken())
}

func decode[T any](t testing.TB, r response) T {
	t.Helper()
	var v T
	if err := json.Unmarshal(r.body, &v); err != nil {
		t.Fatalf("decode %T from %d %s: %v", v, r.status, r.body, err)
	}
	return v
}

// sendMessage creates a message and returns it, failing the test unless 201.
func (s *sim) sendMessage(t testing.TB, form url.Values) tgMessage {
	t.Helper()
	r := s.post(t, s.base()+"/Messages.json", form)
	if r.status != http.StatusCreated {
		t.Fatalf("create message %v: %d %s", form, r.status, r.body)
	}
	return decode[tgMessage](t, r)
}

func (s *sim) placeCall(t testing.TB, form url.Values) tgCall {
	t.Helper()
	r := s.post(t, s.base()+"/Calls.json", form)
	if r.status != http.StatusCreated {
		t.Fatalf("create call %v: %d %s", form, r.status, r.body)
	}
	return decode[tgCall](t, r)
}

// wantError checks a Twilio error answer.
func wantError(t testing.TB, r response, status, code int) tgError {
	t.Helper()
	if r.status != status {
		t.Fatalf("status %d, want %d: %s", r.status, status, r.body)
	}
	e := decode[tgError](t, r)
	if e.Code != code || e.Status != status {
		t.Fatalf("error %+v, want code %d status %d", e, code, status)
	}
	if want := "https://www.twilio.com/docs/errors/" + itoa(code); e.MoreInfo != want {
		t.Fatalf("more_info %q, want %q", e.MoreInfo, want)
	}
	if e.Message == "" {
		t.Fatalf("error %d without message", code)
	}
	return e
}

func itoa(n int) string { b, _ := json.Marshal(n); return string(b) }

// eventually polls cond until it holds or the deadline passes.
//
// within is a backstop, never a bound on speed: it is raised to at least
// 30 s so that a slow, busy machine only takes longer.
func eventually(t testing.TB, within time.Duration, what string, cond func() bool) {
	t.Helper()
	within = max(within, 30*time.Second)
	deadline := time.Now().Add(within)
	for !cond() {
		if time.Now().After(deadline) {
			t.Fatalf("timed out after %v waiting for %s", within, what)
		}
		time.Sleep(2 * time.Millisecond)
	}
}

// hook records the webhooks a test receiver got.
type hook struct {
	mu       sync.Mutex
	requests []hookRequest
	status   int
	reply    string
	srv      *httptest.Server
}

type hookRequest struct {
	method    string
	url       string // full URL as the sender addressed it
	form      url.Values
	signature string
}

func newHook(t testing.TB) *hook {
	t.Helper()
	h := &hook{status: http.StatusOK}
	h.srv = httptest.NewServer(http.HandlerFunc(func(w http.ResponseWriter, r *http.Request) {
		r.ParseForm()
		form := r.PostForm
		if r.Method == http.MethodGet {
			form = r.URL.Query()
		}
		h.mu.Lock()
		h.requests = append(h.requests, hookRequest{
			method:    r.Method,
			url:       "http://" + r.Host + r.URL.RequestURI(),
			form:      form,
			signature: r.Header.Get("X-Twilio-Signature"),
		})
		status, reply := h.status, h.reply
		h.mu.Unlock()
		w.WriteHeader(status)
		io.WriteString(w, reply)
	}))
	t.Cleanup(h.srv.Close)
	return h
}

func (h *hook) got() []hookRequest {
	h.mu.Lock()
	defer h.mu.Unlock()
	return append([]hookRequest(nil), h.requests...)
}

// twilioSignature is an independent implementation of Twilio's webhook
// signature, written from Twilio's documentation, to check Sign against.
func twilioSignature(token, fullURL string, params map[string]string) string {
	keys := make([]string, 0, len(params))
	for k := range params {
		keys = append(keys, k)
	}
	sort.Strings(keys)
	data := fullURL
	for _, k := range keys {
		data += k + params[k]
	}
	mac := hmac.New(sha1.New, []byte(token))
	mac.Write([]byte(data))
	return base64.StdEncoding.EncodeToString(mac.Sum(nil))
}

// checkSignature verifies a received POST webhook's X-Twilio-Signature.
func checkSignature(t testing.TB, token string, r hookRequest) {
	t.Helper()
	params := map[string]string{}
	if r.method == http.MethodPost {
		for k, v := range r.form {
			params[k] = v[0]
		}
	}
	if want := twilioSignature(token, r.url, params); r.signature != want {
		t.Fatalf("X-Twilio-Signature %q, want %q for %s %v", r.signature, want, r.url, r.form)
	}
}
