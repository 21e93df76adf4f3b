package twiliosim

import (
	"context"
	"crypto/rand"
	"crypto/sha256"
	"encoding/hex"
	"encoding/json"
	"errors"
	"io"
	"log/slog"
	mathrand "math/rand/v2"
	"net/http"
	"strconv"
	"strings"
	"sync"
	"sync/atomic"
	"time"
)

// APIVersion is the Twilio REST API version the simulator speaks.
const APIVersion = "2010-04-01"

// Server simulates Twilio's REST API. It is an http.Handler; create it with
// New and stop its goroutines with Close.
type Server struct {
	accountSID  string
	authToken   string
	apiKeys     map[string]string
	maxRecords  int
	defaultFrom string
	log         *slog.Logger
	created     time.Time
	mux         *http.ServeMux

	clockOffset atomic.Int64 // ns the simulator's clock is ahead of the wall clock (Advance)

	knobsMu  sync.Mutex // serialises UpdateKnobs
	knobs    atomic.Pointer[Knobs]
	inflight atomic.Int64
	errSeq   atomic.Uint64

	mu       sync.RWMutex
	messages ring[message]
	calls    ring[call]
	sentTo   map[string]int // messages created per designated number with a per-number script

	sched     *scheduler
	notify    *notifier
	closeOnce sync.Once
}

// New returns a running simulator configured by cfg (zero fields take their
// defaults; see Config). New does not validate cfg: call cfg.Validate first
// when it comes from a user. Out-of-range shares are clamped to [0, 1].
func New(cfg Config) *Server {
	cfg = cfg.WithDefaults()
	s := &Server{
		accountSID:  cfg.AccountSID,
		authToken:   cfg.AuthToken,
		apiKeys:     make(map[string]string, len(cfg.APIKeys)),
		maxRecords:  max(cfg.MaxRecords, 1),
		defaultFrom: cfg.DefaultFrom,
		log:         cfg.Logger,
		created:     time.Now().UTC(),
		sentTo:      make(map[string]int),
	}
	for k, v := range cfg.APIKeys {
		s.apiKeys[k] = v
	}
	s.messages.init()
	s.calls.init()
	k := cfg.knobs()
	k.clamp()
	s.knobs.Store(&k)
	s.sched = newScheduler()
	s.notify = newNotifier(cfg.AuthToken, cfg.Logger)
	s.routes()
	return s
}

func (k *Knobs) clamp() {
	k.ErrorRate = min(max(k.ErrorRate, 0), 1)
	k.DropRate = min(max(k.DropRate, 0), 1)
	k.MaxConcurrent = max(k.MaxConcurrent, 0)
	k.CallRing = max(k.CallRing, 0)
	k.CallDuration = max(k.CallDuration, 0)
	k.DeliveryDelay = max(k.DeliveryDelay, 0)
	if k.Latency.validate() != nil {
		k.Latency = Latency{}
	}
}

// Close stops the scheduler and the webhook workers. Messages and calls stop
// advancing; pending webhooks are dropped. It is safe to call more than once.
// Close does not wait for HTTP requests being served.
func (s *Server) Close() {
	s.closeOnce.Do(func() {
		s.sched.close()
		s.notify.close()
	})
}

// AccountSID returns the account the simulator serves.
func (s *Server) AccountSID() string { return s.accountSID }

// AuthToken returns the auth token, which also signs webhooks.
func (s *Server) AuthToken() string { return s.authToken }

// Knobs returns the current run-time settings.
func (s *Server) Knobs() Knobs { return *s.knobs.Load() }

// UpdateKnobs applies change to a copy of the current settings and installs
// the result if it is valid.
func (s *Server) UpdateKnobs(change func(*Knobs)) error {
	s.knobsMu.Lock()
	defer s.knobsMu.Unlock()
	k := *s.knobs.Load()
	change(&k)
	if err := k.validate(); err != nil {
		return err
	}
	s.knobs.Store(&k)
	return nil
}

// Reset forgets every message and call and the per-number counters. Records
// still advancing stop and send no more webhooks.
func (s *Server) Reset() {
	s.mu.Lock()
	defer s.mu.Unlock()
	for _, m := range s.messages.all() {
		m.dead = true
	}
	for _, c := range s.calls.all() {
		c.dead = true
	}
	s.messages.init()
	s.calls.init()
	clear(s.sentTo)
}

