// Package httpapi is the worker's HTTP surface: the agent hub's API (/v1/*),
// Twilio's webhooks (/twilio/*), health and metrics, and the asynqmon
// dashboard (/monitoring/). Each part lives in its own file and registers its
// routes in Handler. Every request passes the middleware of middleware.go: a
// panic answers 500 JSON instead of crashing the worker, and /v1/* needs
// APIToken as a Bearer token when one is set.
package httpapi

import (
	"encoding/json"
	"fmt"
	"log/slog"
	"net/http"
	"strings"
	"sync"
	"unicode"
	"unicode/utf8"

	"github.com/hibiken/asynq"
	"github.com/prometheus/client_golang/prometheus"
	"github.com/prometheus/client_golang/prometheus/promhttp"
	"github.com/redis/go-redis/v9"

	"github.com/sbagenthub/twilio-worker/calls"
	"github.com/sbagenthub/twilio-worker/fraud"
	"github.com/sbagenthub/twilio-worker/ledger"
	"github.com/sbagenthub/twilio-worker/metrics"
	"github.com/sbagenthub/twilio-worker/optout"
	"github.com/sbagenthub/twilio-worker/pool"
	"github.com/sbagenthub/twilio-worker/producer"
	"github.com/sbagenthub/twilio-worker/tasks"
	"github.com/sbagenthub/twilio-worker/twilioapi"
	"github.com/sbagenthub/twilio-worker/vapi"
)

// Server holds what the handlers need. Fields left nil disable the routes
// that need them.
type Server struct {
	Redis     redis.UniversalClient
	Client    *asynq.Client
	Inspector *asynq.Inspector
	OptOuts   *optout.Store
	Calls     *calls.Store
	Ledger    *ledger.Ledger // send ledger: tells early status callbacks of ours from strangers'
	Tracker   *tasks.Tracker
	Pool      *pool.Pool // the sender pool (/v1/pool); nil: none
	// Producer queues every task of /v1/actions and /v1/campaigns; nil makes
	// one from Redis, Client, Inspector, Calls, Twilio and Rules.
	Producer *producer.Producer
	Twilio   *twilioapi.Client
	Rules    tasks.Rules
	Registry *prometheus.Registry
	Metrics  *metrics.Metrics
	Logger   *slog.Logger

	// AuthToken signs Twilio's webhooks; PublicURL is where Twilio reaches us.
	AuthToken twilioapi.Secret
	PublicURL string

	// The agent hub's API, dashboard and readiness (api.go, dashboard.go, health.go).
	APIToken  twilioapi.Secret // Bearer token for /v1/*; empty leaves /v1 open
	Dashboard Dashboard        // /monitoring/ (asynqmon); zero: read-only, no password
	// HelpText answers HELP/INFO on /twilio/inbound (HELP_TEXT); empty: HelpTextDefault.
	HelpText string
	// Guard is the fraud guard: /v1/fraud/… manages it (fraud.go); the
	// Producer's Guard refuses at enqueue. nil: neither.
	Guard *fraud.Guard

	// VAPI is the Server URL's handler (POST /vapi/server); its Actions
	// default to this server's. Agents reaches VAPI for the calls an
	// assistant conducts. nil: no VAPI.
	VAPI   *vapi.Handler
	Agents tasks.AgentCaller

	once sync.Once
}

// producer is Producer, or one made from the server's fields.
func (s *Server) producer() *producer.Producer {
	s.once.Do(func() {
		if s.Producer == nil {
			p := &producer.Producer{Redis: s.Redis, Client: s.Client, Inspector: s.Inspector, Calls: s.Calls,
				Rules: s.Rules, Source: "HTTP API", Logger: s.Logger}
			if s.Twilio != nil {
				p.Fetcher, p.Canceler = s.Twilio, s.Twilio
			}
			if s.Guard != nil {
				p.Guard, p.GuardNumber = s.Guard.CheckEnqueue, s.Guard.CheckNumber
			}
			s.Producer = p
		}
		if s.Producer.Inspector == nil && s.Producer.Redis != nil {
			s.Producer.Inspector = asynq.NewInspectorFromRedisClient(s.Producer.Redis)
		}
	})
	return s.Producer
}

// Handler returns the routes.
func (s *Server) Handler() http.Handler {
	mux := http.NewServeMux()
	mux.HandleFunc("GET /healthz", func(w http.ResponseWriter, _ *http.Request) {
		writeJSON(w, http.StatusOK, map[string]string{"status": "ok"})
	})
	if s.Calls != nil || s.Tracker != nil {
		mux.Handle("POST /twilio/status", twilioapi.VerifyWebhook(s.AuthToken, s.PublicURL, http.HandlerFunc(s.twilioStatus)))
	}
	if s.Registry != nil {
		mux.Handle("GET /metrics", promhttp.HandlerFor(s.Registry, promhttp.HandlerOpts{Registry: s.Registry}))
	}
	s.routeAPI(mux)       // /v1/actions, /v1/tasks/{id}
	s.routeReadiness(mux) // /readyz
	s.routeDashboard(mux) // /monitoring/
	s.inboundRoutes(mux)  // inbound.go
	s.optOutRoutes(mux)   // optouts.go
	s.routeCampaigns(mux) // /v1/campaigns (campaigns.go)
	s.routeFraud(mux)     // /v1/fraud/… (fraud.go)
	s.poolRoutes(mux)     // /v1/pool (pool.go)
	s.routeVAPI(mux)      // /vapi/server (vapi.go)
	return s.middleware(mux)
}

func (s *Server) logger() *slog.Logger {
	if s.Logger == nil {
		return slog.New(slog.DiscardHandler)
	}
	return s.Logger
}

func writeJSON(w http.ResponseWriter, status int, v any) {
	w.Header().Set("Content-Type", "application/json")
	w.WriteHeader(status)
	enc := json.NewEncoder(w)
	enc.SetEscapeHTML(false)
	_ = enc.Encode(v)
}

// apiError is the body of every error answer: {"error":{"code","message","field"}}.
type apiError struct {
	Code    string `json:"code"`
	Message string `json:"message"`
	Field   string `json:"field,omitempty"`
}

func writeError(w http.ResponseWriter, status int, code, field, message string) {
	writeJSON(w, status, map[string]apiError{"error": {Code: code, Message: message, Field: field}})
}

// fieldName makes a client-supplied name safe and short enough to echo
// back: printable, at most 64 characters, never empty.
func fieldName(s string) string {
	if s == "" {
		return `""`
	}
	var b strings.Builder
	n := 0
	for _, r := range s {
		if n++; n > 64 {
			b.WriteString("…")
			break
		}
		if r == utf8.RuneError || !unicode.IsPrint(r) {
			r = '?'
		}
		b.WriteRune(r)
	}
	return b.String()
}

// quoteShort quotes a client-supplied value for a message, shortened.
func quoteShort(s string) string {
	if len(s) > 40 {
		s = s[:40] + "…"
	}
	return fmt.Sprintf("%q", s)
}
