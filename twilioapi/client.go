package twilioapi

import (
	"context"
	"errors"
	"fmt"
	"net"
	"net/http"
	"net/url"
	"strconv"
	"time"

	"github.com/twilio/twilio-go/client"
	openapi "github.com/twilio/twilio-go/rest/api/v2010"
)

// Client talks to Twilio's REST API (or the simulator at Config.BaseURL).
// It is safe for concurrent use; every method honours its context.
type Client struct {
	cfg    Config
	creds  *client.Credentials
	target *url.URL // nil when talking to Twilio itself
	base   http.RoundTripper
}

// New returns a Client for a validated Config.
func New(cfg Config) (*Client, error) {
	cfg = cfg.WithDefaults()
	if err := cfg.Validate(); err != nil {
		return nil, err
	}
	c := &Client{cfg: cfg, creds: client.NewCredentials(cfg.AccountSID, cfg.AuthToken.Reveal())}
	if cfg.APIKey != "" {
		c.creds = client.NewCredentials(cfg.APIKey, cfg.APISecret.Reveal())
	}
	if cfg.BaseURL != DefaultBaseURL {
		c.target, _ = url.Parse(cfg.BaseURL) // Validate checked it
	}
	t := http.DefaultTransport.(*http.Transport).Clone()
	t.MaxIdleConns = 1024
	t.MaxIdleConnsPerHost = 512
	t.IdleConnTimeout = 90 * time.Second
	c.base = t
	return c, nil
}

// Config returns the client's configuration (secrets stay redacted when printed).
func (c *Client) Config() Config { return c.cfg }

// DefaultFrom returns the sender used when a message names none: the
// configured phone number, or "" when a Messaging Service picks it.
func (c *Client) DefaultFrom() string {
	if c.cfg.MessagingServiceSID != "" {
		return "" // SendSMS sends through the service, which picks the number
	}
	return c.cfg.PhoneNumber
}

// call prepares the SDK for one operation bound to ctx.
func (c *Client) call(ctx context.Context) (*openapi.ApiService, *exchange) {
	x := &exchange{}
	hc := &http.Client{
		Transport:     &transport{base: c.base, target: c.target, pace: c.cfg.Pace, ctx: ctx, x: x},
		Timeout:       c.cfg.Timeout,
		CheckRedirect: func(*http.Request, []*http.Request) error { return http.ErrUseLastResponse },
	}
	tc := &client.Client{Credentials: c.creds, HTTPClient: hc}
	tc.SetAccountSid(c.cfg.AccountSID)
	return openapi.NewApiServiceWithClient(tc), x
}

// finish classifies err (nil on success), reports the request to Observe and
// returns the classified error.
func (c *Client) finish(ctx context.Context, op string, write bool, x *exchange, start time.Time, err error) error {
	var out *Error
	if err != nil {
		out = classify(ctx, op, write, x.snapshot(), err)
	}
	if c.cfg.Observe != nil {
		outcome := strconv.Itoa(x.snapshot().status)
		if out != nil {
			outcome = out.outcome()
		}
		c.cfg.Observe(op, outcome, time.Since(start))
	}
	if out == nil {
		return nil
	}
	return out
}

func (e *Error) outcome() string {
	switch {
	case e.Code != 0:
		return strconv.Itoa(e.Code)
	case e.Status != 0:
		return strconv.Itoa(e.Status)
	case e.Class == ClassAmbiguous:
		return "ambiguous"
	}
	return "error"
}

// classify turns whatever the SDK returned into an *Error. write is true for
// requests that create something, where a lost answer is ambiguous.
func classify(ctx context.Context, op string, write bool, x record, err error) *Error {
	e := &Error{Op: op, Status: x.status, RetryAfter: x.retryAfter,
		ConcurrentRequests: x.concurrent, RequestID: x.requestID}
	var rest *client.TwilioRestError
	if errors.As(err, &rest) {
		e.Code, e.Message = rest.Code, scrub(rest.Message)
		if e.Status == 0 {
			e.Status = rest.Status
		}
		e.Class = ClassifyCode(e.Status, e.Code)
		return e
	}
	switch {
	case x.status >= 400:
		// An error page that is not Twilio's JSON (a proxy's HTML 503).
		e.Class = ClassifyCode(x.status, 0)
		e.Message = scrub(x.body)
		if e.Message == "" {
			e.Message = "non-JSON error response"
		}
		e.Err = err
		return e
	case x.status >= 200 && x.status < 300 && write:
		// Twilio accepted the request, but its answer could not be read.
		e.Class, e.Message, e.Err = ClassAmbiguous, "response accepted but unreadable", err
		return e
	case x.status != 0:
		e.Class, e.Message, e.Err = ClassTransient, "unreadable response", err
		return e
	}
	e.Err = err
	timeout := isTimeout(err) || errors.Is(ctx.Err(), context.DeadlineExceeded)
	switch {
	case x.wrote && write:
		e.Class = ClassAmbiguous
		if timeout {
			e.Message = "timed out after the request was sent; Twilio may have accepted it"
		} else {
			e.Message = "connection lost after the request was sent; Twilio may have accepted it"
		}
	case timeout:
		e.Class, e.Message = ClassTransient, "timed out"
	default:
		e.Class, e.Message = ClassTransient, "request failed: "+transportReason(err)
	}
	return e
}

