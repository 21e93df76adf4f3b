package httpapi

import (
	"context"
	"errors"
	"net/http"
	"sync"
	"time"

	"github.com/sbagenthub/twilio-worker/twilioapi"
)

// Readiness checks: Redis is pinged on every probe; Twilio's verdict on the
// credentials is kept a while, so that probes every few seconds do not turn
// into requests to Twilio.
const (
	ReadyRedisTimeout    = time.Second
	ReadyTwilioTimeout   = 5 * time.Second
	CredentialsCacheOK   = 60 * time.Second // how long an accepted check counts
	CredentialsCacheFail = 10 * time.Second // a failed one is retried sooner
)

// readiness holds the cached credentials check.
type readiness struct {
	mu        sync.Mutex
	checkedAt time.Time
	err       error
	now       func() time.Time
}

// twilio checks the credentials at most once per cache period; concurrent
// probes wait for the one check in flight.
func (rd *readiness) twilio(ctx context.Context, tw *twilioapi.Client) error {
	rd.mu.Lock()
	defer rd.mu.Unlock()
	now := rd.now()
	ttl := CredentialsCacheOK
	if rd.err != nil {
		ttl = CredentialsCacheFail
	}
	if !rd.checkedAt.IsZero() && now.Sub(rd.checkedAt) < ttl {
		return rd.err
	}
	ctx, cancel := context.WithTimeout(ctx, ReadyTwilioTimeout)
	defer cancel()
	rd.err = tw.CheckCredentials(ctx)
	rd.checkedAt = rd.now()
	return rd.err
}

func (s *Server) routeReadiness(mux *http.ServeMux) {
	rd := &readiness{now: time.Now}
	mux.HandleFunc("GET /readyz", func(w http.ResponseWriter, r *http.Request) {
		checks := map[string]string{}
		ready := true
		fail := func(name, why string) { checks[name], ready = why, false }

		if s.Redis == nil {
			fail("redis", "not configured")
		} else {
			ctx, cancel := context.WithTimeout(r.Context(), ReadyRedisTimeout)
			err := s.Redis.Ping(ctx).Err()
			cancel()
			if err != nil {
				s.logger().Warn("readiness: redis", "err", err)
				fail("redis", "PING failed: Redis unreachable")
			} else {
				checks["redis"] = "ok"
			}
		}
		if s.Twilio == nil {
			fail("twilio", "not configured")
		} else if err := rd.twilio(r.Context(), s.Twilio); err != nil {
			fail("twilio", credentialsProblem(err))
		} else {
			checks["twilio"] = "ok"
		}

		if ready {
			writeJSON(w, http.StatusOK, map[string]any{"status": "ready", "checks": checks})
			return
		}
		writeJSON(w, http.StatusServiceUnavailable, map[string]any{"status": "not ready", "checks": checks})
	})
}

// credentialsProblem says why Twilio did not accept the credentials, with
// Twilio's code and (number-masked) message but never the credentials.
func credentialsProblem(err error) string {
	var tw *twilioapi.Error
	if errors.As(err, &tw) {
		if tw.Class.Permanent() {
			return "credentials refused: " + tw.Error()
		}
		return "Twilio unreachable: " + tw.Error()
	}
	return "Twilio unreachable"
}
