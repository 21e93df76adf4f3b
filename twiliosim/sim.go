package twiliosim

import (
	"bytes"
	"encoding/json"
	"errors"
	"fmt"
	"io"
	"mime"
	"net/http"
	"net/url"
	"strconv"
	"strings"
	"time"

	"github.com/sbagenthub/twilio-worker/segment"
)

func (s *Server) handleSimMessages(w http.ResponseWriter, r *http.Request) {
	to := normalizeNumber(r.URL.Query().Get("to"))
	out := []Message{}
	for _, m := range s.Messages() {
		if to == "" || m.To == to {
			out = append(out, m)
		}
	}
	writeJSON(w, http.StatusOK, out)
}

func (s *Server) handleSimCalls(w http.ResponseWriter, r *http.Request) {
	to := normalizeNumber(r.URL.Query().Get("to"))
	out := []Call{}
	for _, c := range s.Calls() {
		if to == "" || c.To == to {
			out = append(out, c)
		}
	}
	writeJSON(w, http.StatusOK, out)
}

func (s *Server) handleSimReset(w http.ResponseWriter, r *http.Request) {
	s.Reset()
	writeJSON(w, http.StatusOK, map[string]bool{"reset": true})
}

// knobsJSON is the wire form of Knobs for /sim/config: camelCase, durations
// as Go duration strings, latency as ParseLatency reads it.
type knobsJSON struct {
	Latency       string  `json:"latency"`
	ErrorRate     float64 `json:"errorRate"`
	MaxConcurrent int     `json:"maxConcurrent"`
	DropRate      float64 `json:"dropRate"`
	InboundURL    string  `json:"inboundUrl"`
	CallRing      string  `json:"callRing"`
	CallDuration  string  `json:"callDuration"`
	DeliveryDelay string  `json:"deliveryDelay"`
}

// knobsPatch is a POST /sim/config body: only the knobs given change.
type knobsPatch struct {
	Latency       *string  `json:"latency"`
	ErrorRate     *float64 `json:"errorRate"`
	MaxConcurrent *int     `json:"maxConcurrent"`
	DropRate      *float64 `json:"dropRate"`
	InboundURL    *string  `json:"inboundUrl"`
	CallRing      *string  `json:"callRing"`
	CallDuration  *string  `json:"callDuration"`
	DeliveryDelay *string  `json:"deliveryDelay"`
}

func toKnobsJSON(k Knobs) knobsJSON {
	return knobsJSON{
		Latency:       k.Latency.String(),
		ErrorRate:     k.ErrorRate,
		MaxConcurrent: k.MaxConcurrent,
		DropRate:      k.DropRate,
		InboundURL:    k.InboundURL,
		CallRing:      k.CallRing.String(),
		CallDuration:  k.CallDuration.String(),
		DeliveryDelay: k.DeliveryDelay.String(),
	}
}

// apply changes k by p, naming the first bad field.
func (p knobsPatch) apply(k *Knobs) error {
	if p.Latency != nil {
		l, err := ParseLatency(*p.Latency)
		if err != nil {
			return fmt.Errorf("latency: %w", err)
		}
		k.Latency = l
	}
	if p.ErrorRate != nil {
		k.ErrorRate = *p.ErrorRate
	}
	if p.MaxConcurrent != nil {
		k.MaxConcurrent = *p.MaxConcurrent
	}
	if p.DropRate != nil {
		k.DropRate = *p.DropRate
	}
	if p.InboundURL != nil {
		k.InboundURL = strings.TrimSpace(*p.InboundURL)
	}
	for _, d := range []struct {
		name string
		v    *string
		dst  *time.Duration
	}{{"callRing", p.CallRing, &k.CallRing}, {"callDuration", p.CallDuration, &k.CallDuration}, {"deliveryDelay", p.DeliveryDelay, &k.DeliveryDelay}} {
		if d.v == nil {
			continue
		}
		v, err := time.ParseDuration(strings.TrimSpace(*d.v))
		if err != nil {
			return fmt.Errorf("%s %q: want a duration like 500ms or 2s", d.name, *d.v)
		}
		*d.dst = v
	}
	return nil
}

func (s *Server) handleSimConfig(w http.ResponseWriter, r *http.Request) {
	if r.Method == http.MethodPost {
		var p knobsPatch
		dec := json.NewDecoder(http.MaxBytesReader(w, r.Body, MaxRequestBytes))
		dec.DisallowUnknownFields()
		if err := dec.Decode(&p); err != nil {
			writeJSON(w, http.StatusBadRequest, simError("bad config JSON: "+err.Error()))
			return
		}
		var applyErr error
		err := s.UpdateKnobs(func(k *Knobs) { applyErr = p.apply(k) })
		if applyErr != nil {
			err = applyErr
		}
		if err != nil {
			writeJSON(w, http.StatusBadRequest, simError("bad config: "+err.Error()))
			return
		}
		s.log.Info("simulator knobs changed", "knobs", toKnobsJSON(s.Knobs()))
	}
	writeJSON(w, http.StatusOK, toKnobsJSON(s.Knobs()))
}

