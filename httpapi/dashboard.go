package httpapi

import (
	"net/http"

	"github.com/hibiken/asynqmon"
	"github.com/redis/go-redis/v9"

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
	var h http.Handler = mon
	if s.Dashboard.User != "" {
		h = basicAuth(s.Dashboard.User, s.Dashboard.Password, h)
	}
	mux.Handle(DashboardPath+"/", h)
}

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
