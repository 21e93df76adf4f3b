// Package vapisim simulates VAPI for tests and local mode: the REST API's
// calls (POST/GET /call, GET/DELETE /call/{id}, live call control), calls
// that run queued → ringing → in-progress → ended and report each step to
// the Server URL (status-update, then end-of-call-report) with the
// configured authentication, and scripted tool calls (POST /sim/tool-call)
// whose answers it returns. GET /sim/calls lists the calls it placed;
// POST /sim/config changes the fault knobs (latency, errorRate, dropRate).
//
// Customer numbers with a scripted outcome: +15005551001 ends
// customer-busy, +15005551002 customer-did-not-answer, both without being
// answered; every other valid number is answered and ends
// customer-ended-call after CallDuration.
package vapisim

import (
	"bytes"
	"context"
	"crypto/rand"
	"encoding/hex"
	"encoding/json"
	"fmt"
	"io"
	"log/slog"
	mathrand "math/rand/v2"
	"net/http"
	"regexp"
	"slices"
	"strconv"
	"strings"
	"sync"
	"sync/atomic"
	"time"

	"github.com/sbagenthub/twilio-worker/twiliosim"
	"github.com/sbagenthub/twilio-worker/vapi"
)

// Defaults of Config.
const (
	AddrDefault         = "127.0.0.1:8091"
	APIKeyDefault       = "vapisim-key"
	CallRingDefault     = time.Second
	CallDurationDefault = 3 * time.Second
	OrgID               = "00000000-0000-4000-8000-000000000000"
)

// Config configures a Server. Zero fields take the defaults.
type Config struct {
	APIKey      string // the private key clients send as Bearer; APIKeyDefault when empty
	ServerURL   string // where server messages go; empty: none are sent
	ServerToken string // sent as "Authorization: Bearer …" with every server message
	HMACSecret  string // signs every server message (x-signature, x-timestamp)

	Latency      twiliosim.Latency // delay before every API answer
	ErrorRate    float64           // share of API requests answered 500
	DropRate     float64           // share of call creates whose connection is dropped after the call is made
	CallRing     time.Duration     // CallRingDefault when zero
	CallDuration time.Duration     // CallDurationDefault when zero
	Logger       *slog.Logger
}

// Knobs are the fault settings POST /sim/config changes.
type Knobs struct {
	Latency   twiliosim.Latency `json:"latency"`
	ErrorRate float64           `json:"errorRate"`
	DropRate  float64           `json:"dropRate"`
}

// Call is the simulator's record of a call, as GET /sim/calls shows it.
type Call struct {
	vapi.Call
	Fetches        int      `json:"fetches"`        // GET /call/{id} so far
	Events         []string `json:"events"`         // server messages delivered, in order ("status-update:ringing", "end-of-call-report")
	EventFailures  int      `json:"eventFailures"`  // server messages the Server URL did not take (non-2xx or unreachable)
	EndedByRequest bool     `json:"endedByRequest"` // ended through control or DELETE
}

type call struct {
	Call
	end chan struct{} // closed to end the call early
}

// Server is the simulator, an http.Handler. Stop it with Close.
type Server struct {
	cfg   Config
	log   *slog.Logger
	knobs atomic.Pointer[Knobs]
	base  atomic.Value // string: the URL clients reach us at, for controlUrl

	mu    sync.Mutex
	calls []*call
	byID  map[string]*call

	wg     sync.WaitGroup
	closed chan struct{}
	once   sync.Once
	mux    *http.ServeMux
	http   *http.Client
}

