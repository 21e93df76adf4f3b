package httpapi

import (
	"context"
	"log/slog"
	"time"

	"github.com/sbagenthub/twilio-worker/commlog"
	"github.com/sbagenthub/twilio-worker/tasks"
)

// cancelScheduledFor cancels at Twilio the messages it holds as scheduled
// for number, which has just opted out of SMS (a STOP, PUT /v1/optouts).
// The opt-out stands whatever happens here; a failure is logged.
func (s *Server) cancelScheduledFor(ctx context.Context, log *slog.Logger, number string) {
	if s.Twilio == nil || s.Redis == nil || !s.Twilio.Schedules() {
		return
	}
	canceled, err := tasks.CancelScheduledFor(ctx, s.Redis, s.Twilio, number, time.Now())
	comms := s.producer().Comms
	for _, m := range canceled {
		log.Info("scheduled sms canceled at Twilio: recipient opted out", "sid", m.SID, "task", m.TaskID)
		if comms == nil {
			continue
		}
		e := commlog.Entry{Event: commlog.Skipped, Channel: "sms", TaskID: m.TaskID, To: number, SID: m.SID,
			Reason: "canceled at Twilio before its sendAt: recipient opted out"}
		if err := comms.Append(ctx, e); err != nil {
			log.Warn("communications log append failed", "err", err)
		}
	}
	if err != nil {
		log.Warn("could not cancel every scheduled sms of a recipient who opted out", "err", err)
	}
}
