package httpapi

import (
	"errors"
	"net/http"

	"github.com/sbagenthub/twilio-worker/fraud"
	"github.com/sbagenthub/twilio-worker/producer"
)

// routeFraud mounts the fraud guard's controls:
//
//	GET    /v1/fraud/blocks            the blocked prefixes, with until when and why
//	DELETE /v1/fraud/blocks/{prefix}   lift a block (404 when none)
//	GET    /v1/fraud/safe              the safe list
//	PUT    /v1/fraud/safe/{entry}      add a number or prefix (never blocked)
//	DELETE /v1/fraud/safe/{entry}      remove one
func (s *Server) routeFraud(mux *http.ServeMux) {
	if s.Guard == nil {
		return
	}
	mux.HandleFunc("GET /v1/fraud/blocks", func(w http.ResponseWriter, r *http.Request) {
		blocks, err := s.Guard.Blocks(r.Context())
		if err != nil {
			s.unavailable(w, err)
			return
		}
		writeJSON(w, http.StatusOK, map[string]any{"blocks": blocks, "count": len(blocks)})
	})
	mux.HandleFunc("DELETE /v1/fraud/blocks/{prefix}", func(w http.ResponseWriter, r *http.Request) {
		p, err := s.Guard.Unblock(r.Context(), r.PathValue("prefix"), "api")
		switch {
		case p == "" && err != nil:
			writeError(w, http.StatusUnprocessableEntity, producer.CodeInvalidField, "prefix", err.Error())
		case errors.Is(err, fraud.ErrNotBlocked):
			writeError(w, http.StatusNotFound, "not_found", "prefix", "prefix "+p+" is not blocked")
		case err != nil:
			s.unavailable(w, err)
		default:
			writeJSON(w, http.StatusOK, map[string]any{"prefix": p, "unblocked": true})
		}
	})
	mux.HandleFunc("GET /v1/fraud/safe", func(w http.ResponseWriter, r *http.Request) {
		l, err := s.Guard.SafeList(r.Context())
		if err != nil {
			s.unavailable(w, err)
			return
		}
		writeJSON(w, http.StatusOK, map[string]any{"safe": l, "count": len(l)})
	})
	for _, add := range []bool{true, false} {
		method, op, key := "DELETE", s.Guard.SafeRemove, "removed"
		if add {
			method, op, key = "PUT", s.Guard.SafeAdd, "added"
		}
		mux.HandleFunc(method+" /v1/fraud/safe/{entry}", func(w http.ResponseWriter, r *http.Request) {
			p, changed, err := op(r.Context(), r.PathValue("entry"))
			switch {
			case p == "" && err != nil:
				writeError(w, http.StatusUnprocessableEntity, producer.CodeInvalidField, "entry", "entry: "+err.Error())
			case err != nil:
				s.unavailable(w, err)
			default:
				writeJSON(w, http.StatusOK, map[string]any{"entry": p, key: changed})
			}
		})
	}
}
