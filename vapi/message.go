package vapi

import (
	"bytes"
	"encoding/json"
	"errors"
	"time"
)

// Server message types the worker acts on.
const (
	TypeToolCalls        = "tool-calls"
	TypeStatusUpdate     = "status-update"
	TypeEndOfCallReport  = "end-of-call-report"
	TypeAssistantRequest = "assistant-request"
	// TypeFunctionCall is the legacy form of a tool call (an assistant's
	// model.functions): one call, no id, answered {"result": …}.
	TypeFunctionCall = "function-call"
)

// Envelope is the body of every server message: {"message":{"type":…}}.
type Envelope struct {
	Message Message `json:"message"`
}

// Message is a server message, with the members of the types the worker
// reads. Members of other types are ignored.
type Message struct {
	Type        string       `json:"type"`
	Call        *Call        `json:"call,omitempty"`
	Customer    *Customer    `json:"customer,omitempty"`
	PhoneNumber *PhoneNumber `json:"phoneNumber,omitempty"`
	Timestamp   json.Number  `json:"timestamp,omitempty"`

	// tool-calls. VAPI documents toolCallList; toolCalls, a mirror, is read
	// when toolCallList is absent.
	ToolCallList         []ToolCall        `json:"toolCallList,omitempty"`
	ToolCalls            []ToolCall        `json:"toolCalls,omitempty"`
	ToolWithToolCallList []json.RawMessage `json:"toolWithToolCallList,omitempty"`

	// function-call (legacy): name and parameters, a string or an object.
	FunctionCall *FunctionCall `json:"functionCall,omitempty"`

	// status-update and end-of-call-report.
	Status      string    `json:"status,omitempty"`
	EndedReason string    `json:"endedReason,omitempty"`
	Cost        *float64  `json:"cost,omitempty"`
	StartedAt   string    `json:"startedAt,omitempty"`
	EndedAt     string    `json:"endedAt,omitempty"`
	Artifact    *Artifact `json:"artifact,omitempty"`
}

// Calls returns the tool calls of a tool-calls message.
func (m *Message) Calls() []ToolCall {
	if len(m.ToolCallList) > 0 {
		return m.ToolCallList
	}
	return m.ToolCalls
}

// CustomerNumber is the caller's (or callee's) number: message.customer,
// else message.call.customer.
func (m *Message) CustomerNumber() string {
	if m.Customer != nil && m.Customer.Number != "" {
		return m.Customer.Number
	}
	if m.Call != nil && m.Call.Customer != nil {
		return m.Call.Customer.Number
	}
	return ""
}

// FunctionCall is the call of a legacy function-call message.
type FunctionCall struct {
	Name       string    `json:"name"`
	Parameters Arguments `json:"parameters"`
}

// Artifact is what a call leaves behind: the transcript and recording.
type Artifact struct {
	Transcript   string `json:"transcript,omitempty"`
	RecordingURL string `json:"recordingUrl,omitempty"`
}

// Customer is the other party of a call.
type Customer struct {
	Number string `json:"number,omitempty"`
	Name   string `json:"name,omitempty"`
}

// PhoneNumber is the number a call is on.
type PhoneNumber struct {
	ID     string `json:"id,omitempty"`
	Number string `json:"number,omitempty"`
}

// Monitor holds a live call's URLs.
type Monitor struct {
	ListenURL  string `json:"listenUrl,omitempty"`
	ControlURL string `json:"controlUrl,omitempty"`
}