func isTimeout(err error) bool {
	var ne net.Error
	return errors.As(err, &ne) && ne.Timeout()
}

// transportReason is the innermost error text, without the URL.
func transportReason(err error) string {
	var ue *url.Error
	if errors.As(err, &ue) {
		err = ue.Err
	}
	return err.Error()
}

// Message is a Twilio Message resource, decoded.
type Message struct {
	SID                 string
	To, From            string
	Body                string
	Status              string
	NumSegments         int
	ErrorCode           int
	ErrorMessage        string
	MessagingServiceSID string
	Price, PriceUnit    string
	DateCreated         time.Time
	DateSent            time.Time
	DateUpdated         time.Time
}

// Call is a Twilio Call resource, decoded.
type Call struct {
	SID         string
	To, From    string
	Status      string
	Duration    int // seconds; 0 until the call ends
	AnsweredBy  string
	DateCreated time.Time
	StartTime   time.Time
	EndTime     time.Time
}

// Terminal reports whether a call status is final.
func Terminal(status string) bool {
	switch status {
	case "completed", "busy", "failed", "no-answer", "canceled":
		return true
	}
	return false
}

// SendParams is one SMS. From overrides the configured sender; with neither,
// the Messaging Service is used.
type SendParams struct {
	To             string
	From           string
	Body           string
	StatusCallback string
	// ValidityPeriod tells Twilio to drop the message if it cannot be sent in
	// time (rounded up to seconds, 1 s to 10 h).
	ValidityPeriod time.Duration
	// SendAt, when set, has Twilio hold the message and send it then
	// (ScheduleType=fixed). Twilio schedules only through a Messaging
	// Service, between 15 minutes and 35 days ahead: SendSMS refuses a
	// SendAt with a From or without TWILIO_MESSAGING_SERVICE_SID.
	SendAt time.Time
}

// ScheduleTypeFixed is the ScheduleType of a message sent at SendAt.
const ScheduleTypeFixed = "fixed"

// ErrScheduleNeedsService is a SendAt without a Messaging Service to send it.
var ErrScheduleNeedsService = errors.New("sendAt: Twilio schedules messages only through a Messaging Service: set TWILIO_MESSAGING_SERVICE_SID and give no from")

// ErrNoSender is returned when a message has no From and none is configured.
var ErrNoSender = errors.New("no sender: set TWILIO_PHONE_NUMBER or TWILIO_MESSAGING_SERVICE_SID, or give from")

// SendSMS creates a message.
func (c *Client) SendSMS(ctx context.Context, p SendParams) (*Message, error) {
	params := &openapi.CreateMessageParams{}
	params.SetTo(p.To).SetBody(p.Body)
	switch {
	case p.From != "":
		params.SetFrom(p.From)
	case c.cfg.MessagingServiceSID != "":
		params.SetMessagingServiceSid(c.cfg.MessagingServiceSID)
	case c.cfg.PhoneNumber != "":
		params.SetFrom(c.cfg.PhoneNumber)
	default:
		return nil, &Error{Op: "send sms", Class: ClassConfig, Message: ErrNoSender.Error(), Err: ErrNoSender}
	}
	if p.StatusCallback != "" {
		params.SetStatusCallback(p.StatusCallback)
	}
	if !p.SendAt.IsZero() {
		if p.From != "" || c.cfg.MessagingServiceSID == "" {
			return nil, &Error{Op: "send sms", Class: ClassConfig, Message: ErrScheduleNeedsService.Error(), Err: ErrScheduleNeedsService}
		}
		params.SetSendAt(p.SendAt.UTC().Truncate(time.Second)).SetScheduleType(ScheduleTypeFixed)
	}
	if p.ValidityPeriod > 0 {
		secs := int((p.ValidityPeriod + time.Second - 1) / time.Second)
		params.SetValidityPeriod(min(max(secs, 1), 36000))
	}
	api, x := c.call(ctx)
	start := time.Now()
	m, err := api.CreateMessage(params)
	if err := c.finish(ctx, "send sms", true, x, start, err); err != nil {
		return nil, err
	}
	return decodeMessage(m), nil
}