// handleSimClock shows the simulator's clock (GET) or moves it on (POST
// {"advance":"20m"}), sending the scheduled messages whose time it passes.
func (s *Server) handleSimClock(w http.ResponseWriter, r *http.Request) {
	now := s.Now()
	if r.Method == http.MethodPost {
		var body struct {
			Advance string `json:"advance"`
		}
		dec := json.NewDecoder(http.MaxBytesReader(w, r.Body, MaxRequestBytes))
		dec.DisallowUnknownFields()
		if err := dec.Decode(&body); err != nil {
			writeJSON(w, http.StatusBadRequest, simError("bad clock JSON: "+err.Error()))
			return
		}
		d, err := time.ParseDuration(strings.TrimSpace(body.Advance))
		if err != nil || d < 0 {
			writeJSON(w, http.StatusBadRequest, simError(fmt.Sprintf("advance %q: want a positive duration like 20m", body.Advance)))
			return
		}
		now = s.Advance(d)
	}
	writeJSON(w, http.StatusOK, map[string]string{"now": now.Format(time.RFC3339Nano)})
}

func simError(msg string) map[string]string { return map[string]string{"error": msg} }

// inboundRequest is a POST /sim/inbound body.
type inboundRequest struct {
	From                string `json:"from"`
	To                  string `json:"to"`
	Body                string `json:"body"`
	OptOutType          string `json:"optOutType"`
	MessagingServiceSid string `json:"messagingServiceSid"`
}

// Keywords Twilio's Advanced Opt-Out recognises by default; the whole body,
// trimmed and case-insensitive, must be the keyword.
var optOutKeywords = map[string]string{
	"STOP": "STOP", "STOPALL": "STOP", "UNSUBSCRIBE": "STOP", "CANCEL": "STOP",
	"END": "STOP", "QUIT": "STOP", "REVOKE": "STOP", "OPTOUT": "STOP",
	"START": "START", "YES": "START", "UNSTOP": "START",
	"HELP": "HELP", "INFO": "HELP",
}

// OptOutType returns the OptOutType Twilio adds to an inbound message with
// body: STOP, START or HELP, or "" when the body is not a keyword.
func OptOutType(body string) string {
	return optOutKeywords[strings.ToUpper(strings.TrimSpace(body))]
}

// inboundTimeout bounds the inbound webhook POST.
const inboundTimeout = 10 * time.Second

func (s *Server) handleSimInbound(w http.ResponseWriter, r *http.Request) {
	var in inboundRequest
	r.Body = http.MaxBytesReader(w, r.Body, MaxRequestBytes)
	ct, _, _ := mime.ParseMediaType(r.Header.Get("Content-Type"))
	if ct == "application/x-www-form-urlencoded" || ct == "multipart/form-data" {
		if err := r.ParseForm(); err != nil {
			writeJSON(w, http.StatusBadRequest, simError("bad form: "+err.Error()))
			return
		}
		get := func(k string) string {
			if v := r.Form.Get(k); v != "" {
				return v
			}
			return r.Form.Get(strings.ToLower(k[:1]) + k[1:])
		}
		in = inboundRequest{From: get("From"), To: get("To"), Body: get("Body"), OptOutType: get("OptOutType"), MessagingServiceSid: get("MessagingServiceSid")}
	} else if err := json.NewDecoder(r.Body).Decode(&in); err != nil {
		writeJSON(w, http.StatusBadRequest, simError("bad inbound JSON: "+err.Error()))
		return
	}
	in.From, in.To = normalizeNumber(in.From), normalizeNumber(in.To)
	if in.From == "" || in.To == "" {
		writeJSON(w, http.StatusBadRequest, simError("inbound message needs from and to"))
		return
	}
	target := s.Knobs().InboundURL
	if target == "" {
		writeJSON(w, http.StatusBadGateway, simError("no inbound URL configured (--inbound-url or POST /sim/config inboundUrl)"))
		return
	}
	sid := newSID("SM")
	params := url.Values{
		"AccountSid":    {s.accountSID},
		"ApiVersion":    {APIVersion},
		"Body":          {in.Body},
		"From":          {in.From},
		"MessageSid":    {sid},
		"NumMedia":      {"0"},
		"NumSegments":   {strconv.Itoa(max(segment.Count(in.Body), 1))},
		"SmsMessageSid": {sid},
		"SmsSid":        {sid},
		"SmsStatus":     {"received"},
		"To":            {in.To},
	}
	if in.MessagingServiceSid != "" {
		params.Set("MessagingServiceSid", in.MessagingServiceSid)
	}
	optOut := strings.ToUpper(strings.TrimSpace(in.OptOutType))
	if optOut == "" {
		optOut = OptOutType(in.Body)
	}
	if optOut != "" {
		params.Set("OptOutType", optOut)
	}

	req, err := signedRequest(r.Context(), s.authToken, http.MethodPost, target, params)
	if err != nil {
		writeJSON(w, http.StatusBadGateway, simError("inbound webhook: "+err.Error()))
		return
	}
	client := &http.Client{Timeout: inboundTimeout}
	resp, err := client.Do(req)
	if err != nil {
		var msg string
		if errors.Is(err, r.Context().Err()) {
			msg = "inbound webhook canceled"
		} else {
			msg = "inbound webhook: " + err.Error()
		}
		writeJSON(w, http.StatusBadGateway, simError(msg))
		return
	}
	defer resp.Body.Close()
	var body bytes.Buffer
	io.Copy(&body, io.LimitReader(resp.Body, 64<<10))
	s.log.Info("inbound webhook delivered", "url", target, "status", resp.StatusCode, "messageSid", sid)
	writeJSON(w, http.StatusOK, map[string]any{"status": resp.StatusCode, "body": body.String(), "messageSid": sid})
}
