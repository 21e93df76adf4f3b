package vapi

import (
	"bytes"
	"context"
	"encoding/json"
	"errors"
	"net/http"
	"net/http/httptest"
	"strconv"
	"strings"
	"sync"
	"testing"
	"time"

	"github.com/sbagenthub/twilio-worker/calls"
	"github.com/sbagenthub/twilio-worker/commlog"
	"github.com/sbagenthub/twilio-worker/internal/redistest"
)

func TestArgumentsObjectOrString(t *testing.T) {
	tests := []struct {
		name, in string
		want     string // "" means an error from Object
	}{
		{"object", `{"to":"+1","body":"hi"}`, `{"to":"+1","body":"hi"}`},
		{"string", `"{\"to\":\"+1\",\"body\":\"hi\"}"`, `{"to":"+1","body":"hi"}`},
		{"empty string", `""`, `{}`},
		{"null", `null`, `{}`},
		{"array", `[1,2]`, ""},
		{"string of garbage", `"not json"`, ""},
		{"number", `42`, ""},
	}
	for _, tt := range tests {
		t.Run(tt.name, func(t *testing.T) {
			var f ToolFunction
			if err := json.Unmarshal([]byte(`{"name":"x","arguments":`+tt.in+`}`), &f); err != nil {
				t.Fatalf("decode: %v", err)
			}
			m, err := f.Arguments.Object()
			if tt.want == "" {
				if !errors.Is(err, ErrArguments) {
					t.Fatalf("Object() = %v, %v; want ErrArguments", m, err)
				}
				return
			}
			if err != nil {
				t.Fatal(err)
			}
			var want map[string]json.RawMessage
			_ = json.Unmarshal([]byte(tt.want), &want)
			if len(m) != len(want) {
				t.Fatalf("Object() = %v; want %s", m, tt.want)
			}
			for k, v := range want {
				if string(m[k]) != string(v) {
					t.Fatalf("%s = %s; want %s", k, m[k], v)
				}
			}
		})
	}
}

func TestAuth(t *testing.T) {
	now := time.Unix(1_700_000_000, 0)
	body := []byte(`{"message":{"type":"status-update"}}`)
	sign := func(ts time.Time, ms bool, secret string, b []byte) http.Header {
		s := strconv.FormatInt(ts.Unix(), 10)
		if ms {
			s = strconv.FormatInt(ts.UnixMilli(), 10)
		}
		return http.Header{"X-Timestamp": {s}, "X-Signature": {Sign(secret, s, b)}}
	}
	token := Auth{Token: "tok", Now: func() time.Time { return now }}
	hmacOnly := Auth{HMACSecret: "sec", Now: func() time.Time { return now }}
	tests := []struct {
		name string
		auth Auth
		h    http.Header
		ok   bool
	}{
		{"bearer", token, http.Header{"Authorization": {"Bearer tok"}}, true},
		{"x-vapi-secret", token, http.Header{"X-Vapi-Secret": {"tok"}}, true},
		{"wrong bearer", token, http.Header{"Authorization": {"Bearer tok2"}}, false},
		{"bearer prefix only", token, http.Header{"Authorization": {"tok"}}, false},
		{"none", token, http.Header{}, false},
		{"hmac seconds", hmacOnly, sign(now, false, "sec", body), true},
		{"hmac milliseconds", hmacOnly, sign(now.Add(-4*time.Minute), true, "sec", body), true},
		{"hmac sha256= prefix", hmacOnly, func() http.Header {
			h := sign(now, false, "sec", body)
			h.Set("X-Signature", "sha256="+h.Get("X-Signature"))
			return h
		}(), true},
		{"hmac stale", hmacOnly, sign(now.Add(-6*time.Minute), false, "sec", body), false},
		{"hmac future", hmacOnly, sign(now.Add(6*time.Minute), false, "sec", body), false},
		{"hmac wrong secret", hmacOnly, sign(now, false, "other", body), false},
		{"hmac other body", hmacOnly, sign(now, false, "sec", []byte(`{}`)), false},
		{"hmac no timestamp", hmacOnly, http.Header{"X-Signature": {Sign("sec", "", body)}}, false},
		{"token does not pass hmac-only", hmacOnly, http.Header{"Authorization": {"Bearer sec"}}, false},
	}
	for _, tt := range tests {
		t.Run(tt.name, func(t *testing.T) {
			err := tt.auth.Check(tt.h, body)
			if (err == nil) != tt.ok {
				t.Fatalf("Check = %v; want ok=%v", err, tt.ok)
			}
			if err != nil && !errors.Is(err, ErrUnauthorized) {
				t.Fatalf("Check = %v; want ErrUnauthorized", err)
			}
		})
	}
}

