package twilioapi

import (
	"bytes"
	"context"
	"io"
	"mime"
	"net/http"
	"net/http/httptrace"
	"net/url"
	"strconv"
	"strings"
	"sync"
	"time"
)

// exchange records what the SDK does not tell us about one request: whether
// it was written to the wire, and the response's status and headers.
type exchange struct {
	mu sync.Mutex
	r  record
}

// record is what an exchange learnt.
type record struct {
	wrote      bool
	status     int
	retryAfter time.Duration
	concurrent int
	requestID  string
	body       string // a short excerpt of a non-JSON error body
}

func (x *exchange) setWrote() {
	x.mu.Lock()
	x.r.wrote = true
	x.mu.Unlock()
}

func (x *exchange) snapshot() record {
	x.mu.Lock()
	defer x.mu.Unlock()
	return x.r
}

// transport sends one call's requests: it rewrites the host to the configured
// base URL, binds the call's context (the SDK has none) and records the
// exchange.
type transport struct {
	base   http.RoundTripper
	target *url.URL // nil: leave the URL alone
	pace   func(context.Context) (func(), error)
	ctx    context.Context
	x      *exchange
}

func (t *transport) RoundTrip(req *http.Request) (*http.Response, error) {
	if t.target != nil {
		u := *req.URL
		u.Scheme, u.Host = t.target.Scheme, t.target.Host
		if p := strings.TrimSuffix(t.target.Path, "/"); p != "" && !strings.HasPrefix(u.Path, p+"/") {
			u.Path = p + u.Path
		}
		req = req.Clone(req.Context())
		req.URL, req.Host = &u, ""
	}
	ctx := t.ctx
	if ctx == nil {
		ctx = req.Context()
	}
	trace := &httptrace.ClientTrace{WroteRequest: func(httptrace.WroteRequestInfo) { t.x.setWrote() }}
	req = req.WithContext(httptrace.WithClientTrace(ctx, trace))

	if t.pace != nil {
		release, err := t.pace(ctx)
		if err != nil {
			return nil, err
		}
		defer release()
	}
	resp, err := t.base.RoundTrip(req)
	if err != nil {
		return nil, err
	}
	t.x.mu.Lock()
	t.x.r.status = resp.StatusCode
	t.x.r.retryAfter = parseRetryAfter(resp.Header.Get("Retry-After"), time.Now())
	t.x.r.concurrent, _ = strconv.Atoi(resp.Header.Get("Twilio-Concurrent-Requests"))
	t.x.r.requestID = resp.Header.Get("Twilio-Request-Id")
	t.x.mu.Unlock()

	if resp.StatusCode >= 400 && !isJSON(resp.Header.Get("Content-Type")) {
		// Keep an excerpt of an HTML or text error page for the error message
		// and hand the SDK the body back unchanged.
		excerpt, _ := io.ReadAll(io.LimitReader(resp.Body, 4096))
		rest := resp.Body
		resp.Body = struct {
			io.Reader
			io.Closer
		}{io.MultiReader(bytes.NewReader(excerpt), rest), rest}
		t.x.mu.Lock()
		t.x.r.body = textOf(excerpt)
		t.x.mu.Unlock()
	}
	return resp, nil
}

func isJSON(contentType string) bool {
	mt, _, err := mime.ParseMediaType(contentType)
	return err == nil && (mt == "application/json" || strings.HasSuffix(mt, "+json"))
}

// textOf reduces an HTML or text body to a short line: tags dropped, space folded.
func textOf(b []byte) string {
	var out strings.Builder
	inTag := false
	for _, r := range string(b) {
		switch {
		case r == '<':
			inTag = true
			out.WriteByte(' ')
		case r == '>':
			inTag = false
		case !inTag:
			out.WriteRune(r)
		}
	}
	s := strings.Join(strings.Fields(out.String()), " ")
	if len(s) > 120 {
		s = s[:120] + "…"
	}
	return s
}

// parseRetryAfter reads delay-seconds or an HTTP date.
func parseRetryAfter(v string, now time.Time) time.Duration {
	v = strings.TrimSpace(v)
	if v == "" {
		return 0
	}
	if secs, err := strconv.ParseFloat(v, 64); err == nil && secs >= 0 {
		return time.Duration(secs * float64(time.Second))
	}
	if t, err := http.ParseTime(v); err == nil && t.After(now) {
		return t.Sub(now)
	}
	return 0
}
