package main

import (
	"bytes"
	"context"
	"log/slog"
	"strings"
	"testing"
	"time"

	"github.com/sbagenthub/twilio-worker/internal/redistest"
	"github.com/sbagenthub/twilio-worker/pool"
)

func TestPoolConfig(t *testing.T) {
	const mg = "MG00000000000000000000000000000000"
	tests := []struct {
		name    string
		env     map[string]string
		wantErr string // the variable the error must name; "": valid
		check   func(t *testing.T, c Config)
	}{
		{"no pool by default", nil, "", func(t *testing.T, c Config) {
			if len(c.Pool.Numbers) != 0 || c.Pool.StickyFor != pool.StickyForDefault || c.Pool.Cooldown != pool.CooldownDefault {
				t.Fatalf("%+v", c.Pool)
			}
		}},
		{"numbers normalised", map[string]string{"SENDER_POOL": "+1 202 555 0101, +44 20 7123 4567", "STICKY_FOR": "24h", "POOL_COOLDOWN": "1m"}, "",
			func(t *testing.T, c Config) {
				if strings.Join(c.Pool.Numbers, ",") != "+12025550101,+442071234567" || c.Pool.StickyFor != 24*time.Hour || c.Pool.Cooldown != time.Minute {
					t.Fatalf("%+v", c.Pool)
				}
			}},
		{"bad number", map[string]string{"SENDER_POOL": "+12025550101,hello"}, "SENDER_POOL", nil},
		{"twice", map[string]string{"SENDER_POOL": "+12025550101,+1 (202) 555-0101"}, "SENDER_POOL", nil},
		{"sticky not a duration", map[string]string{"STICKY_FOR": "a month"}, "STICKY_FOR", nil},
		{"cool-down zero", map[string]string{"POOL_COOLDOWN": "0s"}, "POOL_COOLDOWN", nil},
		{"service rate needs a service", map[string]string{"SERVICE_RATE": "30/s"}, "SERVICE_RATE", nil},
		{"service rate malformed", map[string]string{"SERVICE_RATE": "fast", "TWILIO_MESSAGING_SERVICE_SID": mg}, "SERVICE_RATE", nil},
		{"service rate", map[string]string{"SERVICE_RATE": "30/s", "TWILIO_MESSAGING_SERVICE_SID": mg}, "", func(t *testing.T, c Config) {
			if c.ServiceRate.String() != "30/s" {
				t.Fatalf("%+v", c.ServiceRate)
			}
		}},
	}
	for _, tt := range tests {
		t.Run(tt.name, func(t *testing.T) {
			c, err := loadConfig(nil, func(k string) string { return tt.env[k] }, &bytes.Buffer{})
			if tt.wantErr == "" {
				if err != nil {
					t.Fatal(err)
				}
				tt.check(t, c)
				return
			}
			if err == nil || !strings.Contains(err.Error(), tt.wantErr+":") {
				t.Fatalf("error %v does not name %s", err, tt.wantErr)
			}
			if strings.Contains(err.Error(), "hello") {
				t.Fatalf("error repeats the input: %v", err)
			}
		})
	}
}

// SERVICE_RATE is the limit of messages that name no sender when a
// Messaging Service picks the number.
func TestServiceRateLimitsTheService(t *testing.T) {
	const mg = "MG00000000000000000000000000000000"
	c, err := loadConfig(nil, func(k string) string {
		return map[string]string{"SERVICE_RATE": "30/s", "TWILIO_MESSAGING_SERVICE_SID": mg, "SENDER_RATES": "+18005550100=3/s"}[k]
	}, &bytes.Buffer{})
	if err != nil {
		t.Fatal(err)
	}
	rdb := redistest.Start(t).Client(t)
	l, err := newLimiter(context.Background(), rdb, c, c.Twilio, slog.New(slog.DiscardHandler))
	if err != nil {
		t.Fatal(err)
	}
	if r := l.SenderRate(""); r.String() != "30/s" {
		t.Errorf("messages without a sender limited at %s; want SERVICE_RATE 30/s", r)
	}
	if r := l.SenderRate("+18005550100"); r.String() != "3/s" {
		t.Errorf("override lost: %s", r)
	}
	if len(c.SenderRates) != 1 {
		t.Errorf("SERVICE_RATE changed the configured overrides: %v", c.SenderRates)
	}
}
