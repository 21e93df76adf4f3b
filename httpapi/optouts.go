package httpapi

import (
	"net/http"

	"github.com/sbagenthub/twilio-worker/optout"
	"github.com/sbagenthub/twilio-worker/phone"
)

// optOutRoutes mounts GET/PUT/DELETE /v1/optouts/{number} (PUT opts out,
// DELETE opts back in) and the same for /v1/consents/{number} (marketing
// consent). ?channel=sms (default), voice or all.
func (s *Server) optOutRoutes(mux *http.ServeMux) {
	if s.OptOuts == nil {
		return
	}
	for _, kind := range []optout.Kind{optout.KindOptOut, optout.KindConsent} {
		base := "/v1/optouts/{number}"
		if kind == optout.KindConsent {
			base = "/v1/consents/{number}"
		}
		mux.HandleFunc("GET "+base, s.handleNumberState)
		mux.HandleFunc("PUT "+base, s.changeList(kind, true))
		mux.HandleFunc("DELETE "+base, s.changeList(kind, false))
	}
}

func (s *Server) numberAndChannels(w http.ResponseWriter, r *http.Request) (phone.Number, []optout.Channel, bool) {
	n, err := phone.Parse(r.PathValue("number"), s.Rules.DefaultRegion)
	if err != nil {
		writeError(w, http.StatusUnprocessableEntity, "invalid_number", "number", err.Error())
		return "", nil, false
	}
	chs, ok := optout.ParseChannels(r.URL.Query().Get("channel"))
	if !ok {
		writeError(w, http.StatusBadRequest, "invalid_channel", "channel", "channel must be sms, voice or all")
		return "", nil, false
	}
	return n, chs, true
}

func (s *Server) handleNumberState(w http.ResponseWriter, r *http.Request) {
	n, err := phone.Parse(r.PathValue("number"), s.Rules.DefaultRegion)
	if err != nil {
		writeError(w, http.StatusUnprocessableEntity, "invalid_number", "number", err.Error())
		return
	}
	st, err := s.OptOuts.State(r.Context(), n.String())
	if err == nil {
		st.History, err = s.OptOuts.History(r.Context(), n.String())
	}
	if err != nil {
		s.unavailable(w, err)
		return
	}
	writeJSON(w, http.StatusOK, st)
}

func (s *Server) changeList(kind optout.Kind, add bool) http.HandlerFunc {
	return func(w http.ResponseWriter, r *http.Request) {
		n, chs, ok := s.numberAndChannels(w, r)
		if !ok {
			return
		}
		var changed []string
		for _, ch := range chs {
			l := optout.List{Kind: kind, Channel: ch}
			var did bool
			var err error
			if add {
				did, err = s.OptOuts.Put(r.Context(), l, n.String(), optout.SourceAPI)
			} else {
				did, err = s.OptOuts.Delete(r.Context(), l, n.String(), optout.SourceAPI)
			}
			if err != nil {
				s.unavailable(w, err)
				return
			}
			if did {
				changed = append(changed, string(ch))
				if add && kind == optout.KindOptOut && ch == optout.SMS {
					s.cancelScheduledFor(r.Context(), s.logger().With("number", n), n.String())
				}
			}
		}
		s.logger().Info("opt-out list changed through the API", "number", n, "list", kind, "add", add, "changed", changed)
		st, err := s.OptOuts.State(r.Context(), n.String())
		if err != nil {
			s.unavailable(w, err)
			return
		}
		st.Changed = changed
		writeJSON(w, http.StatusOK, st)
	}
}

func (s *Server) unavailable(w http.ResponseWriter, err error) {
	s.logger().Error("opt-out store unavailable", "err", err)
	writeError(w, http.StatusServiceUnavailable, "unavailable", "", "the opt-out store is unavailable; try again")
}