// fakeActions records what it is asked to do.
type fakeActions struct {
	mu    sync.Mutex
	calls []fakeCall
}

type fakeCall struct {
	name, key string
	args      map[string]any
}

func (f *fakeActions) Do(_ context.Context, name string, args json.RawMessage, key string) (Result, error) {
	var m map[string]any
	_ = json.Unmarshal(args, &m)
	f.mu.Lock()
	f.calls = append(f.calls, fakeCall{name, key, m})
	f.mu.Unlock()
	if to, _ := m["to"].(string); to == "bad" {
		return Result{}, errors.New("to: phone number is too short\nsecond line")
	}
	return Result{Answer: json.RawMessage(`{"messageSid": "SM1",
		"status": "queued"}`), TaskID: key}, nil
}

func post(t *testing.T, h http.Handler, body string, header map[string]string) *httptest.ResponseRecorder {
	t.Helper()
	r := httptest.NewRequest(http.MethodPost, "/vapi/server", strings.NewReader(body))
	for k, v := range header {
		r.Header.Set(k, v)
	}
	w := httptest.NewRecorder()
	h.ServeHTTP(w, r)
	return w
}

func TestToolCalls(t *testing.T) {
	fa := &fakeActions{}
	counted := map[string]int{}
	h := &Handler{Auth: Auth{Token: "tok"}, Actions: fa, Ours: func(n string) bool { return n == "+15005550006" },
		Observe: func(tool, outcome string) { counted[tool+" "+outcome]++ }}
	auth := map[string]string{"Authorization": "Bearer tok"}
	msg := `{"message":{"type":"tool-calls","call":{"id":"c1","customer":{"number":"+14155550100"}},
		"phoneNumber":{"number":"+15005550006"},
		"toolCallList":[
			{"id":"a","type":"function","function":{"name":"sendSMS","arguments":{"body":"hi"}}},
			{"id":"b","type":"function","function":{"name":"sendSMS","arguments":"{\"to\":\"bad\",\"body\":\"x\"}"}},
			{"id":"c","type":"function","function":{"name":"sendBulkSMS","arguments":{}}},
			{"id":"d","type":"function","function":{"name":"makeCall","arguments":{"to":"+14155550101","agent":true}}},
			{"id":"e","type":"function","function":{"name":"sendSMS","arguments":[1]}}
		]}}`
	w := post(t, h, msg, auth)
	if w.Code != 200 {
		t.Fatalf("status %d %s", w.Code, w.Body)
	}
	var resp ToolResponse
	if err := json.Unmarshal(w.Body.Bytes(), &resp); err != nil {
		t.Fatal(err)
	}
	ids := ""
	for _, r := range resp.Results {
		ids += r.ToolCallID
		if strings.ContainsAny(r.Result+r.Error, "\n\r") {
			t.Fatalf("result %+v has a line break", r)
		}
	}
	if ids != "abcde" {
		t.Fatalf("results in order %q; want abcde", ids)
	}
	r := resp.Results
	if r[0].Result != `{"messageSid":"SM1","status":"queued"}` || r[0].Error != "" {
		t.Fatalf("a: %+v", r[0])
	}
	if r[1].Error != "to: phone number is too short second line" {
		t.Fatalf("b: %+v", r[1])
	}
	if !strings.HasPrefix(r[2].Error, "function: unknown tool") || !strings.HasPrefix(r[4].Error, "arguments:") {
		t.Fatalf("c, e: %+v %+v", r[2], r[4])
	}
	if len(fa.calls) != 3 {
		t.Fatalf("actions run %+v; want a, b and d", fa.calls)
	}
	a, d := fa.calls[0], fa.calls[2]
	if a.args["to"] != "+14155550100" || a.args["from"] != "+15005550006" {
		t.Fatalf("sendSMS defaults: %+v; want the caller as to and our number as from", a.args)
	}
	if _, ok := d.args["from"]; ok {
		t.Fatalf("an assistant's call got a from: %+v", d.args)
	}
	if counted["sendSMS done"] != 1 || counted["sendSMS error"] != 2 || counted["unknown error"] != 1 || counted["makeCall done"] != 1 {
		t.Fatalf("counted %v", counted)
	}
	if a.key != ToolKey("c1", "a") || a.key == ToolKey("c2", "a") || len(a.key) > 128 {
		t.Fatalf("key %q", a.key)
	}
}

