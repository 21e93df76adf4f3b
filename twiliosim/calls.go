package twiliosim

import (
	"math"
	"math/rand/v2"
	"net/http"
	"net/url"
	"slices"
	"strconv"
	"strings"
	"time"
)

// Call is the simulator's record of an outbound call, as GET /sim/calls shows
// it and Calls returns it.
type Call struct {
	Sid                  string     `json:"sid"`
	To                   string     `json:"to"`
	From                 string     `json:"from"`
	Status               string     `json:"status"`
	Duration             int        `json:"duration"` // seconds, set when the call ends
	CreatedAt            time.Time  `json:"createdAt"`
	UpdatedAt            time.Time  `json:"updatedAt"`
	StartTime            *time.Time `json:"startTime"`
	EndTime              *time.Time `json:"endTime"`
	Fetches              int        `json:"fetches"` // GET Calls/{Sid}.json so far
	Updates              int        `json:"updates"` // POST Calls/{Sid}.json so far (hang-ups, redirects)
	URL                  string     `json:"url"`
	Method               string     `json:"method"`
	Twiml                string     `json:"twiml"`
	Record               bool       `json:"record"`
	MachineDetection     string     `json:"machineDetection"`
	AnsweredBy           string     `json:"answeredBy"`
	StatusCallback       string     `json:"statusCallback"`
	StatusCallbackMethod string     `json:"statusCallbackMethod"`
	StatusCallbackEvents []string   `json:"statusCallbackEvents"`
}

type call struct {
	Call
	outcome   string // completed, busy, no-answer or failed
	queueTime time.Duration
	seq       int // SequenceNumber of the next status callback
	dead      bool
}

// queueDelayMax bounds the time a call stays queued before it rings:
// min(queueDelayMax, CallRing/2).
const queueDelayMax = 100 * time.Millisecond

// TwimlMaxChars is Twilio's limit on the Twiml parameter.
const TwimlMaxChars = 4000

var callEvents = []string{"initiated", "ringing", "answered", "completed"}

type callRequest struct {
	to, from, url, method, twiml, statusCallback, statusCallbackMethod, machineDetection string
	events                                                                               []string
	record                                                                               bool
}

func validCallee(to string) bool {
	if strings.HasPrefix(to, "client:") || strings.HasPrefix(to, "sip:") {
		return len(to) > len("client:")
	}
	return validNumber(to)
}

func httpMethod(v string) (string, bool) {
	switch strings.ToUpper(strings.TrimSpace(v)) {
	case "", "POST":
		return http.MethodPost, true
	case "GET":
		return http.MethodGet, true
	}
	return "", false
}

