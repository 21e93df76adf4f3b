package httpapi

import (
	"context"
	"errors"
	"net/http"
	"strconv"
	"time"

	"github.com/sbagenthub/twilio-worker/calls"
	"github.com/sbagenthub/twilio-worker/delivery"
	"github.com/sbagenthub/twilio-worker/tasks"
	"github.com/sbagenthub/twilio-worker/twilioapi"
)

// twilioStatus takes Twilio's status callbacks (signature checked by
// VerifyWebhook). A call event is merged into the call's record: duplicates
// and events out of order change nothing, and a terminal status recorded here
// ends the call's polling at its next run without a fetch. Message callbacks
// move the message's delivery record forward the same way; the one that
// makes it final settles it (logs the outcome, redelivers after a transient
// carrier failure).
//
// Only what we track is recorded. A callback for a SID without a record is
// kept only when its URL names a task (tasks.StatusCallbackFor) whose send
// ledger shows that SID or an attempt still waiting for Twilio's answer:
// then it came before the record (a lost or slow answer) and is merged when
// the record is made. Anything else, and any malformed SID, is answered 200
// and changes nothing.
func (s *Server) twilioStatus(w http.ResponseWriter, r *http.Request) {
	f := r.PostForm
	task := r.URL.Query().Get(tasks.CallbackTaskParam)
	if sid := f.Get("CallSid"); sid != "" && twilioapi.ValidCallSID(sid) && s.Calls != nil {
		u := callUpdate(f.Get("CallStatus"), f.Get("CallDuration"), f.Get("Timestamp"), f.Get("AnsweredBy"))
		rec, became, err := s.Calls.Apply(r.Context(), sid, u)
		if errors.Is(err, calls.ErrNotFound) {
			rec, became, err = nil, false, nil
			if s.ours(r.Context(), task, f.Get("To"), sid) {
				rec, became, err = s.Calls.Early(r.Context(), sid, u)
			}
		}
		switch {
		case err != nil:
			s.logger().Warn("call status callback not recorded", "sid", sid, "err", err)
			http.Error(w, "try again", http.StatusServiceUnavailable) // Twilio retries
			return
		case became:
			s.Metrics.Call(rec.Status)
			s.logger().Info("call ended (status callback)", "sid", sid, "status", rec.Status)
		}
	}
	if sid := f.Get("MessageSid"); sid != "" && f.Get("CallSid") == "" && twilioapi.ValidMessageSID(sid) && s.Tracker != nil {
		status := f.Get("MessageStatus")
		if status == "" {
			status = f.Get("SmsStatus")
		}
		code, _ := strconv.Atoi(f.Get("ErrorCode"))
		rec, _, err := s.Tracker.Store.Apply(r.Context(), sid, status, code, time.Now())
		if errors.Is(err, delivery.ErrNotFound) && s.ours(r.Context(), task, f.Get("To"), sid) {
			rec, _, err = s.Tracker.Store.ApplyEarly(r.Context(), sid, status, code, time.Now())
		}
		switch {
		case errors.Is(err, delivery.ErrNotFound):
			// Not one of ours (or its record expired): a 503 would have
			// Twilio retry it for nothing.
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

// ours reports whether sid, which has no record yet, belongs to task (sent
// to to, the callback's To: the ledger's hash tag): the
// task's send ledger holds that SID, or an attempt whose answer is not in.
func (s *Server) ours(ctx context.Context, task, to, sid string) bool {
	if task == "" || s.Ledger == nil {
		return false
	}
	e, err := s.Ledger.Get(ctx, task, to)
	if err != nil {
		return false
	}
	return e.SID == sid || e.Pending()
}

// callUpdate reads a call progress callback. Twilio sends no start or end
// time, but the event's Timestamp: an answered call started then, an ended
// one ended then and started CallDuration seconds before.
func callUpdate(status, duration, timestamp, answeredBy string) calls.Update {
	u := calls.Update{Status: status, At: time.Now(), Source: "callback", AnsweredBy: answeredBy}
	if d, err := strconv.Atoi(duration); err == nil && d >= 0 {
		u.Duration = d
	}
	at, err := time.Parse(time.RFC1123Z, timestamp)
	if err != nil {
		at = u.At
	}
	switch {
	case status == "in-progress":
		u.StartTime = at
	case calls.Terminal(status):
		u.EndTime = at
		if u.Duration > 0 {
			u.StartTime = at.Add(-time.Duration(u.Duration) * time.Second)
		}
	}
	return u
}
