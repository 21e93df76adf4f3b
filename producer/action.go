package producer

import (
	"bytes"
	"encoding/json"
	"errors"
	"fmt"
	"maps"
	"slices"
	"strings"
	"time"
	"unicode"
	"unicode/utf8"

	"github.com/sbagenthub/twilio-worker/calls"
	"github.com/sbagenthub/twilio-worker/campaign"
	"github.com/sbagenthub/twilio-worker/tasks"
)

// The agent hub's action names (the seed's "Available Actions").
const (
	ActionSendSMS       = "sendSMS"
	ActionMakeCall      = "makeCall"
	ActionGetCallStatus = "getCallStatus"
	ActionSendBulkSMS   = "sendBulkSMS"
	ActionHangupCall    = "hangupCall"
)

// Codes of ActionError, also the "code" of the HTTP error answer.
const (
	CodeMalformedJSON = "malformed_json"
	CodeUnknownAction = "unknown_action"
	CodeInvalidField  = "invalid_field"
)

// Action is one decoded request of the agent hub:
// {"action":"sendSMS","arguments":{"to":"+14155551234","body":"…"}}.
// Exactly one of SMS, Call, CallSID and Bulk is meaningful, chosen by Name;
// an action registered with Handle has only Args.
type Action struct {
	Name string
	// Priority is the queue the task goes to (critical, default, bulk); ""
	// leaves the task type's default.
	Priority string
	// SendAt is when the task runs (sendSMS, makeCall); zero: now.
	SendAt  time.Time
	SMS     tasks.SMSPayload  // sendSMS
	Call    tasks.CallPayload // makeCall
	CallSID string            // getCallStatus, hangupCall: a Twilio CallSid or a VAPI call id
	Bulk    campaign.Request  // sendBulkSMS
	// Args is the raw "arguments" member, for actions registered with Handle.
	Args json.RawMessage
	// Key is the client's idempotency key (the Idempotency-Key header); the
	// entry point sets it.
	Key string
}

// ActionError is a request Decode refuses. Field names the offending
// JSON member ("action", "arguments" or an argument such as "to"); it is
// empty only for CodeMalformedJSON.
type ActionError struct {
	Code    string
	Field   string
	Problem string
}

func (e *ActionError) Error() string {
	if e.Field == "" {
		return e.Problem
	}
	return e.Field + ": " + e.Problem
}

func invalid(field, format string, args ...any) *ActionError {
	return &ActionError{Code: CodeInvalidField, Field: field, Problem: fmt.Sprintf(format, args...)}
}

// argKind is the JSON type an argument must have.
type argKind int

const (
	kindString argKind = iota
	kindBool
)

type argSpec struct {
	kind     argKind
	required bool
}

// actionArgs lists every argument each action accepts. Unknown arguments are
// refused so that a typo ("boby") is an error rather than a silent default.
var actionArgs = map[string]map[string]argSpec{
	ActionSendSMS: {
		"to": {kindString, true}, "body": {kindString, true}, "from": {kindString, false},
		"priority": {kindString, false}, "class": {kindString, false}, "validFor": {kindString, false},
		"sendAt": {kindString, false},
	},
	ActionMakeCall: {
		"to": {kindString, true}, "from": {kindString, false}, "url": {kindString, false},
		"twiml": {kindString, false}, "say": {kindString, false}, "record": {kindBool, false},
		"priority": {kindString, false}, "sendAt": {kindString, false}, "assistantId": {kindString, false}, "agent": {kindBool, false},
	},
	ActionGetCallStatus: {
		"callSid": {kindString, true},
	},
	ActionHangupCall: {
		"callSid": {kindString, true},
	},
}

// Decode parses the agent hub's action JSON for the built-in actions; see
// Producer.Decode.
func Decode(data []byte) (Action, error) { return decode(data, nil) }

// Decode parses the agent hub's action JSON. It checks the envelope, the
// action's name, and each argument's name and JSON type, and refuses JSON
// that a lenient decoder would quietly mend: a member given twice, invalid
// UTF-8. The values themselves (numbers, body length …) are the task
// constructors' to judge. Every error is an *ActionError. Members of the
// envelope other than "action" and "arguments" are ignored. An action
// registered with Handle is decoded only as far as the envelope.
func (p *Producer) Decode(data []byte) (Action, error) { return decode(data, p.actions) }