// parseCallRequest validates a create-call form in Twilio's order.
func parseCallRequest(form url.Values) (callRequest, *apiError) {
	req := callRequest{
		to:               normalizeNumber(form.Get("To")),
		from:             normalizeNumber(form.Get("From")),
		url:              strings.TrimSpace(form.Get("Url")),
		twiml:            form.Get("Twiml"),
		statusCallback:   strings.TrimSpace(form.Get("StatusCallback")),
		machineDetection: strings.TrimSpace(form.Get("MachineDetection")),
	}
	appSID := strings.TrimSpace(form.Get("ApplicationSid"))
	switch {
	case req.to == "":
		return req, badRequest(21201, "No 'To' number is specified")
	case !validCallee(req.to):
		return req, badRequest(21217, "Phone number does not appear to be valid")
	case req.from == "":
		return req, badRequest(21213, "No 'From' number is specified")
	case !validCallee(req.from):
		return req, badRequest(21212, "Invalid From Number (caller ID): %s", req.from)
	case req.url == "" && req.twiml == "" && appSID == "":
		return req, badRequest(21205, "Url parameter is required.")
	case req.url != "" && checkHTTPURL(req.url) != nil:
		return req, badRequest(21205, "Url is not a valid URL: %s", req.url)
	case len(req.twiml) > TwimlMaxChars:
		return req, badRequest(21232, "Twiml exceeds the %d character limit.", TwimlMaxChars)
	case req.statusCallback != "" && checkHTTPURL(req.statusCallback) != nil:
		return req, badRequest(21609, "The StatusCallback URL %s is not a valid URL.", req.statusCallback)
	}
	var ok bool
	if req.method, ok = httpMethod(form.Get("Method")); !ok {
		return req, badRequest(21208, "Method %q is not valid: want GET or POST.", form.Get("Method"))
	}
	if req.statusCallbackMethod, ok = httpMethod(form.Get("StatusCallbackMethod")); !ok {
		return req, badRequest(21208, "StatusCallbackMethod %q is not valid: want GET or POST.", form.Get("StatusCallbackMethod"))
	}
	for _, v := range form["StatusCallbackEvent"] {
		for _, ev := range strings.Fields(strings.ReplaceAll(v, ",", " ")) {
			ev = strings.ToLower(ev)
			if !slices.Contains(callEvents, ev) {
				return req, badRequest(21626, "StatusCallbackEvent %q is not valid: want initiated, ringing, answered or completed.", ev)
			}
			if !slices.Contains(req.events, ev) {
				req.events = append(req.events, ev)
			}
		}
	}
	if len(req.events) == 0 {
		req.events = []string{"completed"}
	}
	if v := strings.TrimSpace(form.Get("Record")); v != "" {
		b, err := strconv.ParseBool(v)
		if err != nil {
			return req, badRequest(21100, "Record %q is not valid: want true or false.", v)
		}
		req.record = b
	}
	switch req.machineDetection {
	case "", "Enable", "DetectMessageEnd":
	default:
		return req, badRequest(21100, "MachineDetection %q is not valid: want Enable or DetectMessageEnd.", req.machineDetection)
	}
	if e := callMagic(req.from, req.to); e != nil {
		return req, e
	}
	return req, nil
}

func (s *Server) createCall(w http.ResponseWriter, r *http.Request) {
	if !parseForm(w, r) {
		return
	}
	req, apiErr := parseCallRequest(r.Form)
	if apiErr != nil {
		writeTwilioError(w, apiErr)
		return
	}
	k := s.Knobs()
	now := time.Now().UTC()
	c := &call{
		Call: Call{
			Sid:                  newSID("CA"),
			To:                   req.to,
			From:                 req.from,
			Status:               "queued",
			CreatedAt:            now,
			UpdatedAt:            now,
			URL:                  req.url,
			Method:               req.method,
			Twiml:                req.twiml,
			Record:               req.record,
			MachineDetection:     req.machineDetection,
			StatusCallback:       req.statusCallback,
			StatusCallbackMethod: req.statusCallbackMethod,
			StatusCallbackEvents: req.events,
		},
		outcome:   callOutcome(req.to),
		queueTime: min(queueDelayMax, k.CallRing/2),
	}

	s.mu.Lock()
	if old := s.calls.add(c.Sid, c, s.maxRecords); old != nil {
		old.dead = true
	}
	view := s.callJSON(c)
	s.mu.Unlock()

	s.sched.after(c.queueTime, func() { s.advanceCall(c) })
	s.log.Debug("call created", "sid", c.Sid)

	if k.DropRate > 0 && rand.Float64() < k.DropRate {
		drop(w)
		return
	}
	writeJSON(w, http.StatusCreated, view)
}

