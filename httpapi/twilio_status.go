package httpapi

import (
	"errors"
	"net/http"
	"strconv"
	"time"

	"github.com/sbagenthub/twilio-worker/calls"
	"github.com/sbagenthub/twilio-worker/delivery"
)

// twilioStatus takes Twilio's status callbacks (signature checked by
// VerifyWebhook). A call event is merged into the call's record: duplicates
// and events out of order change nothing, and a terminal status recorded here
// ends the call's polling at its next run without a fetch. Message callbacks
// move the message's delivery record forward the same way; the one that
// makes it final settles it (logs the outcome, redelivers after a transient
// carrier failure).
func (s *Server) twilioStatus(w http.ResponseWriter, r *http.Request) {
	f := r.PostForm
	if sid := f.Get("CallSid"); sid != "" && s.Calls != nil {
		u := calls.Update{Status: f.Get("CallStatus"), At: time.Now(), Source: "callback", AnsweredBy: f.Get("AnsweredBy")}
		if d, err := strconv.Atoi(f.Get("CallDuration")); err == nil {
			u.Duration = d
		}
		rec, became, err := s.Calls.Apply(r.Context(), sid, u)
		switch {
		case errors.Is(err, calls.ErrNotFound):
			// Not one of ours (or its record expired): nothing to do.
		case err != nil:
			s.logger().Warn("call status callback not recorded", "sid", sid, "err", err)
			http.Error(w, "try again", http.StatusServiceUnavailable) // Twilio retries
			return
		case became:
			s.Metrics.Call(rec.Status)
			s.logger().Info("call ended (status callback)", "sid", sid, "status", rec.Status)
		}
	}
	if sid := f.Get("MessageSid"); sid != "" && f.Get("CallSid") == "" && s.Tracker != nil {
		status := f.Get("MessageStatus")
		if status == "" {
			status = f.Get("SmsStatus")
		}
		code, _ := strconv.Atoi(f.Get("ErrorCode"))
		rec, _, err := s.Tracker.Store.Apply(r.Context(), sid, status, code, time.Now())
		switch {
		case errors.Is(err, delivery.ErrNotFound):
			// Not one of ours (or its record expired), with a status that
			// records nothing: a 503 would have Twilio retry it for nothing.
		case err != nil:
			s.logger().Warn("message status callback not recorded", "sid", sid, "err", err)
			http.Error(w, "try again", http.StatusServiceUnavailable)
			return
		default:
			if err := s.Tracker.SettleIfFinal(r.Context(), rec); err != nil {
				s.logger().Warn("message outcome not settled", "sid", sid, "err", err)
				http.Error(w, "try again", http.StatusServiceUnavailable)
				return
			}
		}
	}
	w.Header().Set("Content-Type", "text/xml")
	_, _ = w.Write([]byte(`<?xml version="1.0" encoding="UTF-8"?><Response/>`))
}