func decode(data []byte, custom map[string]ActionFunc) (Action, error) {
	var a Action
	if len(bytes.TrimSpace(data)) == 0 {
		return a, &ActionError{Code: CodeMalformedJSON, Problem: `request body is empty; send {"action":…,"arguments":{…}}`}
	}
	if path := duplicateMember(data); path != nil {
		field := path[0]
		if len(path) > 1 && path[0] == "arguments" {
			field = path[1]
		}
		return a, invalid(fieldName(field), "is given more than once")
	}
	var env map[string]json.RawMessage
	if err := json.Unmarshal(data, &env); err != nil {
		var typeErr *json.UnmarshalTypeError
		if errors.As(err, &typeErr) {
			return a, &ActionError{Code: CodeMalformedJSON, Problem: `request body must be a JSON object {"action":…,"arguments":{…}}`}
		}
		return a, &ActionError{Code: CodeMalformedJSON, Problem: "request body is not valid JSON: " + strings.TrimPrefix(err.Error(), "json: ")}
	}
	if env == nil { // the body was null
		return a, &ActionError{Code: CodeMalformedJSON, Problem: `request body must be a JSON object {"action":…,"arguments":{…}}`}
	}

	raw, ok := env["action"]
	if !ok || isNull(raw) {
		return a, invalid("action", "is required: sendSMS, makeCall, getCallStatus or hangupCall")
	}
	if err := json.Unmarshal(raw, &a.Name); err != nil {
		return a, invalid("action", "must be a string: sendSMS, makeCall, getCallStatus or hangupCall")
	}
	if _, ok := custom[a.Name]; ok || a.Name == ActionSendBulkSMS {
		if !utf8.Valid(env["arguments"]) {
			return a, invalid("arguments", "is not valid UTF-8")
		}
	}
	if _, ok := custom[a.Name]; ok {
		a.Args = env["arguments"]
		return a, nil
	}
	if a.Name == ActionSendBulkSMS {
		return decodeBulk(a, env["arguments"])
	}
	specs, ok := actionArgs[a.Name]
	if !ok {
		return a, &ActionError{Code: CodeUnknownAction, Field: "action",
			Problem: fmt.Sprintf("unknown action %s; must be sendSMS, makeCall, getCallStatus, hangupCall or sendBulkSMS", quoteShort(a.Name))}
	}

	rawArgs, ok := env["arguments"]
	if !ok || isNull(rawArgs) {
		return a, invalid("arguments", "is required: an object such as {\"to\":…}")
	}
	var args map[string]json.RawMessage
	if err := json.Unmarshal(rawArgs, &args); err != nil || args == nil {
		return a, invalid("arguments", "must be an object")
	}
	if bad := invalidUTF8(args); bad != "" {
		return a, invalid(fieldName(bad), "is not valid UTF-8")
	}
	// Report the first problem in a stable order: unknown names first.
	names := make([]string, 0, len(args))
	for name := range args {
		names = append(names, name)
	}
	slices.Sort(names)
	for _, name := range names {
		if _, known := specs[name]; !known {
			return a, invalid(fieldName(name), "is not an argument of %s; it takes %s", a.Name, argList(specs))
		}
	}
	str := map[string]string{}
	flags := map[string]bool{}
	for _, name := range slices.Sorted(maps.Keys(specs)) {
		spec := specs[name]
		v, present := args[name]
		if !present || isNull(v) {
			if spec.required {
				return a, invalid(name, "is required")
			}
			continue
		}
		switch spec.kind {
		case kindString:
			var s string
			if err := json.Unmarshal(v, &s); err != nil {
				return a, invalid(name, "must be a string")
			}
			str[name] = s
		case kindBool:
			var b bool
			if err := json.Unmarshal(v, &b); err != nil {
				return a, invalid(name, "must be true or false")
			}
			flags[name] = b
		}
	}
	if p, ok := str["priority"]; ok {
		if !tasks.ValidQueue(p) {
			return a, invalid("priority", "must be critical, default or bulk")
		}
		a.Priority = p
	}
	if v, ok := str["sendAt"]; ok {
		t, err := ParseSendAt(v)
		if err != nil {
			var fe *tasks.FieldError
			errors.As(err, &fe)
			return a, invalid("sendAt", "%s", fe.Problem)
		}
		a.SendAt = t
	}
	switch a.Name {
	case ActionSendSMS:
		a.SMS = tasks.SMSPayload{To: str["to"], Body: str["body"], From: str["from"], Class: str["class"], ValidFor: str["validFor"]}
	case ActionMakeCall:
		a.Call = tasks.CallPayload{To: str["to"], From: str["from"], URL: str["url"], Twiml: str["twiml"], Say: str["say"],
			Record: flags["record"], AssistantID: str["assistantId"], Agent: flags["agent"]}
		if say, given := str["say"]; given && strings.TrimSpace(say) == "" && a.Call.URL == "" && a.Call.Twiml == "" {
			return a, invalid("say", "is empty: give the text to read aloud")
		}
	case ActionGetCallStatus, ActionHangupCall:
		a.CallSID = strings.TrimSpace(str["callSid"])
		if _, err := calls.CheckID(a.CallSID); err != nil {
			return a, invalid("callSid", "%v", err)
		}
	}
	return a, nil
}

