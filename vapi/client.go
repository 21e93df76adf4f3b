package vapi

import (
	"bytes"
	"context"
	"encoding/json"
	"errors"
	"fmt"
	"io"
	"net/http"
	"net/url"
	"strconv"
	"strings"
	"time"

	"github.com/sbagenthub/twilio-worker/phone"
	"github.com/sbagenthub/twilio-worker/twilioapi"
)

// APIURLDefault is VAPI's API.
const APIURLDefault = "https://api.vapi.ai"

// requestTimeout bounds one request to VAPI.
const requestTimeout = 30 * time.Second

// Client is a client of VAPI's REST API: the calls an assistant conducts.
type Client struct {
	BaseURL       string           // APIURLDefault when empty
	APIKey        twilioapi.Secret // VAPI's private key, sent as a Bearer token
	PhoneNumberID string           // VAPI_PHONE_NUMBER_ID: the number calls are placed from
	HTTP          *http.Client     // nil: one with requestTimeout
}

// Error is a failed request to VAPI.
type Error struct {
	Op      string
	Status  int    // HTTP status; 0 when there was no answer
	Message string // VAPI's message, or the transport's
	Err     error
}

func (e *Error) Error() string {
	if e.Status == 0 {
		return fmt.Sprintf("vapi %s: %s", e.Op, e.Message)
	}
	return fmt.Sprintf("vapi %s: HTTP %d: %s", e.Op, e.Status, e.Message)
}

func (e *Error) Unwrap() error { return e.Err }

// Refused reports whether VAPI answered that the request cannot succeed as
// it is (4xx other than 408 and 429): certainly not acted on, and not worth
// repeating.
func (e *Error) Refused() bool {
	return e.Status >= 400 && e.Status < 500 && e.Status != http.StatusRequestTimeout && e.Status != http.StatusTooManyRequests
}

// NotFound reports whether VAPI has no such call.
func (e *Error) NotFound() bool { return e.Status == http.StatusNotFound }

// IsNotFound reports whether err is VAPI's 404.
func IsNotFound(err error) bool {
	var e *Error
	return errors.As(err, &e) && e.NotFound()
}

// IsRefused reports whether err is a refusal (see Error.Refused).
func IsRefused(err error) bool {
	var e *Error
	return errors.As(err, &e) && e.Refused()
}

// CreateCall is the body of POST /call.
type CreateCall struct {
	AssistantID   string   `json:"assistantId"`
	PhoneNumberID string   `json:"phoneNumberId,omitempty"`
	Customer      Customer `json:"customer"`
	Name          string   `json:"name,omitempty"`
}

func (c *Client) base() string {
	if c.BaseURL == "" {
		return APIURLDefault
	}
	return strings.TrimRight(c.BaseURL, "/")
}

func (c *Client) httpClient() *http.Client {
	if c.HTTP != nil {
		return c.HTTP
	}
	return &http.Client{Timeout: requestTimeout}
}

func (c *Client) do(ctx context.Context, op, method, rawURL string, in, out any) error {
	var body io.Reader
	if in != nil {
		b, err := json.Marshal(in)
		if err != nil {
			return &Error{Op: op, Message: err.Error(), Err: err}
		}
		body = bytes.NewReader(b)
	}
	req, err := http.NewRequestWithContext(ctx, method, rawURL, body)
	if err != nil {
		return &Error{Op: op, Message: "bad request URL", Err: err}
	}
	if strings.HasPrefix(rawURL, c.base()+"/") {
		// The key goes to VAPI's API only, never to another URL (a call's
		// control URL needs none).
		req.Header.Set("Authorization", "Bearer "+c.APIKey.Reveal())
	}
	req.Header.Set("Accept", "application/json")
	if in != nil {
		req.Header.Set("Content-Type", "application/json")
	}
	resp, err := c.httpClient().Do(req)
	if err != nil {
		return &Error{Op: op, Message: transportReason(err), Err: err}
	}
	defer resp.Body.Close()
	b, err := io.ReadAll(io.LimitReader(resp.Body, 8<<20))
	if err != nil {
		return &Error{Op: op, Message: "answer cut off: " + transportReason(err), Err: err}
	}
	if resp.StatusCode/100 != 2 {
		return &Error{Op: op, Status: resp.StatusCode, Message: errorMessage(b)}
	}
	if out == nil {
		return nil
	}
	if err := json.Unmarshal(b, out); err != nil {
		return &Error{Op: op, Status: resp.StatusCode, Message: "answer is not the expected JSON", Err: err}
	}
	return nil
}