// New returns a running simulator.
func New(cfg Config) *Server {
	if cfg.APIKey == "" {
		cfg.APIKey = APIKeyDefault
	}
	if cfg.CallRing <= 0 {
		cfg.CallRing = CallRingDefault
	}
	if cfg.CallDuration <= 0 {
		cfg.CallDuration = CallDurationDefault
	}
	if cfg.Logger == nil {
		cfg.Logger = slog.New(slog.DiscardHandler)
	}
	s := &Server{cfg: cfg, log: cfg.Logger, byID: map[string]*call{}, closed: make(chan struct{}),
		http: &http.Client{Timeout: 30 * time.Second}}
	s.knobs.Store(&Knobs{Latency: cfg.Latency, ErrorRate: cfg.ErrorRate, DropRate: cfg.DropRate})
	s.base.Store("")
	mux := http.NewServeMux()
	mux.Handle("POST /call", s.api(s.createCall))
	mux.Handle("GET /call", s.api(s.listCalls))
	mux.Handle("GET /call/{id}", s.api(s.getCall))
	mux.Handle("DELETE /call/{id}", s.api(s.deleteCall))
	mux.HandleFunc("POST /call/{id}/control", s.control) // the control URL needs no key, as on VAPI
	mux.HandleFunc("GET /sim/calls", s.simCalls)
	mux.HandleFunc("POST /sim/tool-call", s.simToolCall)
	mux.HandleFunc("GET /sim/config", s.simConfig)
	mux.HandleFunc("POST /sim/config", s.simConfig)
	mux.HandleFunc("/", func(w http.ResponseWriter, r *http.Request) {
		writeJSON(w, http.StatusNotFound, map[string]any{"message": "Cannot " + r.Method + " " + r.URL.Path, "statusCode": 404})
	})
	s.mux = mux
	return s
}

// SetBaseURL tells the simulator the URL it is reached at (for the calls'
// monitor.controlUrl); without it the Host of each create is used.
func (s *Server) SetBaseURL(u string) { s.base.Store(strings.TrimRight(u, "/")) }

// Close ends every call's run without sending more messages and waits for
// the runs to stop.
func (s *Server) Close() {
	s.once.Do(func() { close(s.closed) })
	s.wg.Wait()
}

// Knobs returns the current fault settings.
func (s *Server) Knobs() Knobs { return *s.knobs.Load() }

// Calls returns a copy of every call, oldest first.
func (s *Server) Calls() []Call {
	s.mu.Lock()
	defer s.mu.Unlock()
	out := make([]Call, len(s.calls))
	for i, c := range s.calls {
		out[i] = c.copy()
	}
	return out
}

func (c *call) copy() Call {
	v := c.Call
	v.Events = slices.Clone(c.Events)
	if c.Customer != nil {
		cu := *c.Customer
		v.Customer = &cu
	}
	if c.Monitor != nil {
		m := *c.Monitor
		v.Monitor = &m
	}
	return v
}

// ServeHTTP implements http.Handler.
func (s *Server) ServeHTTP(w http.ResponseWriter, r *http.Request) {
	defer func() {
		if v := recover(); v != nil {
			if v == http.ErrAbortHandler {
				panic(v)
			}
			s.log.Error("vapisim handler panic", "panic", v)
			writeJSON(w, http.StatusInternalServerError, map[string]any{"message": "Internal server error", "statusCode": 500})
		}
	}()
	s.mux.ServeHTTP(w, r)
}

func writeJSON(w http.ResponseWriter, status int, v any) {
	w.Header().Set("Content-Type", "application/json; charset=utf-8")
	w.WriteHeader(status)
	_ = json.NewEncoder(w).Encode(v)
}

func apiError(w http.ResponseWriter, status int, msg string) {
	writeJSON(w, status, map[string]any{"message": msg, "error": http.StatusText(status), "statusCode": status})
}

// api wraps an API handler with latency, the Bearer key and injected 500s.
func (s *Server) api(next http.HandlerFunc) http.Handler {
	return http.HandlerFunc(func(w http.ResponseWriter, r *http.Request) {
		k := s.Knobs()
		if !sleep(r.Context(), k.Latency) {
			return
		}
		if r.Header.Get("Authorization") != "Bearer "+s.cfg.APIKey {
			apiError(w, http.StatusUnauthorized, "Invalid Key. Hot tip, you may be using the private key instead of the public key, or vice versa.")
			return
		}
		if k.ErrorRate > 0 && mathrand.Float64() < k.ErrorRate {
			apiError(w, http.StatusInternalServerError, "Internal server error")
			return
		}
		next(w, r)
	})
}

