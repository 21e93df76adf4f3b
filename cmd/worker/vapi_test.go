package main

import (
	"bytes"
	"context"
	"encoding/json"
	"flag"
	"log/slog"
	"net/http"
	"strings"
	"testing"

	"github.com/sbagenthub/twilio-worker/vapi"
)

func TestVAPIConfig(t *testing.T) {
	env := map[string]string{"VAPI_API_KEY": "key-s3cr3t", "VAPI_SERVER_TOKEN": "tok-s3cr3t", "VAPI_HMAC_SECRET": "hmac-s3cr3t",
		"VAPI_PHONE_NUMBER_ID": "pn-1", "VAPI_ASSISTANT_ID": "asst-1", "VAPI_TOOL_WAIT": "3s", "VAPI_API_URL": "http://127.0.0.1:8091/"}
	cfg, err := loadConfig(nil, func(k string) string { return env[k] }, &bytes.Buffer{})
	if err != nil {
		t.Fatal(err)
	}
	v := cfg.VAPI
	if v.APIKey.Reveal() != "key-s3cr3t" || v.ServerToken.Reveal() != "tok-s3cr3t" || v.HMACSecret.Reveal() != "hmac-s3cr3t" ||
		v.PhoneNumberID != "pn-1" || v.AssistantID != "asst-1" || v.ToolWait.Seconds() != 3 || v.APIURL != "http://127.0.0.1:8091" ||
		cfg.Rules.AssistantID != "asst-1" {
		t.Fatalf("VAPI config %+v", v)
	}
	// A flag still wins over the variable for a secret.
	cfg, err = loadConfig([]string{"--vapi-server-token", "from-flag"}, func(k string) string { return env[k] }, &bytes.Buffer{})
	if err != nil || cfg.VAPI.ServerToken.Reveal() != "from-flag" {
		t.Fatalf("flag: %v %v", cfg.VAPI.ServerToken.Reveal(), err)
	}
	// --help never shows the secrets.
	var help bytes.Buffer
	if _, err := loadConfig([]string{"--help"}, func(k string) string { return env[k] }, &help); err != flag.ErrHelp {
		t.Fatalf("--help: %v", err)
	}
	if strings.Contains(help.String(), "s3cr3t") || !strings.Contains(help.String(), "vapi-server-token") {
		t.Fatalf("--help shows a secret or misses the flag:\n%s", help.String())
	}

	bad := map[string]string{"VAPI_API_KEY": "k", "VAPI_TOOL_WAIT": "forever", "VAPI_API_URL": "ftp://x", "VAPI_ASSISTANT_ID": "a b"}
	_, err = loadConfig(nil, func(k string) string { return bad[k] }, &bytes.Buffer{})
	for _, name := range []string{"VAPI_PHONE_NUMBER_ID", "VAPI_TOOL_WAIT", "VAPI_API_URL", "VAPI_ASSISTANT_ID"} {
		if err == nil || !strings.Contains(err.Error(), name) {
			t.Errorf("error %v does not name %s", err, name)
		}
	}
}

func TestLocalModeStartsTheVAPISimulator(t *testing.T) {
	var logs bytes.Buffer
	log := slog.New(slog.NewTextHandler(&logs, nil))
	cfg := Config{HTTPAddr: "127.0.0.1:1", VAPI: VAPIConfig{APIURL: vapi.APIURLDefault}}
	client, auth, closeFn, err := connectVAPI(cfg, true, log)
	if err != nil {
		t.Fatal(err)
	}
	defer closeFn()
	if !strings.Contains(logs.String(), "LOCAL MODE") || !strings.Contains(logs.String(), "VAPI simulator") {
		t.Fatalf("no notice: %s", logs.String())
	}
	if !auth.Enabled() || strings.Contains(logs.String(), auth.Token.Reveal()) {
		t.Fatal("local mode's Server URL must have a made-up token, never logged")
	}
	// The client reaches the simulator.
	if _, err := client.ListCalls(context.Background(), vapi.ListParams{}); err != nil {
		t.Fatalf("list calls on the built-in simulator: %v", err)
	}
	resp, err := http.Get(client.BaseURL + "/sim/calls")
	if err != nil {
		t.Fatal(err)
	}
	var calls []json.RawMessage
	_ = json.NewDecoder(resp.Body).Decode(&calls)
	resp.Body.Close()
	if resp.StatusCode != 200 {
		t.Fatalf("/sim/calls: %d", resp.StatusCode)
	}

	// With real Twilio and no VAPI key: no VAPI.
	if c, _, _, err := connectVAPI(cfg, false, log); c != nil || err != nil {
		t.Fatalf("not local: %v %v", c, err)
	}
}
