package httpapi

import (
	"crypto/sha256"
	"crypto/subtle"
	"fmt"
	"net/http"
	"runtime/debug"
	"strings"
)

// middleware wraps every route: panics become 500 JSON answers (logged with
// their stack, never shown), and /v1/* asks for the API token.
func (s *Server) middleware(next http.Handler) http.Handler {
	return http.HandlerFunc(func(w http.ResponseWriter, r *http.Request) {
		rw := &recordingWriter{ResponseWriter: w}
		defer func() {
			v := recover()
			if v == nil {
				return
			}
			if v == http.ErrAbortHandler {
				panic(v)
			}
			s.logger().Error("panic in HTTP handler", "method", r.Method, "path", r.URL.Path,
				"panic", fmt.Sprint(v), "stack", string(debug.Stack()))
			if !rw.wroteHeader {
				writeError(rw, http.StatusInternalServerError, "internal", "", "internal error; it has been logged")
			}
		}()
		if strings.HasPrefix(r.URL.Path, "/v1/") && !s.bearerOK(r) {
			w.Header().Set("WWW-Authenticate", `Bearer realm="twilio-worker"`)
			writeError(rw, http.StatusUnauthorized, "unauthorized", "Authorization",
				"missing or wrong API token; send Authorization: Bearer $API_TOKEN")
			return
		}
		next.ServeHTTP(rw, r)
	})
}

// bearerOK reports whether r carries APIToken; with no token set, /v1 is open
// (cmd/worker allows that only on a loopback address).
func (s *Server) bearerOK(r *http.Request) bool {
	if s.APIToken == "" {
		return true
	}
	scheme, token, ok := strings.Cut(r.Header.Get("Authorization"), " ")
	if !ok || !strings.EqualFold(scheme, "Bearer") {
		return false
	}
	return secretEqual(strings.TrimSpace(token), s.APIToken.Reveal())
}

// secretEqual compares in constant time, also hiding the secret's length.
func secretEqual(given, want string) bool {
	a, b := sha256.Sum256([]byte(given)), sha256.Sum256([]byte(want))
	return subtle.ConstantTimeCompare(a[:], b[:]) == 1
}

// recordingWriter remembers whether the header went out, so that the panic
// handler does not write a second one.
type recordingWriter struct {
	http.ResponseWriter
	wroteHeader bool
}

func (w *recordingWriter) WriteHeader(code int) {
	w.wroteHeader = true
	w.ResponseWriter.WriteHeader(code)
}

func (w *recordingWriter) Write(b []byte) (int, error) {
	w.wroteHeader = true
	return w.ResponseWriter.Write(b)
}

// Unwrap lets http.ResponseController reach the underlying writer.
func (w *recordingWriter) Unwrap() http.ResponseWriter { return w.ResponseWriter }
