package httpapi

import (
	"bytes"
	"net"
	"net/http"
	"strings"

	"github.com/hibiken/asynqmon"
	"github.com/redis/go-redis/v9"

	"github.com/sbagenthub/twilio-worker/phone"
	"github.com/sbagenthub/twilio-worker/twilioapi"
)

// DashboardPath is where the asynqmon dashboard is served.
const DashboardPath = "/monitoring"

// Dashboard configures the asynqmon dashboard at /monitoring/. The zero value
// serves it read-only and without a password.
type Dashboard struct {
	// Writable lets the dashboard delete, run, archive and cancel tasks and
	// pause queues (DASHBOARD_READONLY=false).
	Writable bool
	// User and Password, when set, are asked for with HTTP basic auth
	// (DASHBOARD_USER, DASHBOARD_PASSWORD).
	User     string
	Password twilioapi.Secret
	// Disabled leaves /monitoring/ unserved (404).
	Disabled bool
	// Hosts are the host names (DASHBOARD_HOSTS) the dashboard answers to
	// besides loopback ones (localhost, 127.0.0.1, ::1). A request naming
	// any other Host gets 421, so a web page cannot reach the dashboard
	// through a browser on this machine by DNS rebinding.
	Hosts []string
}

// sharedRedis hands asynqmon the worker's own Redis client, so the
// dashboard follows REDIS_URL (also the embedded Redis of local mode) and
// opens no pool of its own. asynqmon closes it only in its Close, which the
// worker never calls.
type sharedRedis struct{ rdb redis.UniversalClient }

func (o sharedRedis) MakeRedisClient() any { return o.rdb }

func (s *Server) routeDashboard(mux *http.ServeMux) {
	if s.Dashboard.Disabled || s.Redis == nil {
		return
	}
	mon := asynqmon.New(asynqmon.Options{
		RootPath:         DashboardPath,
		RedisConnOpt:     sharedRedis{s.Redis},
		ReadOnly:         !s.Dashboard.Writable,
		PayloadFormatter: asynqmon.PayloadFormatterFunc(MaskPayload),
		ResultFormatter:  asynqmon.ResultFormatterFunc(MaskPayload),
	})
	var h http.Handler = maskAPI(mon)
	if s.Dashboard.User != "" {
		h = basicAuth(s.Dashboard.User, s.Dashboard.Password, h)
	}
	h = allowHosts(s.Dashboard.Hosts, h)
	mux.Handle(DashboardPath+"/", h)
}

// allowHosts answers 421 Misdirected Request unless the request's Host is a
// loopback name or address or one of hosts.
func allowHosts(hosts []string, next http.Handler) http.Handler {
	allowed := map[string]bool{}
	for _, h := range hosts {
		allowed[strings.ToLower(strings.TrimSuffix(h, "."))] = true
	}
	return http.HandlerFunc(func(w http.ResponseWriter, r *http.Request) {
		host := r.Host
		if h, _, err := net.SplitHostPort(host); err == nil {
			host = h
		}
		host = strings.ToLower(strings.TrimSuffix(strings.Trim(host, "[]"), "."))
		ip := net.ParseIP(host)
		if host != "localhost" && (ip == nil || !ip.IsLoopback()) && !allowed[host] {
			writeError(w, http.StatusMisdirectedRequest, "misdirected", "Host",
				"the dashboard answers only to loopback names and DASHBOARD_HOSTS")
			return
		}
		next.ServeHTTP(w, r)
	})
}

// maskAPI masks the answers of asynqmon's JSON API (/monitoring/api/…):
// task ids, payloads, results and error messages, wherever they are. An
// answer that is not JSON is masked as text.
func maskAPI(next http.Handler) http.Handler {
	return http.HandlerFunc(func(w http.ResponseWriter, r *http.Request) {
		if !strings.HasPrefix(r.URL.Path, DashboardPath+"/api/") {
			next.ServeHTTP(w, r)
			return
		}
		rec := &bufferedResponse{header: http.Header{}, status: http.StatusOK}
		next.ServeHTTP(rec, r)
		body := rec.body.Bytes()
		if masked, ok := MaskJSON(body); ok {
			body = masked
		} else {
			body = []byte(phone.MaskText(string(body)))
		}
		for k, v := range rec.header {
			w.Header()[k] = v
		}
		w.Header().Del("Content-Length")
		w.WriteHeader(rec.status)
		_, _ = w.Write(body)
	})
}

// bufferedResponse keeps an answer so that it can be masked before it is
// sent.
type bufferedResponse struct {
	header http.Header
	status int
	body   bytes.Buffer
}

func (b *bufferedResponse) Header() http.Header         { return b.header }
func (b *bufferedResponse) WriteHeader(status int)      { b.status = status }
func (b *bufferedResponse) Write(p []byte) (int, error) { return b.body.Write(p) }

// basicAuth asks for user and password, compared in constant time.
func basicAuth(user string, password twilioapi.Secret, next http.Handler) http.Handler {
	return http.HandlerFunc(func(w http.ResponseWriter, r *http.Request) {
		u, p, ok := r.BasicAuth()
		// Both comparisons run whatever the first one says.
		userOK, passOK := secretEqual(u, user), secretEqual(p, password.Reveal())
		if !ok || !userOK || !passOK {
			w.Header().Set("WWW-Authenticate", `Basic realm="twilio-worker dashboard", charset="UTF-8"`)
			writeError(w, http.StatusUnauthorized, "unauthorized", "Authorization", "the dashboard needs DASHBOARD_USER and DASHBOARD_PASSWORD")
			return
		}
		next.ServeHTTP(w, r)
	})
}