// advanceCall moves c one step on: queued to ringing, ringing to in-progress
// or its failed outcome, in-progress to completed. It runs on the scheduler
// goroutine.
func (s *Server) advanceCall(c *call) {
	k := s.Knobs()
	s.mu.Lock()
	if c.dead {
		s.mu.Unlock()
		return
	}
	now := time.Now().UTC()
	var events []string // progress events reached by this step
	var next time.Duration = -1
	switch c.Status {
	case "queued":
		c.Status = "ringing"
		c.StartTime = &now
		events = []string{"initiated", "ringing"}
		next = k.CallRing
	case "ringing":
		if c.outcome != "completed" {
			c.Status = c.outcome
			c.EndTime = &now
			c.Duration = 0
			events = []string{"completed"}
			break
		}
		c.Status = "in-progress"
		if c.MachineDetection != "" {
			c.AnsweredBy = "human"
		}
		events = []string{"answered"}
		next = k.CallDuration
	case "in-progress":
		c.Status = "completed"
		c.EndTime = &now
		c.Duration = max(1, int(math.Ceil(k.CallDuration.Seconds())))
		events = []string{"completed"}
	default:
		s.mu.Unlock()
		return
	}
	c.UpdatedAt = now
	var hooks []webhook
	if c.StatusCallback != "" {
		for _, ev := range events {
			if slices.Contains(c.StatusCallbackEvents, ev) {
				hooks = append(hooks, webhook{key: c.Sid, method: c.StatusCallbackMethod, url: c.StatusCallback, params: s.callCallbackParams(c, ev, now)})
			}
		}
	}
	s.mu.Unlock()

	for _, h := range hooks {
		s.notify.send(h)
	}
	if next >= 0 {
		s.sched.after(next, func() { s.advanceCall(c) })
	}
}

// callCallbackParams are the fields of Twilio's call progress callback for
// event. Callers hold s.mu.
func (s *Server) callCallbackParams(c *call, event string, now time.Time) url.Values {
	status := c.Status
	if event == "initiated" {
		status = "initiated"
	}
	v := url.Values{
		"AccountSid":     {s.accountSID},
		"ApiVersion":     {APIVersion},
		"CallSid":        {c.Sid},
		"CallStatus":     {status},
		"CallbackSource": {"call-progress-events"},
		"Called":         {c.To},
		"Caller":         {c.From},
		"Direction":      {"outbound-api"},
		"From":           {c.From},
		"SequenceNumber": {strconv.Itoa(c.seq)},
		"Timestamp":      {twilioTime(now)},
		"To":             {c.To},
	}
	c.seq++
	if event == "completed" {
		v.Set("CallDuration", strconv.Itoa(c.Duration))
		v.Set("Duration", strconv.Itoa((c.Duration+59)/60))
	}
	if c.AnsweredBy != "" {
		v.Set("AnsweredBy", c.AnsweredBy)
	}
	return v
}

// callJSON is Twilio's Call resource.
type callJSON struct {
	AccountSid      string            `json:"account_sid"`
	Annotation      *string           `json:"annotation"`
	AnsweredBy      *string           `json:"answered_by"`
	APIVersion      string            `json:"api_version"`
	CallerName      *string           `json:"caller_name"`
	DateCreated     string            `json:"date_created"`
	DateUpdated     string            `json:"date_updated"`
	Direction       string            `json:"direction"`
	Duration        *string           `json:"duration"`
	EndTime         *string           `json:"end_time"`
	ForwardedFrom   *string           `json:"forwarded_from"`
	From            string            `json:"from"`
	FromFormatted   string            `json:"from_formatted"`
	GroupSid        *string           `json:"group_sid"`
	ParentCallSid   *string           `json:"parent_call_sid"`
	PhoneNumberSid  string            `json:"phone_number_sid"`
	Price           *string           `json:"price"`
	PriceUnit       string            `json:"price_unit"`
	QueueTime       string            `json:"queue_time"`
	Sid             string            `json:"sid"`
	StartTime       *string           `json:"start_time"`
	Status          string            `json:"status"`
	SubresourceUris map[string]string `json:"subresource_uris"`
	To              string            `json:"to"`
	ToFormatted     string            `json:"to_formatted"`
	TrunkSid        *string           `json:"trunk_sid"`
	URI             string            `json:"uri"`
}

