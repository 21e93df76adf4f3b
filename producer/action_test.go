package producer

import (
	"errors"
	"strings"
	"testing"
)

// The seed's three examples (docs: Twilio Integration, "Available Actions").
const (
	seedSendSMS       = `{"action":"sendSMS","arguments":{"to":"+14155551234","body":"Your verification code is 123456"}}`
	seedMakeCall      = `{"action":"makeCall","arguments":{"to":"+14155551234","url":"https://your-server.com/twiml/welcome"}}`
	seedGetCallStatus = `{"action":"getCallStatus","arguments":{"callSid":"CA0123456789abcdef0123456789abcdef"}}`
)

func TestDecodeActionSeedExamples(t *testing.T) {
	a, err := Decode([]byte(seedSendSMS))
	if err != nil || a.Name != ActionSendSMS || a.SMS.To != "+14155551234" || a.SMS.Body != "Your verification code is 123456" || a.Priority != "" {
		t.Fatalf("sendSMS: %+v, %v", a, err)
	}
	a, err = Decode([]byte(seedMakeCall))
	if err != nil || a.Name != ActionMakeCall || a.Call.To != "+14155551234" || a.Call.URL != "https://your-server.com/twiml/welcome" {
		t.Fatalf("makeCall: %+v, %v", a, err)
	}
	a, err = Decode([]byte(seedGetCallStatus))
	if err != nil || a.Name != ActionGetCallStatus || a.CallSID != "CA0123456789abcdef0123456789abcdef" {
		t.Fatalf("getCallStatus: %+v, %v", a, err)
	}
	a, err = Decode([]byte(`{"action":"sendSMS","arguments":{"to":"+14155551234","body":"hi","from":"ACME","priority":"critical","class":"alert","validFor":"10m"},"id":"ignored"}`))
	if err != nil || a.Priority != "critical" || a.SMS.From != "ACME" || a.SMS.Class != "alert" || a.SMS.ValidFor != "10m" {
		t.Fatalf("all sendSMS arguments: %+v, %v", a, err)
	}
	a, err = Decode([]byte(`{"action":"makeCall","arguments":{"to":"+14155551234","say":"hello","record":true,"priority":"bulk"}}`))
	if err != nil || !a.Call.Record || a.Call.Say != "hello" || a.Priority != "bulk" {
		t.Fatalf("all makeCall arguments: %+v, %v", a, err)
	}
}

func TestDecodeActionErrors(t *testing.T) {
	tests := []struct {
		name, body, code, field, problem string
	}{
		{"empty", ``, CodeMalformedJSON, "", "empty"},
		{"blank", " \n", CodeMalformedJSON, "", "empty"},
		{"truncated", `{"action":"sendSMS"`, CodeMalformedJSON, "", "not valid JSON"},
		{"trailing garbage", seedSendSMS + `x`, CodeMalformedJSON, "", "not valid JSON"},
		{"two objects", seedSendSMS + seedSendSMS, CodeMalformedJSON, "", "not valid JSON"},
		{"array", `[]`, CodeMalformedJSON, "", "JSON object"},
		{"string", `"sendSMS"`, CodeMalformedJSON, "", "JSON object"},
		{"null", `null`, CodeMalformedJSON, "", "JSON object"},
		{"form", `to=%2B14155551234&body=hi`, CodeMalformedJSON, "", "not valid JSON"},
		{"no action", `{"arguments":{}}`, CodeInvalidField, "action", "is required"},
		{"null action", `{"action":null,"arguments":{}}`, CodeInvalidField, "action", "is required"},
		{"action number", `{"action":1,"arguments":{}}`, CodeInvalidField, "action", "must be a string"},
		{"unknown action", `{"action":"sendFax","arguments":{}}`, CodeUnknownAction, "action", "sendFax"},
		{"action case", `{"action":"sendsms","arguments":{}}`, CodeUnknownAction, "action", "must be sendSMS"},
		{"no arguments", `{"action":"sendSMS"}`, CodeInvalidField, "arguments", "is required"},
		{"arguments array", `{"action":"sendSMS","arguments":["+14155551234"]}`, CodeInvalidField, "arguments", "must be an object"},
		{"no to", `{"action":"sendSMS","arguments":{"body":"hi"}}`, CodeInvalidField, "to", "is required"},
		{"null to", `{"action":"sendSMS","arguments":{"to":null,"body":"hi"}}`, CodeInvalidField, "to", "is required"},
		{"no body", `{"action":"sendSMS","arguments":{"to":"+14155551234"}}`, CodeInvalidField, "body", "is required"},
		{"to number", `{"action":"sendSMS","arguments":{"to":14155551234,"body":"hi"}}`, CodeInvalidField, "to", "must be a string"},
		{"body object", `{"action":"sendSMS","arguments":{"to":"+14155551234","body":{"text":"hi"}}}`, CodeInvalidField, "body", "must be a string"},
		{"typo", `{"action":"sendSMS","arguments":{"to":"+14155551234","boby":"hi"}}`, CodeInvalidField, "boby", "not an argument of sendSMS"},
		{"bad priority", `{"action":"sendSMS","arguments":{"to":"+14155551234","body":"hi","priority":"urgent"}}`, CodeInvalidField, "priority", "critical, default or bulk"},
		{"priority number", `{"action":"sendSMS","arguments":{"to":"+14155551234","body":"hi","priority":1}}`, CodeInvalidField, "priority", "must be a string"},
		{"record string", `{"action":"makeCall","arguments":{"to":"+14155551234","record":"yes"}}`, CodeInvalidField, "record", "true or false"},
		{"call no to", `{"action":"makeCall","arguments":{"url":"https://x"}}`, CodeInvalidField, "to", "is required"},
		{"no callSid", `{"action":"getCallStatus","arguments":{}}`, CodeInvalidField, "callSid", "is required"},
		{"message sid", `{"action":"getCallStatus","arguments":{"callSid":"SM0123456789abcdef0123456789abcdef"}}`, CodeInvalidField, "callSid", "call SID"},
		{"priority on status", `{"action":"getCallStatus","arguments":{"callSid":"CA0123456789abcdef0123456789abcdef","priority":"critical"}}`, CodeInvalidField, "priority", "not an argument"},
		{"control chars in name", "{\"action\":\"sendSMS\",\"arguments\":{\"a\\u0000b\":1}}", CodeInvalidField, "a?b", "not an argument"},
	}
	for _, tt := range tests {
		t.Run(tt.name, func(t *testing.T) {
			_, err := Decode([]byte(tt.body))
			var ae *ActionError
			if !errors.As(err, &ae) {
				t.Fatalf("err = %v, want an *ActionError", err)
			}
			if ae.Code != tt.code || ae.Field != tt.field || !strings.Contains(ae.Problem, tt.problem) {
				t.Fatalf("got {%s %q %q}, want {%s %q …%q…}", ae.Code, ae.Field, ae.Problem, tt.code, tt.field, tt.problem)
			}
		})
	}
}