func TestServerURLRefusals(t *testing.T) {
	fa := &fakeActions{}
	msg := `{"message":{"type":"tool-calls","toolCallList":[{"id":"a","function":{"name":"sendSMS","arguments":{"to":"+14155550100","body":"x"}}}]}}`
	if w := post(t, &Handler{Actions: fa}, msg, map[string]string{"Authorization": "Bearer "}); w.Code != http.StatusForbidden {
		t.Fatalf("no auth configured: %d; want 403", w.Code)
	}
	h := &Handler{Auth: Auth{Token: "tok"}, Actions: fa}
	if w := post(t, h, msg, map[string]string{"Authorization": "Bearer nope"}); w.Code != http.StatusUnauthorized {
		t.Fatalf("bad token: %d; want 401", w.Code)
	}
	if w := post(t, h, `{"nope":1}`, map[string]string{"X-Vapi-Secret": "tok"}); w.Code != http.StatusBadRequest {
		t.Fatalf("not a message: %d; want 400", w.Code)
	}
	if len(fa.calls) != 0 {
		t.Fatalf("refused requests ran actions: %+v", fa.calls)
	}
}

func TestCallEventsLinkTheTwilioCall(t *testing.T) {
	srv := redistest.Start(t)
	rdb := srv.Client(t)
	records := calls.NewStore(rdb)
	for _, keep := range []bool{false, true} {
		log := commlog.New(rdb, commlog.Config{KeepBodies: keep})
		h := &Handler{Auth: Auth{Token: "tok"}, Calls: records, Comms: log}
		sid := "CA" + strings.Repeat("ab", 16)
		if keep {
			sid = "CA" + strings.Repeat("cd", 16)
		}
		callJSON := `"call":{"id":"c-1","phoneCallProvider":"twilio","phoneCallProviderId":"` + sid + `","customer":{"number":"+14155550100"}}`
		for _, m := range []string{
			`{"message":{"type":"status-update","status":"in-progress",` + callJSON + `}}`,
			`{"message":{"type":"end-of-call-report","endedReason":"customer-ended-call","cost":0.12,
				"startedAt":"2026-01-01T10:00:00.000Z","endedAt":"2026-01-01T10:00:41.500Z",
				"artifact":{"transcript":"AI: hello\nUser: secret stuff"},` + callJSON + `}}`,
		} {
			if w := post(t, h, m, map[string]string{"X-Vapi-Secret": "tok"}); w.Code != 200 {
				t.Fatalf("status %d %s", w.Code, w.Body)
			}
		}
		rec, err := records.Get(context.Background(), sid)
		if err != nil {
			t.Fatal(err)
		}
		if rec.Status != calls.StatusEnded || rec.EndedReason != "customer-ended-call" || rec.Duration != 42 ||
			rec.Cost == nil || *rec.Cost != 0.12 || rec.Linked != "c-1" {
			t.Fatalf("record %+v", rec)
		}
		var bodies []string
		if _, err := log.Read(context.Background(), commlog.Filter{SID: "c-1"}, func(e commlog.Entry) error {
			if e.Event == commlog.CallEnded {
				bodies = append(bodies, e.Body)
			}
			return nil
		}); err != nil {
			t.Fatal(err)
		}
		last := bodies[len(bodies)-1]
		if keep != strings.Contains(last, "secret stuff") {
			t.Fatalf("LOG_BODIES keep=%v: transcript logged as %q", keep, last)
		}
	}
}

