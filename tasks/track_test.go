package tasks_test

import (
	"encoding/json"
	"testing"

	"github.com/sbagenthub/twilio-worker/delivery"
	"github.com/sbagenthub/twilio-worker/tasks"
)

func TestDeliveryTrackingAndRedelivery(t *testing.T) {
	t.Parallel()
	h := newHarness(t, harnessOpt{})
	tests := []struct {
		name     string
		to       string
		messages int    // created in the simulator
		final    string // status of the last message
		code     int
	}{
		{"delivered", "+14155550150", 1, "delivered", 0},
		{"transient once, then delivered", "+15005551005", 2, "delivered", 0},
		{"transient every time: REDELIVER_MAX resends", "+15005551004", 3, "undelivered", 30003},
		{"permanent failure is final", "+15005551006", 1, "failed", 30005},
	}
	for _, tt := range tests {
		t.Run(tt.name, func(t *testing.T) {
			t.Parallel()
			info := h.waitFinal(t, h.enqueue(t, tasks.SMSPayload{To: tt.to, Body: "status of " + tt.name}))
			var res tasks.SMSResult
			_ = json.Unmarshal(info.Result, &res)
			last := res.MessageSID
			// Follow redeliveries until the last message is final.
			waitFor(t, "the final outcome", func() bool {
				msgs := h.messagesTo(tt.to)
				if len(msgs) != tt.messages {
					return false
				}
				last = msgs[len(msgs)-1].Sid
				rec, err := h.deliveries.Get(bg, last)
				return err == nil && rec.Final()
			})
			rec, _ := h.deliveries.Get(bg, last)
			if rec.Status != tt.final || rec.ErrorCode != tt.code || rec.Attempt != tt.messages-1 {
				t.Fatalf("last message %+v, want %s/%d after %d resends", rec, tt.final, tt.code, tt.messages-1)
			}
			track := h.waitFinal(t, tasks.TrackTaskID(last))
			var got delivery.Record
			_ = json.Unmarshal(track.Result, &got)
			if got.Status != tt.final || track.Retried != 0 {
				t.Fatalf("sms:track result %s retried %d", track.Result, track.Retried)
			}
		})
	}
}