func sleep(ctx context.Context, l twiliosim.Latency) bool {
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

var e164 = regexp.MustCompile(`^\+[1-9][0-9]{6,14}$`)

func newUUID() string {
	var b [16]byte
	_, _ = rand.Read(b[:])
	b[6] = b[6]&0x0f | 0x40
	b[8] = b[8]&0x3f | 0x80
	h := hex.EncodeToString(b[:])
	return h[:8] + "-" + h[8:12] + "-" + h[12:16] + "-" + h[16:20] + "-" + h[20:]
}

func newCallSID() string {
	var b [16]byte
	_, _ = rand.Read(b[:])
	return "CA" + hex.EncodeToString(b[:])
}

func now() string { return time.Now().UTC().Format("2006-01-02T15:04:05.000Z") }

func (s *Server) createCall(w http.ResponseWriter, r *http.Request) {
	k := s.Knobs() // read once, before the call exists: a drop is decided with the call
	var req vapi.CreateCall
	if err := json.NewDecoder(io.LimitReader(r.Body, 1<<20)).Decode(&req); err != nil {
		apiError(w, http.StatusBadRequest, "body must be JSON: "+err.Error())
		return
	}
	switch {
	case req.AssistantID == "":
		apiError(w, http.StatusBadRequest, "Couldn't Get Assistant. Need Either `assistant` Or `assistantId`.")
		return
	case req.PhoneNumberID == "":
		apiError(w, http.StatusBadRequest, "Need Either `phoneNumberId` Or `phoneNumber`.")
		return
	case !e164.MatchString(req.Customer.Number):
		apiError(w, http.StatusBadRequest, "customer.number must be a valid phone number in the E.164 format.")
		return
	}
	base := s.base.Load().(string)
	if base == "" {
		base = "http://" + r.Host
	}
	id := newUUID()
	c := &call{end: make(chan struct{}), Call: Call{Call: vapi.Call{
		ID: id, OrgID: OrgID, Type: "outboundPhoneCall", Status: "queued", CreatedAt: now(), UpdatedAt: now(),
		AssistantID: req.AssistantID, PhoneNumberID: req.PhoneNumberID, PhoneCallProvider: "twilio",
		PhoneCallProviderID: newCallSID(), Customer: &vapi.Customer{Number: req.Customer.Number},
		Monitor: &vapi.Monitor{ListenURL: "ws://" + r.Host + "/call/" + id + "/listen", ControlURL: base + "/call/" + id + "/control"},
	}}}
	zero := 0.0
	c.Cost = &zero
	s.mu.Lock()
	s.calls = append(s.calls, c)
	s.byID[id] = c
	view := c.copy()
	s.mu.Unlock()
	s.wg.Add(1)
	go s.runCall(c)
	s.log.Debug("vapisim call created", "id", id)
	if k.DropRate > 0 && mathrand.Float64() < k.DropRate {
		conn, _, err := http.NewResponseController(w).Hijack()
		if err != nil {
			panic(http.ErrAbortHandler)
		}
		conn.Close()
		return
	}
	writeJSON(w, http.StatusCreated, view.Call)
}

// runCall moves the call through its life and reports each step.
func (s *Server) runCall(c *call) {
	defer s.wg.Done()
	outcome := "customer-ended-call"
	switch c.Customer.Number {
	case "+15005551001":
		outcome = "customer-busy"
	case "+15005551002":
		outcome = "customer-did-not-answer"
	}
	wait := func(d time.Duration) (ended, closed bool) {
		t := time.NewTimer(d)
		defer t.Stop()
		select {
		case <-t.C:
			return false, false
		case <-c.end:
			return true, false
		case <-s.closed:
			return false, true
		}
	}
	s.event(c, vapi.TypeStatusUpdate, "queued", "")
	if _, closed := wait(min(100*time.Millisecond, s.cfg.CallRing/2)); closed {
		return
	}
	reason := "manually-canceled"
	if s.step(c, "ringing", "") {
		ended, closed := wait(s.cfg.CallRing)
		switch {
		case closed:
			return
		case !ended && outcome != "customer-ended-call":
			reason = outcome
		case !ended && s.step(c, "in-progress", ""):
			s.mu.Lock()
			c.StartedAt = now()
			s.mu.Unlock()
			ended, closed = wait(s.cfg.CallDuration)
			if closed {
				return
			}
			if !ended {
				reason = outcome
			}
		}
	}
	s.mu.Lock()
	if c.EndedAt == "" {
		c.EndedAt = now()
	}
	if c.EndedReason == "" {
		c.EndedReason = reason
	}
	cost := 0.0
	if d := c.Duration(); d > 0 {
		cost = float64(d) * 0.0012
	}
	c.Cost = &cost
	s.mu.Unlock()
	s.step(c, "ended", c.EndedReason)
	s.event(c, vapi.TypeEndOfCallReport, "ended", c.EndedReason)
}

// step sets the call's status and reports it; false when it had ended.
func (s *Server) step(c *call, status, reason string) bool {
	s.mu.Lock()
	if c.Status == "ended" && status != "ended" {
		s.mu.Unlock()
		return false
	}
	c.Status, c.UpdatedAt = status, now()
	s.mu.Unlock()
	s.event(c, vapi.TypeStatusUpdate, status, reason)
	return true
}

// event sends one server message about c to the Server URL.
func (s *Server) event(c *call, typ, status, reason string) {
	if s.cfg.ServerURL == "" {
		return
	}
	s.mu.Lock()
	view := c.copy()
	s.mu.Unlock()
	msg := map[string]any{"type": typ, "call": view.Call, "customer": view.Customer,
		"phoneNumber": map[string]string{"id": view.PhoneNumberID}, "timestamp": time.Now().UnixMilli()}
	if typ == vapi.TypeStatusUpdate {
		msg["status"] = status
		if status == "ended" {
			msg["endedReason"] = reason
		}
	} else {
		msg["endedReason"] = reason
		msg["cost"] = view.Cost
		msg["startedAt"], msg["endedAt"] = view.StartedAt, view.EndedAt
		msg["artifact"] = map[string]any{"transcript": "AI: Hello, this is Jordan.\nUser: Hi, thanks for calling.",
			"recordingUrl": "https://storage.vapi.invalid/" + view.ID + ".wav", "messages": []any{}}
		msg["analysis"] = map[string]any{"summary": "A short simulated call."}
	}
	name := typ
	if typ == vapi.TypeStatusUpdate {
		name += ":" + status
	}
	status2, _, err := s.post(map[string]any{"message": msg}, "")
	s.mu.Lock()
	if err != nil || status2/100 != 2 {
		c.EventFailures++
		s.log.Warn("vapisim: server message not taken", "type", name, "status", status2, "err", err)
	} else {
		c.Events = append(c.Events, name)
	}
	s.mu.Unlock()
}

// post sends a server message with the configured authentication (token
// overrides the server token when not empty) and returns the answer.
func (s *Server) post(v any, token string) (int, json.RawMessage, error) {
	body, _ := json.Marshal(v)
	req, err := http.NewRequest(http.MethodPost, s.cfg.ServerURL, bytes.NewReader(body))
	if err != nil {
		return 0, nil, err
	}
	req.Header.Set("Content-Type", "application/json")
	if token == "" {
		token = s.cfg.ServerToken
	}
	if token != "" {
		req.Header.Set("Authorization", "Bearer "+token)
	}
	if s.cfg.HMACSecret != "" {
		ts := strconv.FormatInt(time.Now().UnixMilli(), 10)
		req.Header.Set(vapi.HeaderTimestamp, ts)
		req.Header.Set(vapi.HeaderSignature, vapi.Sign(s.cfg.HMACSecret, ts, body))
	}
	resp, err := s.http.Do(req)
	if err != nil {
		return 0, nil, err
	}
	defer resp.Body.Close()
	b, _ := io.ReadAll(io.LimitReader(resp.Body, 4<<20))
	if !json.Valid(b) {
		b, _ = json.Marshal(string(b))
	}
	return resp.StatusCode, b, nil
}

func (s *Server) find(w http.ResponseWriter, id string) *call {
	s.mu.Lock()
	c := s.byID[id]
	s.mu.Unlock()
	if c == nil {
		apiError(w, http.StatusNotFound, "Call not found")
	}
	return c
}

func (s *Server) getCall(w http.ResponseWriter, r *http.Request) {
	c := s.find(w, r.PathValue("id"))
	if c == nil {
		return
	}
	s.mu.Lock()
	c.Fetches++
	view := c.copy()
	s.mu.Unlock()
	writeJSON(w, http.StatusOK, view.Call)
}

func (s *Server) listCalls(w http.ResponseWriter, r *http.Request) {
	q := r.URL.Query()
	var after time.Time
	if v := q.Get("createdAtGt"); v != "" {
		t, err := time.Parse(time.RFC3339Nano, v)
		if err != nil {
			apiError(w, http.StatusBadRequest, "createdAtGt must be an ISO 8601 date string")
			return
		}
		after = t
	}
	limit := 100
	if v := q.Get("limit"); v != "" {
		n, err := strconv.Atoi(v)
		if err != nil || n < 0 || n > 1000 {
			apiError(w, http.StatusBadRequest, "limit must not be greater than 1000")
			return
		}
		limit = n
	}
	out := []vapi.Call{}
	s.mu.Lock()
	for i := len(s.calls) - 1; i >= 0 && len(out) < limit; i-- {
		c := s.calls[i]
		if aid := q.Get("assistantId"); aid != "" && c.AssistantID != aid {
			continue
		}
		if !after.IsZero() && !vapi.Time(c.CreatedAt).After(after) {
			continue
		}
		out = append(out, c.copy().Call)
	}
	s.mu.Unlock()
	writeJSON(w, http.StatusOK, out)
}

// endCall ends c now (DELETE, or control's end-call).
func (s *Server) endCall(c *call) {
	s.mu.Lock()
	defer s.mu.Unlock()
	if c.EndedByRequest || c.Status == "ended" {
		return
	}
	c.EndedByRequest = true
	c.EndedReason = "manually-canceled"
	c.EndedAt = now()
	close(c.end)
}

func (s *Server) deleteCall(w http.ResponseWriter, r *http.Request) {
	c := s.find(w, r.PathValue("id"))
	if c == nil {
		return
	}
	s.endCall(c)
	s.mu.Lock()
	view := c.copy()
	s.mu.Unlock()
	writeJSON(w, http.StatusOK, view.Call)
}

func (s *Server) control(w http.ResponseWriter, r *http.Request) {
	c := s.find(w, r.PathValue("id"))
	if c == nil {
		return
	}
	var req struct{ Type string }
	if err := json.NewDecoder(io.LimitReader(r.Body, 1<<20)).Decode(&req); err != nil {
		apiError(w, http.StatusBadRequest, "body must be JSON")
		return
	}
	switch req.Type {
	case "end-call":
		s.endCall(c)
	case "say", "add-message", "control", "transfer":
	default:
		apiError(w, http.StatusBadRequest, "unknown control type "+strconv.Quote(req.Type))
		return
	}
	writeJSON(w, http.StatusOK, map[string]any{})
}

func (s *Server) simCalls(w http.ResponseWriter, _ *http.Request) {
	writeJSON(w, http.StatusOK, s.Calls())
}

func (s *Server) simConfig(w http.ResponseWriter, r *http.Request) {
	if r.Method == http.MethodPost {
		var in struct {
			Latency   *string  `json:"latency"`
			ErrorRate *float64 `json:"errorRate"`
			DropRate  *float64 `json:"dropRate"`
		}
		if err := json.NewDecoder(io.LimitReader(r.Body, 1<<20)).Decode(&in); err != nil {
			apiError(w, http.StatusBadRequest, "body must be JSON with latency, errorRate, dropRate")
			return
		}
		k := s.Knobs()
		if in.Latency != nil {
			l, err := twiliosim.ParseLatency(*in.Latency)
			if err != nil {
				apiError(w, http.StatusBadRequest, "latency: "+err.Error())
				return
			}
			k.Latency = l
		}
		for name, p := range map[string]*float64{"errorRate": in.ErrorRate, "dropRate": in.DropRate} {
			if p != nil && (*p < 0 || *p > 1) {
				apiError(w, http.StatusBadRequest, name+": want a share between 0 and 1")
				return
			}
		}
		if in.ErrorRate != nil {
			k.ErrorRate = *in.ErrorRate
		}
		if in.DropRate != nil {
			k.DropRate = *in.DropRate
		}
		s.knobs.Store(&k)
	}
	writeJSON(w, http.StatusOK, s.Knobs())
}

// ToolCallRequest is the body of POST /sim/tool-call: the tool calls of one
// tool-calls message, and the call they happen in.
type ToolCallRequest struct {
	// Either one call (Name, Arguments, ID) or several (ToolCalls).
	Name      string          `json:"name,omitempty"`
	Arguments json.RawMessage `json:"arguments,omitempty"`
	ID        string          `json:"id,omitempty"`
	ToolCalls []struct {
		ID        string          `json:"id"`
		Name      string          `json:"name"`
		Arguments json.RawMessage `json:"arguments"`
	} `json:"toolCalls,omitempty"`
	// ArgumentsAsString sends arguments as a JSON string (as VAPI documents
	// them) instead of an object (as VAPI sends them).
	ArgumentsAsString bool `json:"argumentsAsString,omitempty"`
	// The call: its id (a new UUID when empty), Twilio CallSid, the
	// customer's number and the number the call is on.
	CallID              string `json:"callId,omitempty"`
	PhoneCallProviderID string `json:"phoneCallProviderId,omitempty"`
	Customer            string `json:"customer,omitempty"`
	PhoneNumber         string `json:"phoneNumber,omitempty"`
	// Token replaces the configured server token for this message (to try
	// a wrong one).
	Token string `json:"token,omitempty"`
}

// ToolCallAnswer is what POST /sim/tool-call returns: the worker's status
// and body, and the message sent.
type ToolCallAnswer struct {
	Status int             `json:"status"`
	Body   json.RawMessage `json:"body"`
	CallID string          `json:"callId"`
	Sent   json.RawMessage `json:"sent"`
}

func (s *Server) simToolCall(w http.ResponseWriter, r *http.Request) {
	var req ToolCallRequest
	if err := json.NewDecoder(io.LimitReader(r.Body, 1<<20)).Decode(&req); err != nil {
		apiError(w, http.StatusBadRequest, "body must be JSON: "+err.Error())
		return
	}
	if s.cfg.ServerURL == "" {
		apiError(w, http.StatusConflict, "no --server-url: nowhere to send the tool call")
		return
	}
	if req.Name != "" {
		req.ToolCalls = append(req.ToolCalls, struct {
			ID        string          `json:"id"`
			Name      string          `json:"name"`
			Arguments json.RawMessage `json:"arguments"`
		}{req.ID, req.Name, req.Arguments})
	}
	if len(req.ToolCalls) == 0 {
		apiError(w, http.StatusBadRequest, "name (or toolCalls) is required")
		return
	}
	if req.CallID == "" {
		req.CallID = newUUID()
	}
	if req.PhoneCallProviderID == "" {
		req.PhoneCallProviderID = newCallSID()
	}
	var list []map[string]any
	for i, tc := range req.ToolCalls {
		if tc.ID == "" {
			tc.ID = fmt.Sprintf("call_%s_%d", req.CallID[:8], i)
		}
		var args any = tc.Arguments
		if len(tc.Arguments) == 0 {
			args = json.RawMessage("{}")
		}
		if req.ArgumentsAsString {
			args = string(args.(json.RawMessage))
		}
		list = append(list, map[string]any{"id": tc.ID, "type": "function", "function": map[string]any{"name": tc.Name, "arguments": args}})
	}
	with := make([]map[string]any, len(list))
	for i, tc := range list {
		with[i] = map[string]any{"type": "function", "function": map[string]any{"name": tc["function"].(map[string]any)["name"]},
			"server": map[string]string{"url": s.cfg.ServerURL}, "messages": []any{}, "async": false, "toolCall": tc}
	}
	customer := map[string]string{"number": req.Customer}
	msg := map[string]any{"message": map[string]any{
		"type": vapi.TypeToolCalls, "toolCallList": list, "toolCalls": list, "toolWithToolCallList": with,
		"call": map[string]any{"id": req.CallID, "orgId": OrgID, "type": "inboundPhoneCall", "status": "in-progress",
			"phoneCallProvider": "twilio", "phoneCallProviderId": req.PhoneCallProviderID, "customer": customer},
		"customer": customer, "phoneNumber": map[string]string{"number": req.PhoneNumber},
		"timestamp": time.Now().UnixMilli(),
	}}
	sent, _ := json.Marshal(msg)
	status, body, err := s.post(msg, req.Token)
	if err != nil {
		apiError(w, http.StatusBadGateway, "the Server URL did not answer: "+err.Error())
		return
	}
	writeJSON(w, http.StatusOK, ToolCallAnswer{Status: status, Body: body, CallID: req.CallID, Sent: sent})
}