// Now is the simulator's clock: the wall clock moved on by every Advance.
// Scheduled messages (ScheduleType=fixed) are checked and sent by it.
func (s *Server) Now() time.Time {
	return time.Now().Add(time.Duration(s.clockOffset.Load())).UTC()
}

// Advance moves the simulator's clock on by d (not back: d <= 0 does
// nothing) and sends at once the scheduled messages whose SendAt it passed,
// as if that time had gone by. It returns the new Now.
func (s *Server) Advance(d time.Duration) time.Time {
	if d > 0 {
		s.clockOffset.Add(int64(d))
	}
	now := s.Now()
	s.mu.RLock()
	var due []*message
	for _, m := range s.messages.all() {
		if m.Status == "scheduled" && !m.SendAt.After(now) {
			due = append(due, m)
		}
	}
	s.mu.RUnlock()
	for _, m := range due {
		s.sched.after(0, func() { s.releaseScheduled(m) })
	}
	return now
}

// InFlight returns the number of Twilio API requests being served.
func (s *Server) InFlight() int { return int(s.inflight.Load()) }

func (s *Server) routes() {
	mux := http.NewServeMux()
	api := func(h http.HandlerFunc) http.Handler { return s.twilioAPI(h) }
	mux.Handle("/2010-04-01/Accounts/{account}", api(s.handleAccount))
	mux.Handle("/2010-04-01/Accounts/{account}/{collection}", api(s.handleCollection))
	mux.Handle("/2010-04-01/Accounts/{account}/{collection}/{sid}", api(s.handleResource))
	mux.Handle("/2010-04-01/", api(s.handleNotFound))
	mux.HandleFunc("GET /sim/messages", s.handleSimMessages)
	mux.HandleFunc("GET /sim/calls", s.handleSimCalls)
	mux.HandleFunc("POST /sim/reset", s.handleSimReset)
	mux.HandleFunc("GET /sim/config", s.handleSimConfig)
	mux.HandleFunc("POST /sim/config", s.handleSimConfig)
	mux.HandleFunc("POST /sim/inbound", s.handleSimInbound)
	mux.HandleFunc("GET /sim/clock", s.handleSimClock)
	mux.HandleFunc("POST /sim/clock", s.handleSimClock)
	mux.HandleFunc("/", func(w http.ResponseWriter, r *http.Request) {
		writeJSON(w, http.StatusNotFound, map[string]any{"error": "no such route: " + r.Method + " " + r.URL.Path})
	})
	s.mux = mux
}

// ServeHTTP implements http.Handler.
func (s *Server) ServeHTTP(w http.ResponseWriter, r *http.Request) {
	defer func() {
		// A handler bug must not take the caller down with it; answer 500
		// once rather than crash. http.ErrAbortHandler keeps its meaning.
		if v := recover(); v != nil {
			if v == http.ErrAbortHandler {
				panic(v)
			}
			s.log.Error("twiliosim handler panic", "panic", v, "path", r.URL.Path)
			writeTwilioError(w, &apiError{Status: http.StatusInternalServerError, Code: 20500, Message: "Internal Server Error"})
		}
	}()
	s.mux.ServeHTTP(w, r)
}

// twilioAPI wraps a Twilio API handler with what every Twilio answer gets:
// request id and concurrency headers, the concurrency cap, latency, basic
// auth, the account check and injected 503s.
func (s *Server) twilioAPI(next http.HandlerFunc) http.Handler {
	return http.HandlerFunc(func(w http.ResponseWriter, r *http.Request) {
		n := s.inflight.Add(1)
		defer s.inflight.Add(-1)
		k := s.Knobs()
		h := w.Header()
		h.Set("Twilio-Request-Id", newSID("RQ"))
		h.Set("Twilio-Concurrent-Requests", strconv.FormatInt(n, 10))
		if k.MaxConcurrent > 0 && n > int64(k.MaxConcurrent) {
			h.Set("Retry-After", "1")
			writeTwilioError(w, &apiError{Status: http.StatusTooManyRequests, Code: 20429, Message: "Too Many Requests"})
			return
		}
		if !sleep(r.Context(), k.Latency) {
			return // the client went away
		}
		if !s.authenticated(r) {
			h.Set("WWW-Authenticate", `Basic realm="Twilio API"`)
			writeTwilioError(w, &apiError{Status: http.StatusUnauthorized, Code: 20003, Message: "Authenticate"})
			return
		}
		if acct := strings.TrimSuffix(r.PathValue("account"), ".json"); acct != "" && acct != s.accountSID {
			s.notFound(w, r)
			return
		}
		if k.ErrorRate > 0 && mathrand.Float64() < k.ErrorRate {
			s.unavailable(w)
			return
		}
		r.Body = http.MaxBytesReader(w, r.Body, MaxRequestBytes)
		next(w, r)
	})
}

