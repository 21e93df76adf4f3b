package twiliosim

import (
	"math/rand/v2"
	"net/http"
	"net/url"
	"regexp"
	"strconv"
	"strings"
	"time"

	"github.com/sbagenthub/twilio-worker/segment"
)

// Message is the simulator's record of an outbound message, as GET
// /sim/messages shows it and Messages returns it.
type Message struct {
	Sid                 string     `json:"sid"`
	To                  string     `json:"to"`
	From                string     `json:"from"` // empty while a Messaging Service send is accepted
	Body                string     `json:"body"`
	Status              string     `json:"status"`
	ErrorCode           *int       `json:"errorCode"`
	ErrorMessage        string     `json:"errorMessage,omitempty"`
	NumSegments         int        `json:"numSegments"`
	Encoding            string     `json:"encoding"`
	MessagingServiceSid string     `json:"messagingServiceSid"`
	ValidityPeriod      int        `json:"validityPeriod"` // seconds; 0 when not given
	StatusCallback      string     `json:"statusCallback"`
	MediaURLs           []string   `json:"mediaUrls"`
	CreatedAt           time.Time  `json:"createdAt"`
	UpdatedAt           time.Time  `json:"updatedAt"`
	SentAt              *time.Time `json:"sentAt"`
	// SendAt is when a scheduled message (ScheduleType=fixed) is sent; nil
	// for a message sent at once.
	SendAt       *time.Time `json:"sendAt"`
	ScheduleType string     `json:"scheduleType,omitempty"`
}

// message is the stored record: the public view plus what drives it.
type message struct {
	Message
	finalStatus string // delivered, undelivered or failed
	finalCode   int
	dead        bool // reset or evicted: stop advancing
}

// Validity periods Twilio accepts, in seconds.
const (
	validityMin = 1
	validityMax = 36000
)

var (
	alphaSender = regexp.MustCompile(`^[A-Za-z0-9 ]{1,11}$`)
	shortCode   = regexp.MustCompile(`^\d{3,8}$`)
)

// normalizeNumber trims s and restores a leading '+' that an unencoded form
// turned into a space.
func normalizeNumber(s string) string {
	if strings.HasPrefix(s, " ") {
		if t := strings.TrimSpace(s); t != "" && t[0] >= '1' && t[0] <= '9' {
			return "+" + t
		}
	}
	return strings.TrimSpace(s)
}

func validSender(from string) bool {
	if validNumber(from) || shortCode.MatchString(from) {
		return true
	}
	return alphaSender.MatchString(from) && strings.ContainsFunc(from, func(r rune) bool {
		return r >= 'A' && r <= 'Z' || r >= 'a' && r <= 'z'
	})
}

// messageRequest is the validated form of POST Messages.json.
type messageRequest struct {
	to, from, body, serviceSID, statusCallback string
	validity                                   int
	media                                      []string
	sendAt                                     time.Time // zero unless ScheduleType=fixed
}

// Scheduling limits (ScheduleType=fixed): SendAt between 15 minutes and 35
// days after the request, inclusive, as Twilio's error 35114 states.
const (
	ScheduleMin = 900 * time.Second
	ScheduleMax = 35 * 24 * time.Hour
)

// parseMessageRequest validates a create-message form in Twilio's order.
// now is the simulator's clock, against which SendAt is checked.
func parseMessageRequest(form url.Values, now time.Time) (messageRequest, *apiError) {
	req := messageRequest{
		to:             normalizeNumber(form.Get("To")),
		from:           normalizeNumber(form.Get("From")),
		body:           form.Get("Body"),
		serviceSID:     strings.TrimSpace(form.Get("MessagingServiceSid")),
		statusCallback: strings.TrimSpace(form.Get("StatusCallback")),
	}
	for _, m := range form["MediaUrl"] {
		if m = strings.TrimSpace(m); m != "" {
			req.media = append(req.media, m)
		}
	}
	switch {
	case req.to == "":
		return req, badRequest(21604, "A 'To' phone number is required.")
	case !validNumber(req.to):
		return req, badRequest(21211, "Invalid 'To' Phone Number: %s", req.to)
	case req.from == "" && req.serviceSID == "":
		return req, badRequest(21603, "A 'From' phone number is required.")
	case req.from != "" && !validSender(req.from):
		return req, badRequest(21212, "The 'From' number %s is not a valid phone number, shortcode, or alphanumeric sender ID.", req.from)
	case req.from == "" && !validSID(req.serviceSID, "MG"):
		return req, badRequest(21701, "The Messaging Service Sid %s is invalid.", req.serviceSID)
	case req.body == "" && len(req.media) == 0:
		return req, badRequest(21602, "Message body is required.")
	case segment.Analyze(req.body).Chars > segment.MaxChars:
		return req, badRequest(21617, "The concatenated message body exceeds the %d character limit.", segment.MaxChars)
	}
	for _, m := range req.media {
		if checkHTTPURL(m) != nil {
			return req, badRequest(21620, "Invalid media URL(s): %s", m)
		}
	}
	if req.statusCallback != "" && checkHTTPURL(req.statusCallback) != nil {
		return req, badRequest(21609, "The StatusCallback URL %s is not a valid URL.", req.statusCallback)
	}
	if v := strings.TrimSpace(form.Get("ValidityPeriod")); v != "" {
		n, err := strconv.Atoi(v)
		if err != nil || n < validityMin || n > validityMax {
			return req, badRequest(21100, "ValidityPeriod %q must be an integer between %d and %d.", v, validityMin, validityMax)
		}
		req.validity = n
	}
	if e := parseSchedule(form, &req, now); e != nil {
		return req, e
	}
	if e := messageMagic(req.from, req.to); e != nil {
		return req, e
	}
	return req, nil
}

