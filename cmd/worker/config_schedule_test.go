package main

import (
	"bytes"
	"strings"
	"testing"
	"time"

	"github.com/sbagenthub/twilio-worker/tasks"
)

func TestScheduleMinConfig(t *testing.T) {
	const mg = "MG00000000000000000000000000000000"
	tests := []struct {
		name    string
		env     map[string]string
		wantErr string // the variable the error must name; "": valid
		want    time.Duration
	}{
		{"off without a service", nil, "", 0},
		{"default with a service", map[string]string{"TWILIO_MESSAGING_SERVICE_SID": mg}, "", tasks.ScheduleMinDefault},
		{"set", map[string]string{"TWILIO_MESSAGING_SERVICE_SID": mg, "TWILIO_SCHEDULE_MIN": "1h"}, "", time.Hour},
		{"off", map[string]string{"TWILIO_MESSAGING_SERVICE_SID": mg, "TWILIO_SCHEDULE_MIN": "0"}, "", 0},
		{"off with a pool", map[string]string{"TWILIO_MESSAGING_SERVICE_SID": mg, "SENDER_POOL": "+12025550101"}, "", 0},
		{"under Twilio's 15 minutes", map[string]string{"TWILIO_MESSAGING_SERVICE_SID": mg, "TWILIO_SCHEDULE_MIN": "5m"}, "TWILIO_SCHEDULE_MIN", 0},
		{"over 35 days", map[string]string{"TWILIO_MESSAGING_SERVICE_SID": mg, "TWILIO_SCHEDULE_MIN": "900h"}, "TWILIO_SCHEDULE_MIN", 0},
		{"not a duration", map[string]string{"TWILIO_SCHEDULE_MIN": "soon"}, "TWILIO_SCHEDULE_MIN", 0},
	}
	for _, tt := range tests {
		t.Run(tt.name, func(t *testing.T) {
			c, err := loadConfig(nil, func(k string) string { return tt.env[k] }, &bytes.Buffer{})
			if tt.wantErr != "" {
				if err == nil || !strings.Contains(err.Error(), tt.wantErr+":") {
					t.Fatalf("error %v does not name %s", err, tt.wantErr)
				}
				return
			}
			if err != nil {
				t.Fatal(err)
			}
			if c.ScheduleMin != tt.want {
				t.Fatalf("ScheduleMin %v, want %v", c.ScheduleMin, tt.want)
			}
		})
	}
}