// Call is VAPI's Call resource, as the API returns it and server messages
// carry it.
type Call struct {
	ID                  string    `json:"id"`
	OrgID               string    `json:"orgId,omitempty"`
	Type                string    `json:"type,omitempty"`
	Status              string    `json:"status,omitempty"`
	EndedReason         string    `json:"endedReason,omitempty"`
	CreatedAt           string    `json:"createdAt,omitempty"`
	UpdatedAt           string    `json:"updatedAt,omitempty"`
	StartedAt           string    `json:"startedAt,omitempty"`
	EndedAt             string    `json:"endedAt,omitempty"`
	Cost                *float64  `json:"cost,omitempty"`
	AssistantID         string    `json:"assistantId,omitempty"`
	PhoneNumberID       string    `json:"phoneNumberId,omitempty"`
	PhoneCallProvider   string    `json:"phoneCallProvider,omitempty"`
	PhoneCallProviderID string    `json:"phoneCallProviderId,omitempty"`
	Customer            *Customer `json:"customer,omitempty"`
	Monitor             *Monitor  `json:"monitor,omitempty"`
}

// Time parses one of VAPI's ISO 8601 times; zero when empty or unreadable.
func Time(s string) time.Time {
	t, err := time.Parse(time.RFC3339Nano, s)
	if err != nil {
		return time.Time{}
	}
	return t
}

// Duration is the call's talk time in whole seconds (rounded up), from
// startedAt to endedAt; 0 until it ended.
func (c *Call) Duration() int { return duration(c.StartedAt, c.EndedAt) }

func duration(started, ended string) int {
	s, e := Time(started), Time(ended)
	if s.IsZero() || e.IsZero() || !e.After(s) {
		return 0
	}
	d := e.Sub(s)
	secs := int(d / time.Second)
	if d%time.Second != 0 {
		secs++
	}
	return secs
}

// ToolCall is one call of a tool by the assistant.
type ToolCall struct {
	ID       string       `json:"id"`
	Type     string       `json:"type,omitempty"`
	Function ToolFunction `json:"function"`
}

// ToolFunction names the function and its arguments.
type ToolFunction struct {
	Name      string    `json:"name"`
	Arguments Arguments `json:"arguments"`
}

// Arguments are a tool call's arguments as a JSON object. VAPI documents
// them as a JSON string holding the object and sends the object itself in
// real traffic; both are accepted, and either way Arguments holds the
// object.
type Arguments json.RawMessage

// ErrArguments is the error of arguments that are not an object.
var ErrArguments = errors.New("arguments must be a JSON object, or a string holding one")

// UnmarshalJSON implements json.Unmarshaler.
func (a *Arguments) UnmarshalJSON(b []byte) error {
	b = bytes.TrimSpace(b)
	if len(b) > 0 && b[0] == '"' {
		var s string
		if err := json.Unmarshal(b, &s); err != nil {
			return ErrArguments
		}
		b = bytes.TrimSpace([]byte(s))
		if len(b) == 0 {
			b = []byte("{}")
		}
	}
	if string(b) == "null" {
		b = []byte("{}")
	}
	var probe map[string]json.RawMessage
	if err := json.Unmarshal(b, &probe); err != nil || probe == nil {
		// Keep the call decodable: the handler answers this call's error.
		*a = nil
		return nil
	}
	*a = append((*a)[:0], b...)
	return nil
}

// MarshalJSON implements json.Marshaler: the object form.
func (a Arguments) MarshalJSON() ([]byte, error) {
	if len(a) == 0 {
		return []byte("{}"), nil
	}
	return a, nil
}

// Object returns the arguments by name, or ErrArguments.
func (a Arguments) Object() (map[string]json.RawMessage, error) {
	if len(a) == 0 {
		return nil, ErrArguments
	}
	var m map[string]json.RawMessage
	if err := json.Unmarshal(a, &m); err != nil || m == nil {
		return nil, ErrArguments
	}
	return m, nil
}

// ToolResult is the answer to one tool call: Result or Error, each a single
// line.
type ToolResult struct {
	ToolCallID string `json:"toolCallId"`
	Name       string `json:"name,omitempty"`
	Result     string `json:"result,omitempty"`
	Error      string `json:"error,omitempty"`
}

// ToolResponse is the answer to a tool-calls message, results in the order
// of the calls.
type ToolResponse struct {
	Results []ToolResult `json:"results"`
}