// parseSchedule reads ScheduleType and SendAt into req.sendAt with
// Twilio's codes. A SendAt without ScheduleType is ignored, as on Twilio
// (the message is sent at once).
func parseSchedule(form url.Values, req *messageRequest, now time.Time) *apiError {
	typ := strings.TrimSpace(form.Get("ScheduleType"))
	if typ == "" {
		return nil
	}
	if typ != "fixed" {
		return badRequest(35126, "The ScheduleType value provided is not supported for this channel: want 'fixed'.")
	}
	v := strings.TrimSpace(form.Get("SendAt"))
	if v == "" {
		return badRequest(35111, "You must indicate SendAt timestamp if ScheduleType is 'fixed'.")
	}
	if req.serviceSID == "" {
		return badRequest(35118, "MessagingServiceSid is required to schedule a message.")
	}
	at, err := time.Parse(time.RFC3339, v)
	if err != nil || at.Sub(now) < ScheduleMin || at.Sub(now) > ScheduleMax {
		return badRequest(35114, "SendAt time must be between 900 seconds and 35 days (3024000 seconds) in the future, inclusive.")
	}
	req.sendAt = at.UTC()
	return nil
}

func (s *Server) createMessage(w http.ResponseWriter, r *http.Request) {
	if !parseForm(w, r) {
		return
	}
	req, apiErr := parseMessageRequest(r.Form, s.Now())
	if apiErr != nil {
		writeTwilioError(w, apiErr)
		return
	}
	k := s.Knobs()
	now := time.Now().UTC()
	info := segment.Analyze(req.body)
	m := &message{Message: Message{
		Sid:                 newSID("SM"),
		To:                  req.to,
		From:                req.from,
		Body:                req.body,
		Status:              "queued",
		NumSegments:         info.Segments,
		Encoding:            string(info.Encoding),
		MessagingServiceSid: req.serviceSID,
		ValidityPeriod:      req.validity,
		StatusCallback:      req.statusCallback,
		MediaURLs:           req.media,
		CreatedAt:           now,
		UpdatedAt:           now,
	}}
	if req.from == "" {
		m.Status = "accepted"
	}
	if !req.sendAt.IsZero() {
		at := req.sendAt
		m.Status, m.SendAt, m.ScheduleType = "scheduled", &at, "fixed"
	}
	if m.NumSegments == 0 && len(m.MediaURLs) > 0 {
		m.NumSegments = 1
	}

	s.mu.Lock()
	m.finalStatus, m.finalCode = s.messageOutcome(req.to)
	if old := s.messages.add(m.Sid, m, s.maxRecords); old != nil {
		old.dead = true
	}
	view := s.messageJSON(m)
	s.mu.Unlock()

	if m.SendAt != nil {
		s.sched.after(m.SendAt.Sub(s.Now()), func() { s.releaseScheduled(m) })
	} else {
		s.sched.after(k.DeliveryDelay, func() { s.advanceMessage(m) })
	}
	s.log.Debug("message created", "sid", view.Sid, "status", view.Status)

	if k.DropRate > 0 && rand.Float64() < k.DropRate {
		drop(w)
		return
	}
	writeJSON(w, http.StatusCreated, view)
}

