package main

import (
	"bytes"
	"context"
	"strings"
	"testing"
)

func TestBadFlagsExit2NamingTheFlag(t *testing.T) {
	for _, tt := range []struct {
		args []string
		flag string
	}{
		{[]string{"--latency", "soon"}, "--latency"},
		{[]string{"--error-rate", "2"}, "--error-rate"},
		{[]string{"--drop-rate", "-1"}, "--drop-rate"},
		{[]string{"--server-url", "ftp://x"}, "--server-url"},
		{[]string{"--call-ring", "0s"}, "--call-ring"},
		{[]string{"--api-key", ""}, "--api-key"},
		{[]string{"extra"}, "unexpected argument"},
	} {
		var stderr bytes.Buffer
		if code := run(context.Background(), tt.args, &stderr); code != 2 || !strings.Contains(stderr.String(), tt.flag) {
			t.Errorf("%v: exit %d, stderr %q; want 2 naming %s", tt.args, code, stderr.String(), tt.flag)
		}
	}
}

func TestParseFlags(t *testing.T) {
	addr, cfg, err := parseFlags([]string{"--addr", "127.0.0.1:0", "--server-url", "http://127.0.0.1:8080/vapi/server",
		"--server-token", "t", "--hmac-secret", "h", "--latency", "10ms-20ms", "--drop-rate", "0.5"}, &bytes.Buffer{})
	if err != nil || addr != "127.0.0.1:0" || cfg.ServerToken != "t" || cfg.HMACSecret != "h" || cfg.DropRate != 0.5 ||
		cfg.Latency.Max.Milliseconds() != 20 || authMode(cfg) != "bearer+hmac" {
		t.Fatalf("parseFlags: %q %+v %v", addr, cfg, err)
	}
}
