package vapi

import (
	"context"
	"crypto/sha256"
	"encoding/hex"
	"encoding/json"
	"errors"
	"io"
	"log/slog"
	"net/http"
	"time"

	"github.com/sbagenthub/twilio-worker/calls"
	"github.com/sbagenthub/twilio-worker/commlog"
	"github.com/sbagenthub/twilio-worker/phone"
)

// Tools the Server URL runs: the agent hub's actions an assistant may call.
const (
	ToolSendSMS       = "sendSMS"
	ToolMakeCall      = "makeCall"
	ToolGetCallStatus = "getCallStatus"
	ToolHangupCall    = "hangupCall"
)

// Defaults and limits of the Server URL.
const (
	// ToolWaitDefault is VAPI_TOOL_WAIT: how long a tool call waits for
	// Twilio's acceptance before it answers that the task is queued (VAPI
	// waits 20 s by default for the whole answer).
	ToolWaitDefault = 8 * time.Second
	// MaxBodyBytes bounds a server message (end-of-call reports carry the
	// whole conversation).
	MaxBodyBytes = 4 << 20
)

// Actions runs the agent hub's actions for tool calls: the one way in that
// /v1/actions uses too. key is the task id (derived from the VAPI call and
// tool call, so a repeated tool call finds its task instead of acting
// again); ctx's deadline bounds the wait for the task's outcome. Errors are
// single facts naming the argument at fault ("to: …"), safe to show.
type Actions interface {
	Do(ctx context.Context, name string, args json.RawMessage, key string) (Result, error)
}

// Result is what an action did.
type Result struct {
	// Answer is the action's answer: the task's result once it completed,
	// or the answer of an action that makes no task (getCallStatus).
	Answer json.RawMessage
	TaskID string
	// Pending: the task is queued and Twilio (or VAPI) had not accepted it
	// when the wait ran out; it goes on.
	Pending bool
}

// Text is the single-line result string of a tool call.
func (r Result) Text() string {
	if r.Pending || len(r.Answer) == 0 {
		b, _ := json.Marshal(map[string]string{"taskId": r.TaskID, "status": "queued",
			"note": "accepted and queued; not confirmed yet, it goes out shortly"})
		return string(b)
	}
	var v any
	if json.Unmarshal(r.Answer, &v) == nil {
		if b, err := json.Marshal(v); err == nil {
			return string(b)
		}
	}
	return OneLine(string(r.Answer))
}

// ToolKey is the task id of a tool call: one per VAPI call and tool call id,
// at most 128 characters of [A-Za-z0-9:], whatever the ids hold.
func ToolKey(callID, toolCallID string) string {
	sum := sha256.Sum256([]byte(callID + "\x00" + toolCallID))
	return "vapi:" + hex.EncodeToString(sum[:20])
}

// Handler serves POST /vapi/server, VAPI's Server URL.
type Handler struct {
	Auth    Auth
	Actions Actions
	Calls   *calls.Store // status updates go to the call's record; nil: not kept
	Comms   *commlog.Log // the communications log
	// Ours reports whether a number is one of ours: the number a call is on
	// becomes a sendSMS's or makeCall's default from when it is.
	Ours func(number string) bool
	// ToolWait bounds the wait of one message's tool calls together.
	ToolWait time.Duration
	// AssistantID answers assistant-request (an inbound call on a number
	// with no assistant of its own); empty: not answered.
	AssistantID string
	Logger      *slog.Logger
	// Observe counts each tool call by tool (one of the four, or "unknown")
	// and outcome (done, queued, error); nil counts nothing.
	Observe func(tool, outcome string)
}

func (h *Handler) observe(tool, outcome string) {
	if h.Observe == nil {
		return
	}
	switch tool {
	case ToolSendSMS, ToolMakeCall, ToolGetCallStatus, ToolHangupCall:
	default:
		tool = "unknown"
	}
	h.Observe(tool, outcome)
}