func sleep(ctx context.Context, l Latency) bool {
	d := l.Min
	if l.Max > l.Min {
		d += mathrand.N(l.Max - l.Min + 1)
	}
	if d <= 0 {
		return ctx.Err() == nil
	}
	t := time.NewTimer(d)
	defer t.Stop()
	select {
	case <-t.C:
		return true
	case <-ctx.Done():
		return false
	}
}

func (s *Server) authenticated(r *http.Request) bool {
	user, pass, ok := r.BasicAuth()
	if !ok {
		return false
	}
	if user == s.accountSID {
		return pass == s.authToken
	}
	secret, ok := s.apiKeys[user]
	return ok && pass == secret
}

// unavailable answers 503, alternating Twilio's JSON body with the HTML page
// a load balancer in front of it sends.
func (s *Server) unavailable(w http.ResponseWriter) {
	if s.errSeq.Add(1)%2 == 1 {
		writeTwilioError(w, &apiError{Status: http.StatusServiceUnavailable, Code: 20503, Message: "Service Unavailable"})
		return
	}
	w.Header().Set("Content-Type", "text/html")
	w.WriteHeader(http.StatusServiceUnavailable)
	io.WriteString(w, "<html><body><h1>503 Service Unavailable</h1></body></html>\n")
}

func (s *Server) notFound(w http.ResponseWriter, r *http.Request) {
	writeTwilioError(w, &apiError{Status: http.StatusNotFound, Code: 20404,
		Message: "The requested resource " + r.URL.Path + " was not found"})
}

func (s *Server) handleNotFound(w http.ResponseWriter, r *http.Request) { s.notFound(w, r) }

func methodNotAllowed(w http.ResponseWriter, allow string) {
	w.Header().Set("Allow", allow)
	writeTwilioError(w, &apiError{Status: http.StatusMethodNotAllowed, Code: 20004, Message: "Method not allowed"})
}

func (s *Server) handleAccount(w http.ResponseWriter, r *http.Request) {
	if r.Method != http.MethodGet && r.Method != http.MethodHead {
		methodNotAllowed(w, "GET")
		return
	}
	base := "/2010-04-01/Accounts/" + s.accountSID
	date := twilioTime(s.created)
	writeJSON(w, http.StatusOK, map[string]any{
		"auth_token":        s.authToken,
		"date_created":      date,
		"date_updated":      date,
		"friendly_name":     "twiliosim",
		"owner_account_sid": s.accountSID,
		"sid":               s.accountSID,
		"status":            "active",
		"type":              "Full",
		"uri":               base + ".json",
		"subresource_uris": map[string]string{
			"calls":    base + "/Calls.json",
			"messages": base + "/Messages.json",
		},
	})
}

func (s *Server) handleCollection(w http.ResponseWriter, r *http.Request) {
	switch strings.TrimSuffix(r.PathValue("collection"), ".json") {
	case "Messages":
		switch r.Method {
		case http.MethodPost:
			s.createMessage(w, r)
		case http.MethodGet, http.MethodHead:
			s.listMessages(w, r)
		default:
			methodNotAllowed(w, "GET, POST")
		}
	case "Calls":
		switch r.Method {
		case http.MethodPost:
			s.createCall(w, r)
		case http.MethodGet, http.MethodHead:
			s.listCalls(w, r)
		default:
			methodNotAllowed(w, "GET, POST")
		}
	default:
		s.notFound(w, r)
	}
}

func (s *Server) handleResource(w http.ResponseWriter, r *http.Request) {
	sid, ok := strings.CutSuffix(r.PathValue("sid"), ".json")
	if !ok {
		sid = r.PathValue("sid")
	}
	if r.Method == http.MethodPost && r.PathValue("collection") == "Calls" {
		s.updateCall(w, r, sid)
		return
	}
	if r.Method == http.MethodPost && r.PathValue("collection") == "Messages" {
		s.updateMessage(w, r, sid)
		return
	}
	if r.Method != http.MethodGet && r.Method != http.MethodHead {
		methodNotAllowed(w, "GET")
		return
	}
	switch r.PathValue("collection") {
	case "Messages":
		s.fetchMessage(w, r, sid)
	case "Calls":
		s.fetchCall(w, r, sid)
	default:
		s.notFound(w, r)
	}
}