// callJSON renders c. Callers hold s.mu.
func (s *Server) callJSON(c *call) callJSON {
	uri := "/2010-04-01/Accounts/" + s.accountSID + "/Calls/" + c.Sid
	j := callJSON{
		AccountSid:     s.accountSID,
		APIVersion:     APIVersion,
		DateCreated:    twilioTime(c.CreatedAt),
		DateUpdated:    twilioTime(c.UpdatedAt),
		Direction:      "outbound-api",
		EndTime:        twilioTimePtr(c.EndTime),
		From:           c.From,
		FromFormatted:  formatNumber(c.From),
		PhoneNumberSid: "PN" + hashHex(c.From),
		PriceUnit:      "USD",
		QueueTime:      strconv.FormatInt(c.queueTime.Milliseconds(), 10),
		Sid:            c.Sid,
		StartTime:      twilioTimePtr(c.StartTime),
		Status:         c.Status,
		SubresourceUris: map[string]string{
			"events":                             uri + "/Events.json",
			"notifications":                      uri + "/Notifications.json",
			"recordings":                         uri + "/Recordings.json",
			"payments":                           uri + "/Payments.json",
			"siprec":                             uri + "/Siprec.json",
			"streams":                            uri + "/Streams.json",
			"transcriptions":                     uri + "/Transcriptions.json",
			"user_defined_message_subscriptions": uri + "/UserDefinedMessageSubscriptions.json",
			"user_defined_messages":              uri + "/UserDefinedMessages.json",
		},
		To:          c.To,
		ToFormatted: formatNumber(c.To),
		URI:         uri + ".json",
	}
	if c.EndTime != nil {
		d := strconv.Itoa(c.Duration)
		j.Duration = &d
	}
	if c.AnsweredBy != "" {
		a := c.AnsweredBy
		j.AnsweredBy = &a
	}
	return j
}

// formatNumber formats a North American number as Twilio displays it,
// "(415) 555-1212"; other numbers stay in E.164.
func formatNumber(n string) string {
	if len(n) == 12 && strings.HasPrefix(n, "+1") && validNumber(n) {
		return "(" + n[2:5] + ") " + n[5:8] + "-" + n[8:]
	}
	return n
}

func (s *Server) fetchCall(w http.ResponseWriter, r *http.Request, sid string) {
	s.mu.Lock()
	c := s.calls.get(sid)
	var view callJSON
	if c != nil {
		c.Fetches++
		view = s.callJSON(c)
	}
	s.mu.Unlock()
	if c == nil {
		s.notFound(w, r)
		return
	}
	writeJSON(w, http.StatusOK, view)
}

func (s *Server) listCalls(w http.ResponseWriter, r *http.Request) {
	q := r.URL.Query()
	p, apiErr := parsePaging(q)
	if apiErr != nil {
		writeTwilioError(w, apiErr)
		return
	}
	to, from, status := normalizeNumber(q.Get("To")), normalizeNumber(q.Get("From")), strings.TrimSpace(q.Get("Status"))
	var started timeFilter
	for _, f := range []struct {
		name string
		op   int
	}{{"StartTime", 0}, {"StartTime<", -1}, {"StartTime>", 1}} {
		if v := strings.TrimSpace(q.Get(f.name)); v != "" {
			if err := started.add(f.op, v); err != nil {
				writeTwilioError(w, badRequest(20001, "Invalid %s: %v", f.name, err))
				return
			}
		}
	}

	s.mu.RLock()
	all := s.calls.all()
	var match []*call
	for i := len(all) - 1; i >= 0; i-- {
		c := all[i]
		if (to != "" && c.To != to) || (from != "" && c.From != from) || (status != "" && c.Status != status) {
			continue
		}
		if !started.empty() && (c.StartTime == nil || !started.match(*c.StartTime)) {
			continue
		}
		match = append(match, c)
	}
	page, env := p.slice(len(match), func(i int) string { return match[i].Sid })
	views := make([]callJSON, 0, len(page))
	for _, i := range page {
		views = append(views, s.callJSON(match[i]))
	}
	s.mu.RUnlock()

	writeJSON(w, http.StatusOK, env.json(s.accountSID, "Calls", q, "calls", views))
}