func FuzzDecode(f *testing.F) {
	for _, s := range []string{seedSendSMS, seedMakeCall, seedGetCallStatus, ``, `{}`, `null`, `[1]`,
		`{"action":"sendSMS","arguments":{"to":1}}`, `{"action":"makeCall","arguments":{"to":"x","record":null}}`,
		`{"action":"sendSMS","arguments":{"to":"+1","body":"b","priority":"bulk","x":[]}}`,
		"{\"action\":\"\xff\",\"arguments\":{}}"} {
		f.Add([]byte(s))
	}
	f.Fuzz(func(t *testing.T, data []byte) {
		a, err := Decode(data)
		if err == nil {
			if _, ok := actionArgs[a.Name]; !ok {
				t.Fatalf("accepted unknown action %q", a.Name)
			}
			return
		}
		var ae *ActionError
		if !errors.As(err, &ae) {
			t.Fatalf("error %T %v is not an *ActionError", err, err)
		}
		switch {
		case ae.Code == CodeMalformedJSON && ae.Field == "":
		case (ae.Code == CodeInvalidField || ae.Code == CodeUnknownAction) && ae.Field != "":
		default:
			t.Fatalf("error %+v names no field and is not malformed JSON", ae)
		}
		if ae.Problem == "" || len(ae.Field) > 200 {
			t.Fatalf("error %+v: empty problem or overlong field", ae)
		}
	})
}

func TestDecodeVAPIActions(t *testing.T) {
	const uuid = "3f1c2a9e-8b7d-4e6f-9a0b-1c2d3e4f5a6b"
	a, err := Decode([]byte(`{"action":"hangupCall","arguments":{"callSid":"CA0123456789abcdef0123456789abcdef"}}`))
	if err != nil || a.Name != ActionHangupCall || a.CallSID != "CA0123456789abcdef0123456789abcdef" {
		t.Fatalf("hangupCall: %+v, %v", a, err)
	}
	a, err = Decode([]byte(`{"action":"getCallStatus","arguments":{"callSid":"` + uuid + `"}}`))
	if err != nil || a.CallSID != uuid {
		t.Fatalf("getCallStatus of a VAPI call: %+v, %v", a, err)
	}
	a, err = Decode([]byte(`{"action":"makeCall","arguments":{"to":"+14155551234","assistantId":"asst-1","agent":true,"record":false}}`))
	if err != nil || a.Call.AssistantID != "asst-1" || !a.Call.Agent || a.Call.Record {
		t.Fatalf("makeCall with an assistant: %+v, %v", a, err)
	}
	for _, body := range []string{
		`{"action":"hangupCall","arguments":{"callSid":"3f1c2a9e-8b7d-4e6f-9a0b"}}`,
		`{"action":"hangupCall","arguments":{}}`,
		`{"action":"makeCall","arguments":{"to":"+14155551234","agent":"yes"}}`,
	} {
		var ae *ActionError
		if _, err := Decode([]byte(body)); !errors.As(err, &ae) || ae.Field == "" {
			t.Fatalf("%s: %v; want an ActionError naming the field", body, err)
		}
	}
}