func transportReason(err error) string {
	switch {
	case errors.Is(err, context.DeadlineExceeded):
		return "timed out"
	case errors.Is(err, context.Canceled):
		return "canceled"
	}
	var ue *url.Error
	if errors.As(err, &ue) {
		return ue.Err.Error()
	}
	return err.Error()
}

// errorMessage picks VAPI's message out of an error body
// ({"message":"…"} or {"message":["…"]}), shortened and on one line.
func errorMessage(b []byte) string {
	var v struct {
		Message json.RawMessage `json:"message"`
		Error   string          `json:"error"`
	}
	msg := strings.TrimSpace(string(b))
	if json.Unmarshal(b, &v) == nil {
		var s string
		var list []string
		switch {
		case json.Unmarshal(v.Message, &s) == nil && s != "":
			msg = s
		case json.Unmarshal(v.Message, &list) == nil && len(list) > 0:
			msg = strings.Join(list, "; ")
		case v.Error != "":
			msg = v.Error
		}
	}
	msg = OneLine(msg)
	if len(msg) > 300 {
		msg = msg[:300] + "…"
	}
	// VAPI may quote the customer's number: none reaches a log or a task's error.
	return phone.MaskText(msg)
}

// CreateCall places a call an assistant conducts (POST /call). VAPI has no
// idempotency key: a lost answer may leave a placed call behind, which
// ListCalls finds.
func (c *Client) CreateCall(ctx context.Context, p CreateCall) (*Call, error) {
	if p.PhoneNumberID == "" {
		p.PhoneNumberID = c.PhoneNumberID
	}
	var call Call
	if err := c.do(ctx, "create call", http.MethodPost, c.base()+"/call", p, &call); err != nil {
		return nil, err
	}
	if call.ID == "" {
		return nil, &Error{Op: "create call", Status: http.StatusCreated, Message: "answer has no call id"}
	}
	return &call, nil
}

// GetCall fetches a call (GET /call/{id}).
func (c *Client) GetCall(ctx context.Context, id string) (*Call, error) {
	var call Call
	if err := c.do(ctx, "get call", http.MethodGet, c.base()+"/call/"+url.PathEscape(id), nil, &call); err != nil {
		return nil, err
	}
	return &call, nil
}

// ListParams filters ListCalls.
type ListParams struct {
	CreatedAfter time.Time // createdAtGt
	AssistantID  string
	Limit        int // 100 when zero
}

// ListCalls lists calls, newest first (GET /call).
func (c *Client) ListCalls(ctx context.Context, p ListParams) ([]Call, error) {
	q := url.Values{}
	if !p.CreatedAfter.IsZero() {
		q.Set("createdAtGt", p.CreatedAfter.UTC().Format(time.RFC3339Nano))
	}
	if p.AssistantID != "" {
		q.Set("assistantId", p.AssistantID)
	}
	if p.Limit <= 0 {
		p.Limit = 100
	}
	q.Set("limit", strconv.Itoa(p.Limit))
	var raw json.RawMessage
	if err := c.do(ctx, "list calls", http.MethodGet, c.base()+"/call?"+q.Encode(), nil, &raw); err != nil {
		return nil, err
	}
	var list []Call
	if err := json.Unmarshal(raw, &list); err != nil {
		// Paginated form: {"results":[…]}.
		var page struct{ Results []Call }
		if err := json.Unmarshal(raw, &page); err != nil {
			return nil, &Error{Op: "list calls", Status: http.StatusOK, Message: "answer is not a list of calls", Err: err}
		}
		list = page.Results
	}
	return list, nil
}

// EndCall hangs up a call: through its live call control URL when known
// (POST {"type":"end-call"}), else DELETE /call/{id}.
func (c *Client) EndCall(ctx context.Context, id, controlURL string) error {
	if controlURL != "" {
		return c.do(ctx, "end call", http.MethodPost, controlURL, map[string]string{"type": "end-call"}, nil)
	}
	return c.do(ctx, "end call", http.MethodDelete, c.base()+"/call/"+url.PathEscape(id), nil, nil)
}

// OneLine makes s one line, as VAPI requires of a tool result.
func OneLine(s string) string {
	return strings.Join(strings.Fields(s), " ")
}
