package tasks

import (
	"encoding/json"
	"errors"
	"fmt"
	"regexp"
	"strings"
	"time"
	"unicode"
	"unicode/utf8"

	"github.com/hibiken/asynq"

	"github.com/sbagenthub/twilio-worker/phone"
	"github.com/sbagenthub/twilio-worker/segment"
)

// Task type names.
const (
	TypeSendSMS = "sms:send"
)

// Queues and their weights (DESIGN.md).
const (
	QueueCritical = "critical"
	QueueDefault  = "default"
	QueueBulk     = "bulk"
)

// Queues maps each queue to its priority weight.
var Queues = map[string]int{QueueCritical: 6, QueueDefault: 3, QueueBulk: 1}

// ValidQueue reports whether q is one of the worker's queues.
func ValidQueue(q string) bool { _, ok := Queues[q]; return ok }

// Message classes.
const (
	ClassTransactional = "transactional"
	ClassAlert         = "alert"
	ClassMarketing     = "marketing"
)

// Defaults of Rules and task options.
const (
	MaxSegmentsDefault = 10
	ResultTTLDefault   = 24 * time.Hour
	// SendTimeout bounds one run of a send handler.
	SendTimeout = 2 * time.Minute
	// MaxValidFor is Twilio's longest ValidityPeriod (10 hours).
	MaxValidFor = 10 * time.Hour
	// MinValidFor is the shortest validFor: Twilio counts ValidityPeriod in
	// whole seconds.
	MinValidFor = time.Second
)

// Rules are the limits input is checked against. Zero values mean defaults.
type Rules struct {
	MaxSegments   int    // MAX_SEGMENTS
	DefaultRegion string // ISO region for national numbers; "" refuses them
	ResultTTL     time.Duration
	Now           func() time.Time
	// AssistantID is VAPI_ASSISTANT_ID: the assistant of a makeCall with
	// "agent": true; "" refuses those.
	AssistantID string
}

// WithDefaults fills zero fields.
func (r Rules) WithDefaults() Rules {
	if r.MaxSegments <= 0 {
		r.MaxSegments = MaxSegmentsDefault
	}
	if r.ResultTTL <= 0 {
		r.ResultTTL = ResultTTLDefault
	}
	if r.Now == nil {
		r.Now = time.Now
	}
	return r
}

// SMSPayload is the payload of an sms:send task.
type SMSPayload struct {
	To       string `json:"to"`
	Body     string `json:"body"`
	From     string `json:"from,omitempty"`
	Class    string `json:"class,omitempty"`    // transactional (default), alert, marketing
	ValidFor string `json:"validFor,omitempty"` // Go duration, e.g. "10m" for a 2FA code
	Campaign string `json:"campaign,omitempty"`
	// ExpiresAt is set from ValidFor when the task is made: a message not
	// sent by then is archived as expired, never sent late.
	ExpiresAt *time.Time `json:"expiresAt,omitempty"`
	// Redelivery is n for the n-th resend after a transient carrier failure.
	Redelivery int `json:"redelivery,omitempty"`
	// SendAt, set by the producer, is a sendAt handed to Twilio to
	// schedule (ScheduleType=fixed) as soon as the task runs, instead of
	// the task waiting in the queue until then (schedule.go).
	SendAt *time.Time `json:"sendAt,omitempty"`
	// Source is who asked for the message: "agent" (the agent hub's
	// actions, metered by the fraud guard) or "operator" (enqueue sms and
	// bulk, /v1/campaigns); empty is operator.
	Source string `json:"source,omitempty"`
}

// Sources of tasks (SMSPayload.Source, CallPayload.Source).
const (
	SourceAgent    = "agent"
	SourceOperator = "operator"
)

func checkSource(s string) error {
	if s != "" && s != SourceAgent && s != SourceOperator {
		return fieldErr("source", "must be agent or operator")
	}
	return nil
}

var (
	senderIDPattern = regexp.MustCompile(`^[A-Za-z0-9 ]{1,11}$`)
	hasLetter       = regexp.MustCompile(`[A-Za-z]`)
	campaignPattern = regexp.MustCompile(`^[A-Za-z0-9._-]{1,64}$`)
)

// Normalize validates p and returns it with numbers in E.164 and defaults
// filled. Errors are *FieldError naming the field.
func (p SMSPayload) Normalize(r Rules) (SMSPayload, error) {
	p, _, err := p.NormalizeTo(r)
	return p, err
}

// NormalizeTo is Normalize that also returns what parsing p.To learned
// (phone.ParseInfo), for the checks after it that need the recipient's
// country or number type (the fraud guard's CheckNumber): the number is
// parsed once.
func (p SMSPayload) NormalizeTo(r Rules) (SMSPayload, phone.Info, error) {
	r = r.WithDefaults()
	to, err := parseNumberInfo("to", p.To, r.DefaultRegion)
	if err != nil {
		return p, phone.Info{}, err
	}
	p.To = to.Number().String()
	if p, err = p.normalizeRest(r); err != nil {
		return p, phone.Info{}, err
	}
	return p, to, nil
}

