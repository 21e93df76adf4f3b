package producer_test

import (
	"testing"
	"time"

	"github.com/sbagenthub/twilio-worker/producer"
	"github.com/sbagenthub/twilio-worker/tasks"
)

func TestSendAtHandedToTwilioOnlyWhenItQualifies(t *testing.T) {
	t.Parallel()
	base, rdb := newProducer(t)
	at := time.Now().Add(20 * time.Minute).UTC().Truncate(time.Second)
	tests := []struct {
		name      string
		sms       tasks.SMSPayload
		sendAt    time.Time
		min       time.Duration
		handedOff bool
	}{
		{"qualifies", tasks.SMSPayload{}, at, tasks.ScheduleMinDefault, true},
		{"own sender", tasks.SMSPayload{From: "+15005550006"}, at, tasks.ScheduleMinDefault, false},
		{"marketing", tasks.SMSPayload{Class: tasks.ClassMarketing}, at, tasks.ScheduleMinDefault, false},
		{"too soon", tasks.SMSPayload{}, time.Now().Add(10 * time.Minute), tasks.ScheduleMinDefault, false},
		{"scheduling off", tasks.SMSPayload{}, at, 0, false},
	}
	for _, tt := range tests {
		t.Run(tt.name, func(t *testing.T) {
			p := &producer.Producer{Redis: rdb, Comms: base.Comms, Source: "test", ScheduleMin: tt.min}
			tt.sms.To, tt.sms.Body = "+14155550170", "see you at 9"
			res, err := p.SendSMS(bg, producer.SMS{SMSPayload: tt.sms, SendAt: tt.sendAt})
			if err != nil {
				t.Fatal(err)
			}
			var got tasks.SMSPayload
			payloadOf(t, p, res, &got)
			if tt.handedOff {
				if res.State != "pending" || got.SendAt == nil || !got.SendAt.Equal(at) {
					t.Fatalf("state %s, payload sendAt %v; want pending now with sendAt %s", res.State, got.SendAt, at)
				}
				return
			}
			if res.State != "scheduled" || got.SendAt != nil {
				t.Fatalf("state %s, payload sendAt %v; want scheduled in the queue", res.State, got.SendAt)
			}
		})
	}
}

func TestPublishScheduling(t *testing.T) {
	t.Parallel()
	_, rdb := newProducer(t)
	if d, err := producer.LoadScheduling(bg, rdb); err != nil || d != 0 {
		t.Fatalf("nothing published: %v %v", d, err)
	}
	if err := producer.PublishScheduling(bg, rdb, 30*time.Minute); err != nil {
		t.Fatal(err)
	}
	if d, err := producer.LoadScheduling(bg, rdb); err != nil || d != 30*time.Minute {
		t.Fatalf("published 30m, loaded %v %v", d, err)
	}
	if err := producer.PublishScheduling(bg, rdb, 0); err != nil {
		t.Fatal(err)
	}
	if d, err := producer.LoadScheduling(bg, rdb); err != nil || d != 0 {
		t.Fatalf("turned off, loaded %v %v", d, err)
	}
}