// Schedules reports whether SendSMS can have Twilio schedule a message
// (SendParams.SendAt): a Messaging Service is configured.
func (c *Client) Schedules() bool { return c.cfg.MessagingServiceSID != "" }

// CancelMessage cancels a message Twilio holds as scheduled (POST
// Messages/{Sid} with Status=canceled) and returns it, now "canceled". A
// message no longer scheduled is Twilio's 30409 (ClassInvalid).
func (c *Client) CancelMessage(ctx context.Context, sid string) (*Message, error) {
	params := &openapi.UpdateMessageParams{}
	params.SetStatus("canceled")
	api, x := c.call(ctx)
	start := time.Now()
	m, err := api.UpdateMessage(sid, params)
	if err := c.finish(ctx, "cancel message", false, x, start, err); err != nil {
		return nil, err
	}
	return decodeMessage(m), nil
}

// FetchMessage reads one message.
func (c *Client) FetchMessage(ctx context.Context, sid string) (*Message, error) {
	api, x := c.call(ctx)
	start := time.Now()
	m, err := api.FetchMessage(sid, nil)
	if err := c.finish(ctx, "fetch message", false, x, start, err); err != nil {
		return nil, err
	}
	return decodeMessage(m), nil
}

// ListParams filters a message list. Zero fields do not filter.
type ListParams struct {
	To, From string
	// SentAfter keeps messages sent on or after this day (Twilio filters by
	// UTC date_sent, so a message still queued has none and is left out;
	// reconciliation filters by To and From and compares DateCreated).
	SentAfter  time.Time
	SentBefore time.Time
	PageSize   int // per request; Twilio's default 50, max 1000
	Limit      int // most messages returned in all; 0 means 1000
}

// ListMessages lists messages newest first, following Twilio's pages.
func (c *Client) ListMessages(ctx context.Context, p ListParams) ([]Message, error) {
	params := &openapi.ListMessageParams{}
	if p.To != "" {
		params.SetTo(p.To)
	}
	if p.From != "" {
		params.SetFrom(p.From)
	}
	if !p.SentAfter.IsZero() {
		params.SetDateSentAfter(p.SentAfter.UTC())
	}
	if !p.SentBefore.IsZero() {
		params.SetDateSentBefore(p.SentBefore.UTC())
	}
	if p.PageSize > 0 {
		params.SetPageSize(p.PageSize)
	}
	limit := p.Limit
	if limit <= 0 {
		limit = 1000
	}
	params.SetLimit(limit)
	api, x := c.call(ctx)
	start := time.Now()
	list, err := api.ListMessage(params)
	if err := c.finish(ctx, "list messages", false, x, start, err); err != nil {
		return nil, err
	}
	out := make([]Message, 0, len(list))
	for i := range list {
		out = append(out, *decodeMessage(&list[i]))
	}
	return out, nil
}

// CallParams is one outbound call: exactly one of URL and Twiml.
type CallParams struct {
	To, From             string
	URL                  string
	Twiml                string
	Record               bool
	StatusCallback       string
	StatusCallbackEvents []string // e.g. initiated ringing answered completed
}

// CreateCall places a call.
func (c *Client) CreateCall(ctx context.Context, p CallParams) (*Call, error) {
	params := &openapi.CreateCallParams{}
	params.SetTo(p.To)
	from := p.From
	if from == "" {
		from = c.cfg.PhoneNumber
	}
	if from == "" {
		return nil, &Error{Op: "create call", Class: ClassConfig, Message: ErrNoSender.Error(), Err: ErrNoSender}
	}
	params.SetFrom(from)
	if p.URL != "" {
		params.SetUrl(p.URL)
	}
	if p.Twiml != "" {
		params.SetTwiml(p.Twiml)
	}
	if p.Record {
		params.SetRecord(true)
	}
	if p.StatusCallback != "" {
		params.SetStatusCallback(p.StatusCallback)
		if len(p.StatusCallbackEvents) > 0 {
			params.SetStatusCallbackEvent(p.StatusCallbackEvents)
		}
	}
	api, x := c.call(ctx)
	start := time.Now()
	call, err := api.CreateCall(params)
	if err := c.finish(ctx, "create call", true, x, start, err); err != nil {
		return nil, err
	}
	return decodeCall(call), nil
}

// FetchCall reads one call.
func (c *Client) FetchCall(ctx context.Context, sid string) (*Call, error) {
	api, x := c.call(ctx)
	start := time.Now()
	call, err := api.FetchCall(sid, nil)
	if err := c.finish(ctx, "fetch call", false, x, start, err); err != nil {
		return nil, err
	}
	return decodeCall(call), nil
}

