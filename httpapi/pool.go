package httpapi

import (
	"net/http"

	"github.com/sbagenthub/twilio-worker/phone"
)

// poolRoutes mounts GET /v1/pool (each number's rate, next free slot and
// whether, and why not, it is in rotation) and DELETE /v1/pool/out/{number}
// (put a number back in rotation). Without a pool both answer 404.
func (s *Server) poolRoutes(mux *http.ServeMux) {
	mux.HandleFunc("GET /v1/pool", s.getPool)
	mux.HandleFunc("DELETE /v1/pool/out/{number}", s.restorePoolNumber)
}

func (s *Server) noPool(w http.ResponseWriter) bool {
	if s.Pool == nil {
		writeError(w, http.StatusNotFound, "no_pool", "", "no sender pool is configured (SENDER_POOL)")
		return true
	}
	return false
}

func (s *Server) getPool(w http.ResponseWriter, r *http.Request) {
	if s.noPool(w) {
		return
	}
	st, err := s.Pool.Status(r.Context())
	if err != nil {
		s.unavailable(w, err)
		return
	}
	writeJSON(w, http.StatusOK, st)
}

func (s *Server) restorePoolNumber(w http.ResponseWriter, r *http.Request) {
	if s.noPool(w) {
		return
	}
	n, err := phone.Parse(r.PathValue("number"), s.Rules.DefaultRegion)
	if err != nil {
		writeError(w, http.StatusUnprocessableEntity, "invalid_number", "number", err.Error())
		return
	}
	if !s.Pool.Has(n.String()) {
		writeError(w, http.StatusNotFound, "not_in_pool", "number", "the number is not one of the sender pool's")
		return
	}
	was, err := s.Pool.Restore(r.Context(), n.String())
	if err != nil {
		s.unavailable(w, err)
		return
	}
	s.logger().Info("sender pool: number restored to rotation", "number", n, "wasOut", was)
	writeJSON(w, http.StatusOK, map[string]any{"number": n.String(), "restored": was, "inRotation": true})
}