func (h *Handler) logger() *slog.Logger {
	if h.Logger == nil {
		return slog.New(slog.DiscardHandler)
	}
	return h.Logger
}

func writeJSON(w http.ResponseWriter, status int, v any) {
	w.Header().Set("Content-Type", "application/json")
	w.WriteHeader(status)
	enc := json.NewEncoder(w)
	enc.SetEscapeHTML(false)
	_ = enc.Encode(v)
}

func writeError(w http.ResponseWriter, status int, code, message string) {
	writeJSON(w, status, map[string]any{"error": map[string]string{"code": code, "message": message}})
}

// ServeHTTP implements http.Handler.
func (h *Handler) ServeHTTP(w http.ResponseWriter, r *http.Request) {
	if r.Method != http.MethodPost {
		w.Header().Set("Allow", http.MethodPost)
		writeError(w, http.StatusMethodNotAllowed, "method_not_allowed", "/vapi/server takes POST")
		return
	}
	if !h.Auth.Enabled() {
		writeError(w, http.StatusForbidden, "forbidden", "the VAPI Server URL is off: set VAPI_SERVER_TOKEN or VAPI_HMAC_SECRET")
		return
	}
	body, err := io.ReadAll(http.MaxBytesReader(w, r.Body, MaxBodyBytes))
	if err != nil {
		var tooBig *http.MaxBytesError
		if errors.As(err, &tooBig) {
			writeError(w, http.StatusRequestEntityTooLarge, "too_large", "server message is over 4 MiB")
			return
		}
		writeError(w, http.StatusBadRequest, "malformed_json", "could not read the request body")
		return
	}
	if err := h.Auth.Check(r.Header, body); err != nil {
		h.logger().Warn("VAPI server message refused: bad authentication", "remote", r.RemoteAddr)
		writeError(w, http.StatusUnauthorized, "unauthorized", err.Error())
		return
	}
	var env Envelope
	if err := json.Unmarshal(body, &env); err != nil || env.Message.Type == "" {
		writeError(w, http.StatusBadRequest, "malformed_json", `body must be a VAPI server message {"message":{"type":…}}`)
		return
	}
	m := &env.Message
	switch m.Type {
	case TypeToolCalls:
		writeJSON(w, http.StatusOK, h.toolCalls(r.Context(), m))
	case TypeFunctionCall:
		writeJSON(w, http.StatusOK, h.functionCall(r.Context(), m))
	case TypeStatusUpdate, TypeEndOfCallReport:
		h.callEvent(r.Context(), m)
		writeJSON(w, http.StatusOK, map[string]any{})
	case TypeAssistantRequest:
		if h.AssistantID == "" {
			writeJSON(w, http.StatusOK, map[string]string{"error": "no assistant is configured for this number"})
			return
		}
		writeJSON(w, http.StatusOK, map[string]string{"assistantId": h.AssistantID})
	default:
		// Informational messages need nothing but 200.
		writeJSON(w, http.StatusOK, map[string]any{})
	}
}

// toolCalls runs each tool call in order and answers them in that order.
// Their waits share one deadline, so the answer comes within ToolWait and a
// little.
func (h *Handler) toolCalls(ctx context.Context, m *Message) ToolResponse {
	wait := h.ToolWait
	if wait <= 0 {
		wait = ToolWaitDefault
	}
	ctx, cancel := context.WithTimeout(ctx, wait)
	defer cancel()
	callID := ""
	if m.Call != nil {
		callID = m.Call.ID
	}
	list := m.Calls()
	out := ToolResponse{Results: make([]ToolResult, 0, len(list))}
	for _, tc := range list {
		res := ToolResult{ToolCallID: tc.ID, Name: tc.Function.Name}
		text, err := h.run(ctx, m, callID, tc)
		if err != nil {
			if res.Error = OneLine(err.Error()); res.Error == "" {
				res.Error = "failed"
			}
		} else {
			res.Result = text
		}
		out.Results = append(out.Results, res)
	}
	return out
}

