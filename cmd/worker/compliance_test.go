package main

import (
	"io"
	"strings"
	"testing"

	"github.com/sbagenthub/twilio-worker/quiet"
)

func TestComplianceConfig(t *testing.T) {
	tests := []struct {
		name string
		env  map[string]string
		err  string // "" = valid
		want Compliance
	}{
		{"defaults", nil, "", Compliance{QuietHours: quiet.MustParse("21:00-08:00")}},
		{"set", map[string]string{"QUIET_HOURS": "20:30-09:15", "MARKETING_REQUIRES_CONSENT": "true", "HELP_TEXT": " Acme: call 555 "}, "",
			Compliance{QuietHours: quiet.MustParse("20:30-09:15"), RequireConsent: true, HelpText: "Acme: call 555"}},
		{"off", map[string]string{"QUIET_HOURS": "00:00-00:00"}, "", Compliance{}},
		{"bad window", map[string]string{"QUIET_HOURS": "9pm-8am"}, "QUIET_HOURS", Compliance{}},
		{"bad bool", map[string]string{"MARKETING_REQUIRES_CONSENT": "maybe"}, "MARKETING_REQUIRES_CONSENT", Compliance{}},
		{"long help", map[string]string{"HELP_TEXT": strings.Repeat("h", 1601)}, "HELP_TEXT", Compliance{}},
	}
	for _, tt := range tests {
		t.Run(tt.name, func(t *testing.T) {
			cfg, err := loadConfig(nil, func(k string) string { return tt.env[k] }, io.Discard)
			if tt.err != "" {
				if err == nil || !strings.Contains(err.Error(), tt.err) {
					t.Fatalf("err %v, want one naming %s", err, tt.err)
				}
				return
			}
			if err != nil {
				t.Fatal(err)
			}
			if cfg.Compliance != tt.want {
				t.Fatalf("compliance %+v, want %+v", cfg.Compliance, tt.want)
			}
		})
	}
}