// CallUpdate changes a live call: Status hangs it up ("canceled" before it
// is answered, "completed" after), URL or Twiml redirect it.
type CallUpdate struct {
	Status string
	URL    string
	Twiml  string
}

// UpdateCall changes a live call (POST Calls/{Sid}).
func (c *Client) UpdateCall(ctx context.Context, sid string, u CallUpdate) (*Call, error) {
	params := &openapi.UpdateCallParams{}
	if u.Status != "" {
		params.SetStatus(u.Status)
	}
	if u.URL != "" {
		params.SetUrl(u.URL)
	}
	if u.Twiml != "" {
		params.SetTwiml(u.Twiml)
	}
	api, x := c.call(ctx)
	start := time.Now()
	call, err := api.UpdateCall(sid, params)
	if err := c.finish(ctx, "update call", true, x, start, err); err != nil {
		return nil, err
	}
	return decodeCall(call), nil
}

// CallListParams filters a call list. Zero fields do not filter.
type CallListParams struct {
	To, From     string
	StartedAfter time.Time
	Limit        int // 0 means 1000
}

// ListCalls lists calls newest first.
func (c *Client) ListCalls(ctx context.Context, p CallListParams) ([]Call, error) {
	params := &openapi.ListCallParams{}
	if p.To != "" {
		params.SetTo(p.To)
	}
	if p.From != "" {
		params.SetFrom(p.From)
	}
	if !p.StartedAfter.IsZero() {
		params.SetStartTimeAfter(p.StartedAfter.UTC())
	}
	limit := p.Limit
	if limit <= 0 {
		limit = 1000
	}
	params.SetLimit(limit)
	api, x := c.call(ctx)
	start := time.Now()
	list, err := api.ListCall(params)
	if err := c.finish(ctx, "list calls", false, x, start, err); err != nil {
		return nil, err
	}
	out := make([]Call, 0, len(list))
	for i := range list {
		out = append(out, *decodeCall(&list[i]))
	}
	return out, nil
}

// CheckCredentials fetches the account: nil when Twilio accepts the credentials.
func (c *Client) CheckCredentials(ctx context.Context) error {
	api, x := c.call(ctx)
	start := time.Now()
	_, err := api.FetchAccount(c.cfg.AccountSID)
	return c.finish(ctx, "fetch account", false, x, start, err)
}

func str(p *string) string {
	if p == nil {
		return ""
	}
	return *p
}

func atoi(p *string) int {
	n, _ := strconv.Atoi(str(p))
	return n
}

// twilioTime parses Twilio's RFC 2822 dates; zero when absent or malformed.
func twilioTime(p *string) time.Time {
	s := str(p)
	for _, layout := range []string{time.RFC1123Z, time.RFC1123, time.RFC3339} {
		if t, err := time.Parse(layout, s); err == nil {
			return t.UTC()
		}
	}
	return time.Time{}
}

func decodeMessage(m *openapi.ApiV2010Message) *Message {
	out := &Message{
		SID: str(m.Sid), To: str(m.To), From: str(m.From), Body: str(m.Body),
		Status: str(m.Status), NumSegments: atoi(m.NumSegments),
		ErrorMessage: str(m.ErrorMessage), MessagingServiceSID: str(m.MessagingServiceSid),
		Price: str(m.Price), PriceUnit: str(m.PriceUnit),
		DateCreated: twilioTime(m.DateCreated), DateSent: twilioTime(m.DateSent),
		DateUpdated: twilioTime(m.DateUpdated),
	}
	if m.ErrorCode != nil {
		out.ErrorCode = *m.ErrorCode
	}
	return out
}

func decodeCall(c *openapi.ApiV2010Call) *Call {
	return &Call{
		SID: str(c.Sid), To: str(c.To), From: str(c.From), Status: str(c.Status),
		Duration: atoi(c.Duration), AnsweredBy: str(c.AnsweredBy),
		DateCreated: twilioTime(c.DateCreated), StartTime: twilioTime(c.StartTime),
		EndTime: twilioTime(c.EndTime),
	}
}

// String describes the client without secrets.
func (c *Client) String() string {
	host := "api.twilio.com"
	if c.target != nil {
		host = c.target.Host
	}
	return fmt.Sprintf("twilioapi.Client{account=%s host=%s}", maskSID(c.cfg.AccountSID), host)
}

func maskSID(sid string) string {
	if len(sid) < 8 {
		return "REDACTED"
	}
	return sid[:6] + "…" + sid[len(sid)-4:]
}