// functionCall answers a legacy function-call message: {"result": …} or
// {"error": …}. It has no id of its own, so the call is keyed by the VAPI
// call, the function and its parameters: the same request twice in one call
// acts once.
func (h *Handler) functionCall(ctx context.Context, m *Message) map[string]string {
	if m.FunctionCall == nil {
		return map[string]string{"error": "functionCall: is missing"}
	}
	wait := h.ToolWait
	if wait <= 0 {
		wait = ToolWaitDefault
	}
	ctx, cancel := context.WithTimeout(ctx, wait)
	defer cancel()
	callID := ""
	if m.Call != nil {
		callID = m.Call.ID
	}
	fc := m.FunctionCall
	sum := sha256.Sum256(append([]byte(fc.Name+"\x00"), fc.Parameters...))
	tc := ToolCall{ID: "function-call:" + hex.EncodeToString(sum[:16]), Function: ToolFunction{Name: fc.Name, Arguments: fc.Parameters}}
	text, err := h.run(ctx, m, callID, tc)
	if err != nil {
		msg := OneLine(err.Error())
		if msg == "" {
			msg = "failed"
		}
		return map[string]string{"error": msg}
	}
	return map[string]string{"result": text}
}

type toolError string

func (e toolError) Error() string { return string(e) }

func (h *Handler) run(ctx context.Context, m *Message, callID string, tc ToolCall) (string, error) {
	log := h.logger().With("vapiCall", callID, "toolCall", tc.ID, "tool", tc.Function.Name)
	if tc.ID == "" {
		h.observe(tc.Function.Name, "error")
		return "", toolError("toolCallId: is missing")
	}
	switch tc.Function.Name {
	case ToolSendSMS, ToolMakeCall, ToolGetCallStatus, ToolHangupCall:
	default:
		h.observe(tc.Function.Name, "error")
		return "", toolError("function: unknown tool " + quote(tc.Function.Name) + "; this server runs sendSMS, makeCall, getCallStatus and hangupCall")
	}
	args, err := tc.Function.Arguments.Object()
	if err != nil {
		h.observe(tc.Function.Name, "error")
		return "", toolError("arguments: " + err.Error())
	}
	h.fillDefaults(m, tc.Function.Name, args)
	raw, _ := json.Marshal(args)
	res, err := h.Actions.Do(ctx, tc.Function.Name, raw, ToolKey(callID, tc.ID))
	if err != nil {
		h.observe(tc.Function.Name, "error")
		log.Info("tool call refused or failed", "err", err)
		return "", err
	}
	if res.Pending {
		h.observe(tc.Function.Name, "queued")
	} else {
		h.observe(tc.Function.Name, "done")
	}
	log.Info("tool call done", "task", res.TaskID, "pending", res.Pending)
	return res.Text(), nil
}

// fillDefaults gives sendSMS and makeCall the caller as to when the
// assistant left it out, and the number the call is on as from when that
// is one of ours (not for a call an assistant conducts: VAPI's number
// places those).
func (h *Handler) fillDefaults(m *Message, tool string, args map[string]json.RawMessage) {
	if tool != ToolSendSMS && tool != ToolMakeCall {
		return
	}
	if missing(args["to"]) {
		if n := m.CustomerNumber(); n != "" {
			args["to"], _ = json.Marshal(n)
		}
	}
	agent := tool == ToolMakeCall && (!missing(args["assistantId"]) || string(args["agent"]) == "true")
	if missing(args["from"]) && !agent && m.PhoneNumber != nil && m.PhoneNumber.Number != "" && h.Ours != nil && h.Ours(m.PhoneNumber.Number) {
		args["from"], _ = json.Marshal(m.PhoneNumber.Number)
	}
}

func missing(v json.RawMessage) bool {
	s := string(v)
	return len(v) == 0 || s == "null" || s == `""`
}