// DecodeCampaign reads a campaign submission's JSON,
// {"campaign","body","recipients":[…]} (and from, class), as strictly as
// an action's arguments (POST /v1/campaigns).
func DecodeCampaign(data []byte) (campaign.Request, error) {
	if path := duplicateMember(data); path != nil {
		return campaign.Request{}, invalid(fieldName(path[0]), "is given more than once")
	}
	if !utf8.Valid(data) {
		return campaign.Request{}, &ActionError{Code: CodeMalformedJSON, Problem: "request body is not valid UTF-8"}
	}
	var env any
	if err := json.Unmarshal(data, &env); err != nil {
		return campaign.Request{}, &ActionError{Code: CodeMalformedJSON, Problem: "request body is not valid JSON: " + strings.TrimPrefix(err.Error(), "json: ")}
	}
	if _, ok := env.(map[string]any); !ok {
		return campaign.Request{}, &ActionError{Code: CodeMalformedJSON, Problem: `request body must be a JSON object {"campaign","body","recipients":[…]}`}
	}
	a, err := decodeBulk(Action{Name: ActionSendBulkSMS}, data)
	return a.Bulk, err
}

// decodeBulk reads sendBulkSMS's arguments: {"campaign","body","recipients":[…]}
// (and from, class). The values are the campaign's to judge.
func decodeBulk(a Action, raw json.RawMessage) (Action, error) {
	if len(raw) == 0 || isNull(raw) {
		return a, invalid("arguments", `is required: {"campaign","body","recipients":[…]}`)
	}
	dec := json.NewDecoder(bytes.NewReader(raw))
	dec.DisallowUnknownFields()
	if err := dec.Decode(&a.Bulk); err != nil {
		var typeErr *json.UnmarshalTypeError
		switch {
		case errors.As(err, &typeErr) && typeErr.Field != "":
			return a, invalid(fieldName(typeErr.Field), "has the wrong type")
		case strings.HasPrefix(err.Error(), "json: unknown field "):
			name := strings.Trim(strings.TrimPrefix(err.Error(), "json: unknown field "), `"`)
			return a, invalid(fieldName(name), "is not an argument of sendBulkSMS; it takes campaign, body, recipients, from, class")
		}
		return a, invalid("arguments", `must be an object {"campaign","body","recipients":[…]}`)
	}
	return a, nil
}

// invalidUTF8 names the first member (in name order) whose raw value is not
// valid UTF-8; "" when all are. encoding/json would replace such bytes with
// U+FFFD and the message would go out mangled.
func invalidUTF8(members map[string]json.RawMessage) string {
	for _, name := range slices.Sorted(maps.Keys(members)) {
		if !utf8.Valid(members[name]) {
			return name
		}
	}
	return ""
}

// duplicateMember returns the path of the first object member given twice
// at the same level (encoding/json keeps the last silently), or nil. Input
// that is not JSON returns nil: the decoder reports it.
func duplicateMember(data []byte) []string {
	dec := json.NewDecoder(bytes.NewReader(data))
	dec.UseNumber()
	var walk func(path []string) ([]string, bool)
	walk = func(path []string) ([]string, bool) {
		tok, err := dec.Token()
		if err != nil {
			return nil, false
		}
		d, ok := tok.(json.Delim)
		if !ok {
			return nil, true
		}
		switch d {
		case '{':
			seen := map[string]bool{}
			for dec.More() {
				kt, err := dec.Token()
				key, isKey := kt.(string)
				if err != nil || !isKey {
					return nil, false
				}
				at := append(slices.Clone(path), key)
				if seen[key] {
					return at, false
				}
				seen[key] = true
				if dup, ok := walk(at); !ok {
					return dup, false
				}
			}
		case '[':
			for dec.More() {
				if dup, ok := walk(path); !ok {
					return dup, false
				}
			}
		}
		if _, err := dec.Token(); err != nil { // the closing delimiter
			return nil, false
		}
		return nil, true
	}
	dup, _ := walk(nil)
	return dup
}

func isNull(raw json.RawMessage) bool { return string(bytes.TrimSpace(raw)) == "null" }

func argList(specs map[string]argSpec) string {
	names := slices.Sorted(maps.Keys(specs))
	return strings.Join(names, ", ")
}

// fieldName makes a client-supplied member name safe and short enough to
// echo back: printable, at most 64 characters, never empty.
func fieldName(s string) string {
	if s == "" {
		return `""`
	}
	var b strings.Builder
	n := 0
	for _, r := range s {
		if n++; n > 64 {
			b.WriteString("…")
			break
		}
		if r == utf8.RuneError || !unicode.IsPrint(r) {
			r = '?'
		}
		b.WriteRune(r)
	}
	return b.String()
}

// quoteShort quotes a client-supplied value for a message, shortened.
func quoteShort(s string) string {
	if len(s) > 40 {
		s = s[:40] + "…"
	}
	return fmt.Sprintf("%q", s)
}
