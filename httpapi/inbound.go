package httpapi

import (
	"context"
	"encoding/xml"
	"net/http"
	"net/url"
	"strings"
	"time"

	"github.com/redis/go-redis/v9"

	"github.com/sbagenthub/twilio-worker/optout"
	"github.com/sbagenthub/twilio-worker/phone"
	"github.com/sbagenthub/twilio-worker/twilioapi"
)

// HelpTextDefault answers HELP and INFO when HELP_TEXT is not set.
const HelpTextDefault = "SB Agent Hub notifications. Msg & data rates may apply. Reply STOP to unsubscribe, START to resubscribe."

// InboundKey is the Redis stream of inbound messages, capped at about InboundMax entries.
const (
	InboundKey = "tw:inbound"
	InboundMax = 10000
)

// What an inbound message asks for.
const (
	keywordNone  = ""
	keywordStop  = "STOP"
	keywordStart = "START"
	keywordHelp  = "HELP"
)

// keywords are matched against the whole body, trimmed, in any case.
var keywords = map[string]string{
	"STOP": keywordStop, "STOPALL": keywordStop, "UNSUBSCRIBE": keywordStop, "CANCEL": keywordStop,
	"END": keywordStop, "QUIT": keywordStop, "REVOKE": keywordStop, "OPTOUT": keywordStop,
	"START": keywordStart, "UNSTOP": keywordStart, "YES": keywordStart,
	"HELP": keywordHelp, "INFO": keywordHelp,
}

// Keyword returns what an inbound message asks for: STOP, START, HELP or "".
// Twilio's OptOutType (sent by Advanced Opt-Out, which may know custom
// keywords) wins over the body.
func Keyword(body, optOutType string) string {
	switch t := strings.ToUpper(strings.TrimSpace(optOutType)); t {
	case keywordStop, keywordStart, keywordHelp:
		return t
	}
	return keywords[strings.ToUpper(strings.TrimSpace(body))]
}

// inboundRoutes mounts POST /twilio/inbound, behind the signature check:
// without PUBLIC_URL nothing can be verified and every request gets 403.
func (s *Server) inboundRoutes(mux *http.ServeMux) {
	if s.OptOuts == nil {
		return
	}
	mux.Handle("POST /twilio/inbound", twilioapi.VerifyWebhook(s.AuthToken, s.PublicURL, http.HandlerFunc(s.handleInbound)))
}

// handleInbound answers Twilio's inbound-SMS webhook. STOP and its synonyms
// opt the sender out of SMS (STOPALL out of voice calls too) and withdraw
// its marketing consent; START, UNSTOP and YES opt it back in to SMS; HELP
// and INFO get HELP_TEXT back. Every message is recorded in tw:inbound.
func (s *Server) handleInbound(w http.ResponseWriter, r *http.Request) {
	ctx := r.Context()
	form := r.PostForm
	kw := Keyword(form.Get("Body"), form.Get("OptOutType"))
	log := s.logger().With("messageSid", form.Get("MessageSid"), "keyword", kw)
	from, err := phone.Parse(form.Get("From"), "")
	if err != nil {
		log.Warn("inbound sms from an unparseable sender", "from", phone.Mask(form.Get("From")), "err", err)
	} else {
		log = log.With("from", from)
	}
	s.recordInbound(ctx, form, from, kw)

	reply := ""
	switch {
	case kw == keywordHelp:
		reply = s.helpText()
	case err != nil:
	case kw == keywordStop:
		channels := []optout.Channel{optout.SMS}
		if strings.EqualFold(strings.TrimSpace(form.Get("Body")), "STOPALL") {
			channels = append(channels, optout.Voice)
		}
		for _, ch := range channels {
			if _, err := s.OptOuts.Add(ctx, ch, from.String(), optout.SourceKeyword); err != nil {
				log.Error("could not record an opt-out", "channel", ch, "err", err)
				http.Error(w, "could not record the opt-out", http.StatusServiceUnavailable)
				return
			}
		}
		s.cancelScheduledFor(ctx, log, from.String())
		// STOP also withdraws marketing consent, recorded only when there was one.
		if had, err := s.OptOuts.HasConsent(ctx, optout.SMS, from.String()); err != nil || had {
			if _, err := s.OptOuts.RemoveConsent(ctx, optout.SMS, from.String(), optout.SourceKeyword); err != nil {
				log.Error("could not withdraw marketing consent", "err", err)
			}
		}
		log.Info("recipient opted out by keyword", "channels", channels)
	case kw == keywordStart:
		if _, err := s.OptOuts.Remove(ctx, optout.SMS, from.String(), optout.SourceKeyword); err != nil {
			log.Error("could not record an opt-in", "err", err)
			http.Error(w, "could not record the opt-in", http.StatusServiceUnavailable)
			return
		}
		log.Info("recipient opted back in by keyword")
	default:
		log.Info("inbound sms recorded")
	}
	writeTwiML(w, reply)
}

func (s *Server) helpText() string {
	if t := strings.TrimSpace(s.HelpText); t != "" {
		return t
	}
	return HelpTextDefault
}

// recordInbound appends the message to tw:inbound. A failure is logged, not
// fatal: the opt-out matters more than the record.
func (s *Server) recordInbound(ctx context.Context, form url.Values, from phone.Number, kw string) {
	if s.Redis == nil {
		return
	}
	sender := from.String()
	if sender == "" {
		sender = form.Get("From")
	}
	err := s.Redis.XAdd(ctx, &redis.XAddArgs{
		Stream: InboundKey, MaxLen: InboundMax, Approx: true,
		Values: []any{"sid", form.Get("MessageSid"), "from", sender, "to", form.Get("To"), "body", form.Get("Body"),
			"keyword", kw, "at", time.Now().UTC().Format(time.RFC3339Nano)},
	}).Err()
	if err != nil {
		s.logger().Warn("could not record an inbound sms", "err", err)
	}
}

// writeTwiML answers with <Response/>, or with one <Message> when reply is set.
func writeTwiML(w http.ResponseWriter, reply string) {
	w.Header().Set("Content-Type", "text/xml; charset=utf-8")
	var b strings.Builder
	b.WriteString(xml.Header)
	if reply == "" {
		b.WriteString("<Response/>")
	} else {
		b.WriteString("<Response><Message>")
		_ = xml.EscapeText(&b, []byte(reply))
		b.WriteString("</Message></Response>")
	}
	_, _ = w.Write([]byte(b.String()))
}