func quote(s string) string {
	if len(s) > 40 {
		s = s[:40] + "…"
	}
	b, _ := json.Marshal(s)
	return string(b)
}

// callEvent puts a status-update or end-of-call-report into the call's
// record and the communications log. The record is the one of the VAPI call
// when the worker placed it, else the Twilio call's (phoneCallProviderId),
// made when missing.
func (h *Handler) callEvent(ctx context.Context, m *Message) {
	if m.Call == nil || m.Call.ID == "" {
		return
	}
	c := m.Call
	log := h.logger().With("vapiCall", c.ID, "type", m.Type)
	u := calls.Update{Status: m.Status, At: time.Now(), Source: "vapi", EndedReason: m.EndedReason, Cost: m.Cost}
	started, ended := m.StartedAt, m.EndedAt
	if m.Type == TypeEndOfCallReport {
		u.Status = calls.StatusEnded
		if started == "" {
			started = c.StartedAt
		}
		if ended == "" {
			ended = c.EndedAt
		}
		if u.Cost == nil {
			u.Cost = c.Cost
		}
	}
	if u.EndedReason == "" {
		u.EndedReason = c.EndedReason
	}
	u.StartTime, u.EndTime = Time(started), Time(ended)
	u.Duration = duration(started, ended)

	// The customer is the callee of an outbound call and the caller of an
	// inbound one.
	to, from := m.CustomerNumber(), ""
	if m.PhoneNumber != nil {
		from = m.PhoneNumber.Number
	}
	if c.Type == "inboundPhoneCall" {
		to, from = from, to
	}
	key, taskID := c.ID, ""
	if h.Calls != nil {
		rec, err := h.Calls.Get(ctx, c.ID)
		switch {
		case err == nil:
			taskID = rec.TaskID
			u.Linked = c.PhoneCallProviderID
		case errors.Is(err, calls.ErrNotFound):
			// An outbound call is VAPI's own (this worker's, whose record
			// may not be made yet): keyed by its id. Another call (an
			// inbound one, or a Twilio call an assistant joined) goes to the
			// Twilio call's record.
			provider, linked := calls.ProviderVAPI, c.PhoneCallProviderID
			if c.Type != "outboundPhoneCall" && calls.KindOf(c.PhoneCallProviderID) == calls.KindTwilio {
				key, provider, linked = c.PhoneCallProviderID, calls.ProviderTwilio, c.ID
			} else if calls.KindOf(c.ID) == calls.KindInvalid {
				log.Warn("VAPI call event without a usable call id; not recorded")
				key = ""
			}
			if key != "" {
				if err := h.Calls.Create(ctx, calls.Record{SID: key, To: to, From: from, Status: "queued",
					Provider: provider, Linked: linked, AssistantID: c.AssistantID}); err != nil {
					log.Warn("could not create the call record", "err", err)
				}
				if r, err := h.Calls.Get(ctx, key); err == nil {
					taskID = r.TaskID
				}
				u.Linked = linked
			}
		default:
			log.Warn("could not read the call record", "err", err)
			key = ""
		}
		if key != "" {
			if _, _, err := h.Calls.Apply(ctx, key, u); err != nil {
				log.Warn("could not update the call record", "err", err)
			}
		}
	}
	e := commlog.Entry{Event: commlog.CallStatus, Channel: "voice", TaskID: taskID, SID: c.ID, To: to, From: from,
		Status: u.Status, Reason: u.EndedReason, Source: "vapi"}
	if m.Type == TypeEndOfCallReport {
		e.Event = commlog.CallEnded
		if m.Artifact != nil {
			e.Body = m.Artifact.Transcript // redacted unless LOG_BODIES=keep
		}
	}
	if err := h.Comms.Append(ctx, e); err != nil {
		log.Warn("communications log append failed", "err", err)
	}
	log.Info("VAPI call event", "status", u.Status, "endedReason", u.EndedReason, "to", phone.Number(to))
}
