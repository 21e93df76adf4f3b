package main

import (
	"bytes"
	"context"
	"encoding/json"
	"io"
	"net"
	"net/http"
	"strings"
	"testing"
	"time"
)

func TestBadFlags(t *testing.T) {
	t.Parallel()
	tests := []struct {
		args []string
		flag string
	}{
		{[]string{"--latency", "soon"}, "latency"},
		{[]string{"--latency", "2s-1s"}, "latency"},
		{[]string{"--error-rate", "1.5"}, "error-rate"},
		{[]string{"--error-rate", "many"}, "error-rate"},
		{[]string{"--drop-rate", "-0.1"}, "drop-rate"},
		{[]string{"--max-concurrent", "-1"}, "max-concurrent"},
		{[]string{"--call-ring", "0s"}, "call-ring"},
		{[]string{"--call-duration", "long"}, "call-duration"},
		{[]string{"--delivery-delay", "-1s"}, "delivery-delay"},
		{[]string{"--account-sid", "AC123"}, "account-sid"},
		{[]string{"--inbound-url", "ftp://x"}, "inbound-url"},
		{[]string{"--no-such-flag"}, "no-such-flag"},
		{[]string{"extra"}, "extra"},
	}
	for _, tt := range tests {
		t.Run(strings.Join(tt.args, " "), func(t *testing.T) {
			t.Parallel()
			var stderr bytes.Buffer
			if code := run(context.Background(), tt.args, &stderr, nil); code != 2 {
				t.Fatalf("exit %d, want 2", code)
			}
			if !strings.Contains(stderr.String(), tt.flag) {
				t.Errorf("message %q does not name %s", stderr.String(), tt.flag)
			}
		})
	}
}

func TestFlagsToConfig(t *testing.T) {
	t.Parallel()
	addr, cfg, err := parseFlags([]string{"--addr", "127.0.0.1:0", "--latency", "50ms-150ms", "--error-rate", "0.1",
		"--max-concurrent", "7", "--drop-rate", "0.2", "--call-ring", "2s", "--inbound-url", "http://127.0.0.1:8080/twilio/inbound"}, io.Discard)
	if err != nil {
		t.Fatal(err)
	}
	if addr != "127.0.0.1:0" || cfg.Latency.Min != 50*time.Millisecond || cfg.Latency.Max != 150*time.Millisecond ||
		cfg.ErrorRate != 0.1 || cfg.MaxConcurrent != 7 || cfg.DropRate != 0.2 || cfg.CallRing != 2*time.Second ||
		cfg.InboundURL != "http://127.0.0.1:8080/twilio/inbound" {
		t.Errorf("parsed %s %+v", addr, cfg)
	}
	addr, cfg, err = parseFlags(nil, io.Discard)
	if err != nil || addr != AddrDefault || cfg.AccountSID != "AC00000000000000000000000000000000" || cfg.AuthToken != strings.Repeat("0", 32) {
		t.Errorf("defaults: %s %+v %v", addr, cfg, err)
	}
}

func TestServeAndShutdown(t *testing.T) {
	t.Parallel()
	ctx, cancel := context.WithCancel(context.Background())
	addrc := make(chan net.Addr, 1)
	done := make(chan int, 1)
	var logs bytes.Buffer
	go func() {
		done <- run(ctx, []string{"--addr", "127.0.0.1:0", "--delivery-delay", "10ms"}, &logs, func(a net.Addr) { addrc <- a })
	}()
	var addr net.Addr
	select {
	case addr = <-addrc:
	case code := <-done:
		t.Fatalf("exited %d before listening", code)
	case <-time.After(30 * time.Second):
		t.Fatal("not listening after 30s")
	}
	resp, err := http.Get("http://" + addr.String() + "/sim/config")
	if err != nil {
		t.Fatal(err)
	}
	var knobs map[string]any
	json.NewDecoder(resp.Body).Decode(&knobs)
	resp.Body.Close()
	if knobs["deliveryDelay"] != "10ms" {
		t.Errorf("GET /sim/config = %v", knobs)
	}
	cancel()
	select {
	case code := <-done:
		if code != 0 {
			t.Errorf("exit %d after shutdown, want 0", code)
		}
		if !strings.Contains(logs.String(), "twiliosim listening") || !strings.Contains(logs.String(), addr.String()) {
			t.Errorf("logs lack the listen address: %s", logs.String())
		}
	case <-time.After(30 * time.Second):
		t.Fatal("no shutdown after 30s")
	}
}
