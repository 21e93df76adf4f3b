package tasks

import (
	"bytes"
	"encoding/json"
	"encoding/xml"
	"errors"
	"io"
	"net/url"
	"regexp"
	"strings"
	"time"
	"unicode/utf8"

	"github.com/hibiken/asynq"

	"github.com/sbagenthub/twilio-worker/calls"
)

// Call task types.
const (
	TypeMakeCall = "call:make"
	TypePollCall = "call:poll"
)

// TwimlMaxChars is Twilio's limit on inline TwiML.
const TwimlMaxChars = 4000

// URLMaxChars bounds a TwiML URL (browsers' and Twilio's practical limit).
const URLMaxChars = 2048

// CallPayload is the payload of a call:make task: exactly one of URL, Twiml
// and Say says what the call does.
type CallPayload struct {
	To     string `json:"to"`
	From   string `json:"from,omitempty"`
	URL    string `json:"url,omitempty"`   // TwiML URL (http or https)
	Twiml  string `json:"twiml,omitempty"` // inline TwiML document
	Say    string `json:"say,omitempty"`   // text read aloud; the worker builds the TwiML
	Record bool   `json:"record,omitempty"`
	Source string `json:"source,omitempty"` // agent or operator, as SMSPayload.Source
	// AssistantID makes the call one a VAPI assistant conducts: VAPI places
	// it (from VAPI_PHONE_NUMBER_ID; From, URL, Twiml, Say and Record do not
	// apply). Agent asks for the default assistant (VAPI_ASSISTANT_ID).
	AssistantID string `json:"assistantId,omitempty"`
	Agent       bool   `json:"agent,omitempty"`
}

// assistantIDPattern is what an assistant id may hold (VAPI's are UUIDs).
var assistantIDPattern = regexp.MustCompile(`^[A-Za-z0-9_-]{1,64}$`)

// Normalize validates p and returns it with numbers in E.164.
func (p CallPayload) Normalize(r Rules) (CallPayload, error) {
	r = r.WithDefaults()
	to, err := ParseNumber("to", p.To, r.DefaultRegion)
	if err != nil {
		return p, err
	}
	p.To = to.String()
	if p.From = strings.TrimSpace(p.From); p.From != "" {
		from, err := ParseNumber("from", p.From, r.DefaultRegion)
		if err != nil {
			return p, err
		}
		p.From = from.String()
	}
	if err := checkSource(p.Source); err != nil {
		return p, err
	}
	p.AssistantID = strings.TrimSpace(p.AssistantID)
	if p.Agent && p.AssistantID == "" {
		if r.AssistantID == "" {
			return p, fieldErr("agent", "needs VAPI_ASSISTANT_ID set on the worker, or give assistantId")
		}
		p.AssistantID = r.AssistantID
	}
	if p.AssistantID != "" {
		if !assistantIDPattern.MatchString(p.AssistantID) {
			return p, fieldErr("assistantId", "must be a VAPI assistant id (letters, digits, '-' and '_', at most 64)")
		}
		for field, v := range map[string]string{"url": p.URL, "twiml": p.Twiml, "say": p.Say, "from": p.From} {
			if strings.TrimSpace(v) != "" {
				return p, fieldErr(field, "does not apply to a call an assistant conducts (assistantId)")
			}
		}
		if p.Record {
			return p, fieldErr("record", "does not apply to a call an assistant conducts (the assistant's settings record it)")
		}
		p.Agent = false
		return p, nil
	}
	given := 0
	for _, s := range []string{p.URL, p.Twiml, p.Say} {
		if !Blank(s) {
			given++
		}
	}
	switch {
	case given == 0 && p.Say != "":
		return p, fieldErr("say", "is empty: give the text to read aloud")
	case given == 0 && p.Twiml != "":
		return p, fieldErr("twiml", "is empty")
	case given == 0:
		return p, fieldErr("url", "one of url, twiml or say is required")
	case given > 1:
		return p, fieldErr("url", "give only one of url, twiml or say")
	}
	switch {
	case p.URL != "":
		if len(p.URL) > URLMaxChars {
			return p, fieldErr("url", "is longer than %d characters", URLMaxChars)
		}
		u, err := url.Parse(strings.TrimSpace(p.URL))
		if err != nil || (u.Scheme != "http" && u.Scheme != "https") || u.Host == "" {
			return p, fieldErr("url", "must be an absolute http or https URL")
		}
		p.URL = u.String()
	case p.Twiml != "":
		if utf8.RuneCountInString(p.Twiml) > TwimlMaxChars {
			return p, fieldErr("twiml", "is longer than Twilio's %d characters", TwimlMaxChars)
		}
		if !isTwiml(p.Twiml) {
			return p, fieldErr("twiml", "must be a TwiML document: <Response>…</Response>")
		}
	case p.Say != "":
		if !utf8.ValidString(p.Say) {
			return p, fieldErr("say", "is not valid UTF-8")
		}
		if len(SayTwiml(p.Say)) > TwimlMaxChars {
			return p, fieldErr("say", "is too long for one call's TwiML (%d characters at most)", TwimlMaxChars)
		}
	}
	return p, nil
}