// releaseScheduled sends a scheduled message once its SendAt has come on
// the simulator's clock: it is queued, then advances as any other. A
// message canceled meanwhile, or released already, stays as it is.
func (s *Server) releaseScheduled(m *message) {
	s.mu.Lock()
	if m.dead || m.Status != "scheduled" {
		s.mu.Unlock()
		return
	}
	if wait := m.SendAt.Sub(s.Now()); wait > 0 { // the timer fired early
		s.mu.Unlock()
		s.sched.after(wait, func() { s.releaseScheduled(m) })
		return
	}
	m.Status, m.From, m.UpdatedAt = "queued", s.defaultFrom, time.Now().UTC()
	s.mu.Unlock()
	s.sched.after(s.Knobs().DeliveryDelay, func() { s.advanceMessage(m) })
}

// updateMessage is POST Messages/{Sid}: Status=canceled cancels a
// scheduled message; one no longer scheduled is Twilio's 30409.
func (s *Server) updateMessage(w http.ResponseWriter, r *http.Request, sid string) {
	if !parseForm(w, r) {
		return
	}
	status := strings.TrimSpace(r.Form.Get("Status"))
	if status != "canceled" {
		writeTwilioError(w, badRequest(20001, "The simulator updates a message only with Status=canceled."))
		return
	}
	s.mu.Lock()
	m := s.messages.get(sid)
	if m == nil {
		s.mu.Unlock()
		s.notFound(w, r)
		return
	}
	if m.Status != "scheduled" {
		s.mu.Unlock()
		writeTwilioError(w, badRequest(30409, "This message cannot be canceled: it is %s, no longer scheduled.", m.Status))
		return
	}
	m.Status, m.UpdatedAt = "canceled", time.Now().UTC()
	view := s.messageJSON(m)
	var hook *webhook
	if m.StatusCallback != "" {
		hook = &webhook{key: m.Sid, method: http.MethodPost, url: m.StatusCallback, params: s.messageCallbackParams(m)}
	}
	s.mu.Unlock()
	if hook != nil {
		s.notify.send(*hook)
	}
	writeJSON(w, http.StatusOK, view)
}

// messageOutcome decides how a message to number ends. Callers hold s.mu.
func (s *Server) messageOutcome(to string) (string, int) {
	switch to {
	case NumberSMSUndelivered:
		return "undelivered", errUnreachable
	case NumberSMSUndeliveredFirst:
		s.sentTo[to]++
		if s.sentTo[to] == 1 {
			return "undelivered", errUnreachable
		}
	case NumberSMSFailed:
		return "failed", errUnknown
	}
	return "delivered", 0
}

// advanceMessage moves m one status on, sends its webhook and schedules the
// next step. It runs on the scheduler goroutine.
func (s *Server) advanceMessage(m *message) {
	s.mu.Lock()
	if m.dead {
		s.mu.Unlock()
		return
	}
	now := time.Now().UTC()
	switch m.Status {
	case "accepted":
		m.Status = "queued"
		m.From = s.defaultFrom
	case "queued":
		m.Status = "sending"
	case "sending":
		m.Status = "sent"
		m.SentAt = &now
	case "sent":
		m.Status = m.finalStatus
		if m.finalCode != 0 {
			code := m.finalCode
			m.ErrorCode = &code
			m.ErrorMessage = deliveryErrorMessages[code]
		}
	default:
		s.mu.Unlock()
		return
	}
	m.UpdatedAt = now
	final := m.Status == m.finalStatus
	var hook *webhook
	if m.StatusCallback != "" {
		hook = &webhook{key: m.Sid, method: http.MethodPost, url: m.StatusCallback, params: s.messageCallbackParams(m)}
	}
	s.mu.Unlock()

	if hook != nil {
		s.notify.send(*hook)
	}
	if !final {
		s.sched.after(s.Knobs().DeliveryDelay, func() { s.advanceMessage(m) })
	}
}

// messageCallbackParams are the fields of Twilio's message status callback.
func (s *Server) messageCallbackParams(m *message) url.Values {
	v := url.Values{
		"AccountSid":    {s.accountSID},
		"ApiVersion":    {APIVersion},
		"From":          {m.From},
		"MessageSid":    {m.Sid},
		"MessageStatus": {m.Status},
		"SmsSid":        {m.Sid},
		"SmsStatus":     {m.Status},
		"To":            {m.To},
	}
	if m.MessagingServiceSid != "" {
		v.Set("MessagingServiceSid", m.MessagingServiceSid)
	}
	if m.ErrorCode != nil {
		v.Set("ErrorCode", strconv.Itoa(*m.ErrorCode))
	}
	return v
}

