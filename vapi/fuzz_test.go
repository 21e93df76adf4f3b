package vapi

import (
	"encoding/json"
	"net/http"
	"strings"
	"testing"
)

// FuzzServerMessage: whatever VAPI (or anyone with the token) posts, the
// Server URL answers 200 or 4xx, never panics, and a tool-calls answer has
// one single-line result per call, in order.
func FuzzServerMessage(f *testing.F) {
	for _, seed := range []string{
		`{"message":{"type":"tool-calls","toolCallList":[{"id":"a","function":{"name":"sendSMS","arguments":{"to":"+14155550100","body":"hi"}}}]}}`,
		`{"message":{"type":"tool-calls","toolCalls":[{"id":"a","function":{"name":"sendSMS","arguments":"{\"body\":\"x\"}"}}],"customer":{"number":"+1"}}}`,
		`{"message":{"type":"tool-calls","toolCallList":[{"id":"","function":{"name":"","arguments":[]}}]}}`,
		`{"message":{"type":"status-update","status":"ringing","call":{"id":"c"}}}`,
		`{"message":{"type":"end-of-call-report","endedReason":"x","call":{"id":"c","phoneCallProviderId":"CA00"}}}`,
		`{"message":{"type":"assistant-request"}}`,
		`{"message":{"type":5}}`, `[]`, `null`, ``,
	} {
		f.Add(seed)
	}
	h := &Handler{Auth: Auth{Token: "tok"}, Actions: &fakeActions{}, Ours: func(string) bool { return true }}
	f.Fuzz(func(t *testing.T, body string) {
		w := post(t, h, body, map[string]string{"Authorization": "Bearer tok"})
		if w.Code != http.StatusOK && w.Code != http.StatusBadRequest && w.Code != http.StatusRequestEntityTooLarge {
			t.Fatalf("status %d for %q", w.Code, body)
		}
		var env Envelope
		if w.Code != http.StatusOK || json.Unmarshal([]byte(body), &env) != nil || env.Message.Type != TypeToolCalls {
			return
		}
		var resp ToolResponse
		if err := json.Unmarshal(w.Body.Bytes(), &resp); err != nil {
			t.Fatalf("answer %s: %v", w.Body, err)
		}
		calls := env.Message.Calls()
		if len(resp.Results) != len(calls) {
			t.Fatalf("%d results for %d calls", len(resp.Results), len(calls))
		}
		for i, r := range resp.Results {
			if r.ToolCallID != calls[i].ID || strings.ContainsAny(r.Result+r.Error, "\r\n") || (r.Result == "") == (r.Error == "") {
				t.Fatalf("result %d %+v for call %+v", i, r, calls[i])
			}
		}
	})
}