// parseForm parses a request form, answering 413 or 400 itself when it
// cannot.
func parseForm(w http.ResponseWriter, r *http.Request) bool {
	if err := r.ParseForm(); err != nil {
		var tooBig *http.MaxBytesError
		if errors.As(err, &tooBig) {
			writeTwilioError(w, &apiError{Status: http.StatusRequestEntityTooLarge, Code: 20413,
				Message: "Request body exceeds " + strconv.Itoa(MaxRequestBytes) + " bytes"})
			return false
		}
		writeTwilioError(w, badRequest(20001, "Malformed request: %v", err))
		return false
	}
	return true
}

// drop closes the client's connection without an answer.
func drop(w http.ResponseWriter) {
	conn, _, err := http.NewResponseController(w).Hijack()
	if err != nil {
		panic(http.ErrAbortHandler) // HTTP/2 and recorders: abort the stream instead
	}
	conn.Close()
}

func writeJSON(w http.ResponseWriter, status int, v any) {
	b, err := json.Marshal(v)
	if err != nil {
		status = http.StatusInternalServerError
		b = []byte(`{"code":20500,"message":"Internal Server Error","more_info":"https://www.twilio.com/docs/errors/20500","status":500}`)
	}
	w.Header().Set("Content-Type", "application/json; charset=utf-8")
	w.WriteHeader(status)
	w.Write(append(b, '\n'))
}

// twilioError is Twilio's error body.
type twilioError struct {
	Code     int    `json:"code"`
	Message  string `json:"message"`
	MoreInfo string `json:"more_info"`
	Status   int    `json:"status"`
}

func writeTwilioError(w http.ResponseWriter, e *apiError) {
	writeJSON(w, e.Status, twilioError{
		Code:     e.Code,
		Message:  e.Message,
		MoreInfo: "https://www.twilio.com/docs/errors/" + strconv.Itoa(e.Code),
		Status:   e.Status,
	})
}

// newSID returns prefix + 32 lowercase hex digits.
func newSID(prefix string) string {
	var b [16]byte
	rand.Read(b[:])
	return prefix + hex.EncodeToString(b[:])
}

func validSID(s, prefix string) bool {
	if len(s) != len(prefix)+32 || !strings.HasPrefix(s, prefix) {
		return false
	}
	_, err := hex.DecodeString(s[len(prefix):])
	return err == nil
}

// twilioTime formats t as Twilio does: RFC 2822 in GMT.
func twilioTime(t time.Time) string {
	return t.UTC().Format("Mon, 02 Jan 2006 15:04:05 +0000")
}

func twilioTimePtr(t *time.Time) *string {
	if t == nil {
		return nil
	}
	s := twilioTime(*t)
	return &s
}

// ring holds records oldest first, evicting the oldest beyond its bound.
type ring[T any] struct {
	items []*T
	sids  []string
	head  int
	byID  map[string]*T
}

func (r *ring[T]) init() {
	r.items, r.sids, r.head = nil, nil, 0
	r.byID = make(map[string]*T)
}

func (r *ring[T]) len() int { return len(r.items) - r.head }

// add appends v and returns the record evicted to stay within limit, if any.
func (r *ring[T]) add(sid string, v *T, limit int) *T {
	r.items = append(r.items, v)
	r.sids = append(r.sids, sid)
	r.byID[sid] = v
	var evicted *T
	if r.len() > limit {
		evicted = r.items[r.head]
		delete(r.byID, r.sids[r.head])
		r.items[r.head], r.sids[r.head] = nil, ""
		r.head++
		if r.head > len(r.items)/2 {
			r.items = append([]*T(nil), r.items[r.head:]...)
			r.sids = append([]string(nil), r.sids[r.head:]...)
			r.head = 0
		}
	}
	return evicted
}

func (r *ring[T]) get(sid string) *T { return r.byID[sid] }

// all returns the live records, oldest first; the slice aliases the ring.
func (r *ring[T]) all() []*T { return r.items[r.head:] }

// hashHex returns 32 hex digits derived from s, for stable made-up SIDs.
func hashHex(s string) string {
	sum := sha256.Sum256([]byte(s))
	return hex.EncodeToString(sum[:16])
}
