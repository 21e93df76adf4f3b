package main

import (
	"bytes"
	"fmt"
	"strings"
	"testing"
)

func TestHTTPConfig(t *testing.T) {
	tests := []struct {
		name    string
		env     map[string]string
		wantErr []string // variables the error must name; none: valid
		check   func(t *testing.T, c Config)
	}{
		{"loopback default: /v1 open, dashboard read-only", nil, nil, func(t *testing.T, c Config) {
			if c.APIToken != "" || c.Dashboard.Writable || c.Dashboard.Disabled || c.Dashboard.User != "" {
				t.Fatalf("%+v", c.Dashboard)
			}
		}},
		{"localhost and ::1 are loopback", map[string]string{"HTTP_ADDR": "localhost:9000"}, nil, nil},
		{"ipv6 loopback", map[string]string{"HTTP_ADDR": "[::1]:9000"}, nil, nil},
		{"all interfaces need a token", map[string]string{"HTTP_ADDR": "0.0.0.0:8080"}, []string{"API_TOKEN"}, nil},
		{"empty host needs a token", map[string]string{"HTTP_ADDR": ":8080"}, []string{"API_TOKEN"}, nil},
		{"public with token: dashboard off without a password", map[string]string{"HTTP_ADDR": "0.0.0.0:8080", "API_TOKEN": "tok"}, nil,
			func(t *testing.T, c Config) {
				if !c.Dashboard.Disabled || c.APIToken.Reveal() != "tok" {
					t.Fatalf("%+v", c.Dashboard)
				}
			}},
		{"public with dashboard password", map[string]string{"HTTP_ADDR": "0.0.0.0:8080", "API_TOKEN": "tok",
			"DASHBOARD_USER": "ops", "DASHBOARD_PASSWORD": "pw-s3cret", "DASHBOARD_READONLY": "false"}, nil,
			func(t *testing.T, c Config) {
				if c.Dashboard.Disabled || !c.Dashboard.Writable || c.Dashboard.User != "ops" || c.Dashboard.Password.Reveal() != "pw-s3cret" {
					t.Fatalf("%+v", c.Dashboard)
				}
				if s := fmt.Sprintf("%v %+v", c, c); strings.Contains(s, "pw-s3cret") || strings.Contains(s, "tok ") {
					t.Fatalf("config prints a secret: %s", s)
				}
			}},
		{"readonly not a bool", map[string]string{"DASHBOARD_READONLY": "sometimes"}, []string{"DASHBOARD_READONLY"}, nil},
		{"user without password", map[string]string{"DASHBOARD_USER": "ops"}, []string{"DASHBOARD_PASSWORD"}, nil},
		{"password without user", map[string]string{"DASHBOARD_PASSWORD": "pw-s3cret"}, []string{"DASHBOARD_USER"}, nil},
	}
	for _, tt := range tests {
		t.Run(tt.name, func(t *testing.T) {
			c, err := loadConfig(nil, func(k string) string { return tt.env[k] }, &bytes.Buffer{})
			if len(tt.wantErr) == 0 {
				if err != nil {
					t.Fatal(err)
				}
				if tt.check != nil {
					tt.check(t, c)
				}
				return
			}
			for _, name := range tt.wantErr {
				if err == nil || !strings.Contains(err.Error(), name) {
					t.Fatalf("error %v does not name %s", err, name)
				}
			}
			if strings.Contains(err.Error(), "pw-s3cret") {
				t.Fatal("the error shows the password")
			}
		})
	}
}

func TestWorkerRefusesPublicAddressWithoutToken(t *testing.T) {
	var stderr bytes.Buffer
	env := map[string]string{"HTTP_ADDR": "0.0.0.0:8080"}
	if code := run(nil, func(k string) string { return env[k] }, &stderr); code != 2 || !strings.Contains(stderr.String(), "API_TOKEN") {
		t.Fatalf("exit %d, stderr %q; want 2 naming API_TOKEN", code, stderr.String())
	}
}