// messageJSON is Twilio's Message resource. Callers hold s.mu.
type messageJSON struct {
	AccountSid          string            `json:"account_sid"`
	APIVersion          string            `json:"api_version"`
	Body                string            `json:"body"`
	DateCreated         string            `json:"date_created"`
	DateSent            *string           `json:"date_sent"`
	DateUpdated         string            `json:"date_updated"`
	Direction           string            `json:"direction"`
	ErrorCode           *int              `json:"error_code"`
	ErrorMessage        *string           `json:"error_message"`
	From                *string           `json:"from"`
	MessagingServiceSid *string           `json:"messaging_service_sid"`
	NumMedia            string            `json:"num_media"`
	NumSegments         string            `json:"num_segments"`
	Price               *string           `json:"price"`
	PriceUnit           string            `json:"price_unit"`
	Sid                 string            `json:"sid"`
	Status              string            `json:"status"`
	SubresourceUris     map[string]string `json:"subresource_uris"`
	To                  string            `json:"to"`
	URI                 string            `json:"uri"`
}

func (s *Server) messageJSON(m *message) messageJSON {
	uri := "/2010-04-01/Accounts/" + s.accountSID + "/Messages/" + m.Sid
	j := messageJSON{
		AccountSid:  s.accountSID,
		APIVersion:  APIVersion,
		Body:        m.Body,
		DateCreated: twilioTime(m.CreatedAt),
		DateSent:    twilioTimePtr(m.SentAt),
		DateUpdated: twilioTime(m.UpdatedAt),
		Direction:   "outbound-api",
		ErrorCode:   m.ErrorCode,
		NumMedia:    strconv.Itoa(len(m.MediaURLs)),
		NumSegments: strconv.Itoa(m.NumSegments),
		PriceUnit:   "USD",
		Sid:         m.Sid,
		Status:      m.Status,
		SubresourceUris: map[string]string{
			"media":    uri + "/Media.json",
			"feedback": uri + "/Feedback.json",
		},
		To:  m.To,
		URI: uri + ".json",
	}
	if m.ErrorMessage != "" {
		msg := m.ErrorMessage
		j.ErrorMessage = &msg
	}
	if m.From != "" {
		from := m.From
		j.From = &from
	}
	if m.MessagingServiceSid != "" {
		sid := m.MessagingServiceSid
		j.MessagingServiceSid = &sid
	}
	if m.Status == "accepted" {
		j.NumSegments = "0" // no sender assigned yet, as Twilio documents
	}
	return j
}

func (s *Server) fetchMessage(w http.ResponseWriter, r *http.Request, sid string) {
	s.mu.RLock()
	m := s.messages.get(sid)
	var view messageJSON
	if m != nil {
		view = s.messageJSON(m)
	}
	s.mu.RUnlock()
	if m == nil {
		s.notFound(w, r)
		return
	}
	writeJSON(w, http.StatusOK, view)
}

func (s *Server) listMessages(w http.ResponseWriter, r *http.Request) {
	q := r.URL.Query()
	p, apiErr := parsePaging(q)
	if apiErr != nil {
		writeTwilioError(w, apiErr)
		return
	}
	to, from := normalizeNumber(q.Get("To")), normalizeNumber(q.Get("From"))
	var sent timeFilter
	for _, f := range []struct {
		name string
		op   int
	}{{"DateSent", 0}, {"DateSent<", -1}, {"DateSent>", 1}} {
		if v := strings.TrimSpace(q.Get(f.name)); v != "" {
			if err := sent.add(f.op, v); err != nil {
				writeTwilioError(w, badRequest(20001, "Invalid %s: %v", f.name, err))
				return
			}
		}
	}

	s.mu.RLock()
	all := s.messages.all()
	var match []*message
	for i := len(all) - 1; i >= 0; i-- { // newest first
		m := all[i]
		if (to != "" && m.To != to) || (from != "" && m.From != from) {
			continue
		}
		if !sent.empty() && (m.SentAt == nil || !sent.match(*m.SentAt)) {
			continue
		}
		match = append(match, m)
	}
	page, env := p.slice(len(match), func(i int) string { return match[i].Sid })
	views := make([]messageJSON, 0, len(page))
	for _, i := range page {
		views = append(views, s.messageJSON(match[i]))
	}
	s.mu.RUnlock()

	writeJSON(w, http.StatusOK, env.json(s.accountSID, "Messages", q, "messages", views))
}

// Messages returns a copy of every message held, oldest first.
func (s *Server) Messages() []Message {
	s.mu.RLock()
	defer s.mu.RUnlock()
	all := s.messages.all()
	out := make([]Message, len(all))
	for i, m := range all {
		out[i] = m.Message
	}
	return out
}

// Message returns the message with sid.
func (s *Server) Message(sid string) (Message, bool) {
	s.mu.RLock()
	defer s.mu.RUnlock()
	if m := s.messages.get(sid); m != nil {
		return m.Message, true
	}
	return Message{}, false
}