// Calls returns a copy of every call held, oldest first.
func (s *Server) Calls() []Call {
	s.mu.RLock()
	defer s.mu.RUnlock()
	all := s.calls.all()
	out := make([]Call, len(all))
	for i, c := range all {
		out[i] = c.Call
	}
	return out
}

// Call returns the call with sid.
func (s *Server) Call(sid string) (Call, bool) {
	s.mu.RLock()
	defer s.mu.RUnlock()
	if c := s.calls.get(sid); c != nil {
		return c.Call, true
	}
	return Call{}, false
}

// updateCall changes a live call (POST Calls/{Sid}): Status canceled hangs
// up a queued or ringing call (an answered one is left alone, as on
// Twilio), completed hangs up any live call; Url or Twiml redirects a live
// one (21220 once it has ended).
func (s *Server) updateCall(w http.ResponseWriter, r *http.Request, sid string) {
	if !parseForm(w, r) {
		return
	}
	status := strings.TrimSpace(r.Form.Get("Status"))
	newURL, twiml := strings.TrimSpace(r.Form.Get("Url")), r.Form.Get("Twiml")
	switch {
	case status != "" && status != "canceled" && status != "completed":
		writeTwilioError(w, badRequest(21218, "Status %q is not valid: want canceled or completed.", status))
		return
	case newURL != "" && checkHTTPURL(newURL) != nil:
		writeTwilioError(w, badRequest(21205, "Url is not a valid URL: %s", newURL))
		return
	case len(twiml) > TwimlMaxChars:
		writeTwilioError(w, badRequest(21232, "Twiml exceeds the %d character limit.", TwimlMaxChars))
		return
	case status == "" && newURL == "" && twiml == "":
		writeTwilioError(w, badRequest(20001, "Nothing to update: give Status, Url or Twiml."))
		return
	}
	s.mu.Lock()
	c := s.calls.get(sid)
	if c == nil {
		s.mu.Unlock()
		s.notFound(w, r)
		return
	}
	live := c.Status == "queued" || c.Status == "ringing" || c.Status == "in-progress"
	if !live && status == "" {
		s.mu.Unlock()
		writeTwilioError(w, badRequest(21220, "Call is not in-progress. Cannot redirect."))
		return
	}
	now := time.Now().UTC()
	var hooks []webhook
	if live && (status == "completed" || (status == "canceled" && c.Status != "in-progress")) {
		if c.Status == "in-progress" && c.StartTime != nil {
			c.Duration = max(1, int(math.Ceil(now.Sub(*c.StartTime).Seconds())))
		}
		if status == "canceled" {
			c.Status = "canceled"
		} else {
			c.Status = "completed"
		}
		c.EndTime = &now
		if c.StartTime == nil {
			c.StartTime = &now
		}
		if c.StatusCallback != "" && slices.Contains(c.StatusCallbackEvents, "completed") {
			hooks = append(hooks, webhook{key: c.Sid, method: c.StatusCallbackMethod, url: c.StatusCallback, params: s.callCallbackParams(c, "completed", now)})
		}
	}
	if live && c.Status != "canceled" && c.Status != "completed" {
		if newURL != "" {
			c.URL, c.Twiml = newURL, ""
		}
		if twiml != "" {
			c.Twiml, c.URL = twiml, ""
		}
	}
	c.Updates++
	c.UpdatedAt = now
	view := s.callJSON(c)
	s.mu.Unlock()
	for _, h := range hooks {
		s.notify.send(h)
	}
	writeJSON(w, http.StatusOK, view)
}