func TestResultText(t *testing.T) {
	if s := (Result{TaskID: "k", Pending: true}).Text(); !strings.Contains(s, `"status":"queued"`) || !bytes.Contains([]byte(s), []byte(`"taskId":"k"`)) {
		t.Fatalf("pending text %s", s)
	}
}

func TestErrorMessagesMaskNumbers(t *testing.T) {
	got := errorMessage([]byte(`{"message":["customer.number +14155550123 is not allowed","limit reached"],"statusCode":400}`))
	if strings.Contains(got, "4155550123") || !strings.Contains(got, "limit reached") {
		t.Fatalf("errorMessage = %q", got)
	}
}

func TestLegacyFunctionCall(t *testing.T) {
	fa := &fakeActions{}
	h := &Handler{Auth: Auth{Token: "tok"}, Actions: fa}
	msg := `{"message":{"type":"function-call","call":{"id":"c9","customer":{"number":"+14155550100"}},
		"functionCall":{"name":"sendSMS","parameters":"{\"body\":\"hi\"}"}}}`
	var keys []string
	for range 2 {
		w := post(t, h, msg, map[string]string{"Authorization": "Bearer tok"})
		var resp map[string]string
		if err := json.Unmarshal(w.Body.Bytes(), &resp); err != nil || w.Code != 200 || resp["result"] == "" {
			t.Fatalf("function-call: %d %s", w.Code, w.Body)
		}
	}
	for _, c := range fa.calls {
		keys = append(keys, c.key)
		if c.args["to"] != "+14155550100" {
			t.Fatalf("args %+v", c.args)
		}
	}
	if len(keys) != 2 || keys[0] != keys[1] {
		t.Fatalf("keys %v: the same request twice must name the same task", keys)
	}
}

func TestOutboundCallEventKeysTheVAPICall(t *testing.T) {
	srv := redistest.Start(t)
	rdb := srv.Client(t)
	records := calls.NewStore(rdb)
	h := &Handler{Auth: Auth{Token: "tok"}, Calls: records, Comms: commlog.New(rdb, commlog.Config{})}
	const id = "3f1c2a9e-8b7d-4e6f-9a0b-1c2d3e4f5a6b"
	sid := "CA" + strings.Repeat("ef", 16)
	m := `{"message":{"type":"status-update","status":"queued","call":{"id":"` + id + `","type":"outboundPhoneCall","phoneCallProviderId":"` + sid + `","customer":{"number":"+14155550100"}}}}`
	if w := post(t, h, m, map[string]string{"X-Vapi-Secret": "tok"}); w.Code != 200 {
		t.Fatalf("status %d", w.Code)
	}
	rec, err := records.Get(context.Background(), id)
	if err != nil || rec.Provider != calls.ProviderVAPI || rec.Linked != sid || rec.To != "+14155550100" {
		t.Fatalf("record %+v, %v; want the VAPI call's", rec, err)
	}
	if _, err := records.Get(context.Background(), sid); !errors.Is(err, calls.ErrNotFound) {
		t.Fatalf("a second record under the CallSid: %v", err)
	}
}