// normalizeRest is Normalize after To.
func (p SMSPayload) normalizeRest(r Rules) (SMSPayload, error) {
	var err error
	if p.From, err = normalizeSender(p.From, r.DefaultRegion); err != nil {
		return p, err
	}
	if !utf8.ValidString(p.Body) {
		return p, fieldErr("body", "is not valid UTF-8")
	}
	if Blank(p.Body) {
		return p, fieldErr("body", "is empty (nothing in it would show on a phone)")
	}
	if p.Class == ClassMarketing {
		p.Body = WithOptOutFooter(p.Body) // before counting: the footer is part of the message
	}
	info := segment.Analyze(p.Body)
	if info.Chars > segment.MaxChars {
		return p, fieldErr("body", "has %d characters, over Twilio's limit of %d", info.Chars, segment.MaxChars)
	}
	if info.Segments > r.MaxSegments {
		return p, fieldErr("body", "needs %d segments (%s), over MAX_SEGMENTS %d", info.Segments, info.Encoding, r.MaxSegments)
	}
	switch p.Class {
	case "":
		p.Class = ClassTransactional
	case ClassTransactional, ClassAlert, ClassMarketing:
	default:
		return p, fieldErr("class", "must be transactional, alert or marketing")
	}
	if err := checkSource(p.Source); err != nil {
		return p, err
	}
	if p.Redelivery < 0 {
		// Tracker.Settle shifts by it: a negative count would panic there.
		return p, fieldErr("redelivery", "must not be negative")
	}
	if p.Campaign != "" && !campaignPattern.MatchString(p.Campaign) {
		return p, fieldErr("campaign", "must be 1-64 letters, digits, '.', '_' or '-'")
	}
	if p.ValidFor != "" {
		d, err := time.ParseDuration(p.ValidFor)
		switch {
		case err != nil:
			return p, fieldErr("validFor", "is not a duration such as 10m or 1h30m")
		case d < MinValidFor:
			return p, fieldErr("validFor", "must be at least %s", MinValidFor)
		case d > MaxValidFor:
			return p, fieldErr("validFor", "must be at most %s (Twilio's longest validity period)", MaxValidFor)
		}
		if p.ExpiresAt == nil {
			at := r.Now().Add(d).UTC()
			p.ExpiresAt = &at
		}
	}
	return p, nil
}

// Blank reports whether s would show nothing on a phone: only white space,
// control characters (NUL …) and invisible format characters (zero-width
// space, byte-order mark, …).
func Blank(s string) bool {
	for _, r := range s {
		if !unicode.IsSpace(r) && !unicode.IsControl(r) && !unicode.Is(unicode.Cf, r) && r != '\u2800' && r != '\u3164' {
			return false
		}
	}
	return true
}

// ParseNumber parses a phone number for field, as a *FieldError on failure.
func ParseNumber(field, s, region string) (phone.Number, error) {
	n, err := parseNumberInfo(field, s, region)
	return n.Number(), err
}

func parseNumberInfo(field, s, region string) (phone.Info, error) {
	n, err := phone.ParseInfo(s, region)
	if err != nil {
		var pe *phone.ParseError
		problem := err.Error()
		if errors.As(err, &pe) {
			problem = pe.Error()
		}
		return phone.Info{}, &FieldError{Field: field, Problem: problem, Err: err}
	}
	return n, nil
}

// normalizeSender accepts an E.164 number or an alphanumeric sender ID.
func normalizeSender(from, region string) (string, error) {
	from = strings.TrimSpace(from)
	if from == "" {
		return "", nil
	}
	if senderIDPattern.MatchString(from) && hasLetter.MatchString(from) {
		return from, nil // alphanumeric sender ID, e.g. "ACME"
	}
	n, err := ParseNumber("from", from, region)
	return n.String(), err
}

// NewSendSMSTask validates and normalises p and returns the task, queued on
// "default" with its result kept for Rules.ResultTTL unless opts say
// otherwise; the handler gives up after MaxRetryDefault failures.
func NewSendSMSTask(p SMSPayload, r Rules, opts ...asynq.Option) (*asynq.Task, error) {
	r = r.WithDefaults()
	p, err := p.Normalize(r)
	if err != nil {
		return nil, err
	}
	return newTask(TypeSendSMS, p, r, opts)
}

// NewSendSMSTaskTo is NewSendSMSTask that also returns the parsed
// recipient (SMSPayload.NormalizeTo): a bulk submission checks each one
// with the fraud guard without parsing it again. Its Number is the
// payload's To.
func NewSendSMSTaskTo(p SMSPayload, r Rules, opts ...asynq.Option) (*asynq.Task, phone.Info, error) {
	r = r.WithDefaults()
	p, to, err := p.NormalizeTo(r)
	if err != nil {
		return nil, phone.Info{}, err
	}
	t, err := newTask(TypeSendSMS, p, r, opts)
	if err != nil {
		return nil, phone.Info{}, err
	}
	return t, to, nil
}

// newTask encodes a validated payload as a send task: queue default, asynq's
// retry ceiling, the result kept ResultTTL, SendTimeout per run; opts win.
func newTask(typ string, payload any, r Rules, opts []asynq.Option) (*asynq.Task, error) {
	b, err := json.Marshal(payload)
	if err != nil {
		return nil, fmt.Errorf("encode %s payload: %w", typ, err)
	}
	base := []asynq.Option{asynq.Queue(QueueDefault), asynq.MaxRetry(asynqMaxRetry),
		asynq.Retention(r.ResultTTL), asynq.Timeout(SendTimeout)}
	return asynq.NewTask(typ, b, append(base, opts...)...), nil
}

// SMSResult is the result of an sms:send task, in the agent hub's response
// shape; skipped messages carry the reason instead of a SID.
type SMSResult struct {
	MessageSID  string `json:"messageSid,omitempty"`
	Status      string `json:"status"`
	DateCreated string `json:"dateCreated,omitempty"` // RFC 3339
	Reason      string `json:"reason,omitempty"`
	// SendAt (RFC 3339) is when Twilio sends a message it holds as
	// scheduled (Status "scheduled").
	SendAt string `json:"sendAt,omitempty"`
}