// isTwiml reports whether s is well-formed XML whose root is <Response>.
func isTwiml(s string) bool {
	dec := xml.NewDecoder(strings.NewReader(s))
	root := ""
	for {
		tok, err := dec.Token()
		if err != nil {
			return root == "Response" && errors.Is(err, io.EOF)
		}
		if se, ok := tok.(xml.StartElement); ok && root == "" {
			root = se.Name.Local
			if root != "Response" {
				return false
			}
		}
	}
}

// SayTwiml is the TwiML that reads text aloud, escaped.
func SayTwiml(text string) string {
	var b bytes.Buffer
	b.WriteString(`<?xml version="1.0" encoding="UTF-8"?><Response><Say>`)
	_ = xml.EscapeText(&b, []byte(strings.TrimSpace(text)))
	b.WriteString(`</Say></Response>`)
	return b.String()
}

// NewMakeCallTask validates p and returns a call:make task (queue default,
// result kept Rules.ResultTTL unless opts say otherwise; the handler gives up
// after MaxRetryDefault failures).
func NewMakeCallTask(p CallPayload, r Rules, opts ...asynq.Option) (*asynq.Task, error) {
	r = r.WithDefaults()
	p, err := p.Normalize(r)
	if err != nil {
		return nil, err
	}
	return newTask(TypeMakeCall, p, r, opts)
}

// PollPayload is the payload of a call:poll task.
type PollPayload struct {
	CallSID string `json:"callSid"`
}

// Validate checks what a call:poll task is given before its id goes into
// a Redis key or a provider's URL: a Twilio call SID (CA + 32 hex digits) or
// a VAPI call id (a UUID), each for its own kind (calls.CheckID).
func (p PollPayload) Validate() error {
	if _, err := calls.CheckID(p.CallSID); err != nil {
		return fieldErr("callSid", "%v", err)
	}
	return nil
}

// PollTaskID is the task id of a call's follow-up, so it is made only once.
func PollTaskID(callSID string) string { return "call-poll" + InternalSep + callSID }

// NewPollCallTask returns the follow-up task of a call, first run after delay.
func NewPollCallTask(callSID string, delay, resultTTL time.Duration) *asynq.Task {
	payload, _ := json.Marshal(PollPayload{CallSID: callSID})
	return asynq.NewTask(TypePollCall, payload, asynq.Queue(QueueDefault), asynq.TaskID(PollTaskID(callSID)),
		asynq.ProcessIn(delay), asynq.MaxRetry(asynqMaxRetry), asynq.Retention(resultTTL), asynq.Timeout(time.Minute))
}

// CallResult is the result of a call:make task.
type CallResult struct {
	CallSID     string `json:"callSid,omitempty"`
	Status      string `json:"status"`
	DateCreated string `json:"dateCreated,omitempty"`
	Reason      string `json:"reason,omitempty"`
	// Provider is "vapi" for a call an assistant conducts; CallSID is then
	// VAPI's call id.
	Provider string `json:"provider,omitempty"`
}

// CallState is the agent hub's getCallStatus answer.
type CallState struct {
	CallSID   string `json:"callSid"`
	Status    string `json:"status"`
	Duration  int    `json:"duration"`
	StartTime string `json:"startTime,omitempty"`
	EndTime   string `json:"endTime,omitempty"`
	To        string `json:"to"`
	From      string `json:"from"`
	// A call an assistant conducts (Provider "vapi"): why it ended, what it
	// cost (USD), and its Twilio CallSid (Linked).
	Provider    string   `json:"provider,omitempty"`
	EndedReason string   `json:"endedReason,omitempty"`
	Cost        *float64 `json:"cost,omitempty"`
	Linked      string   `json:"linked,omitempty"`
}
