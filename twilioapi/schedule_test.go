package twilioapi_test

import (
	"context"
	"errors"
	"testing"
	"time"

	"github.com/sbagenthub/twilio-worker/twilioapi"
	"github.com/sbagenthub/twilio-worker/twiliosim"
)

const service = "MG0123456789abcdef0123456789abcdef"

func withService(c *twilioapi.Config) { c.MessagingServiceSID = service }

func TestScheduleAndCancel(t *testing.T) {
	t.Parallel()
	sim, c := newSim(t, twiliosim.Config{}, withService)
	ctx := context.Background()
	if !c.Schedules() {
		t.Fatal("a client with a Messaging Service does not schedule")
	}
	at := time.Now().Add(20 * time.Minute).Truncate(time.Second)
	msg, err := c.SendSMS(ctx, twilioapi.SendParams{To: "+14155551234", Body: "tomorrow 9:00", SendAt: at})
	if err != nil {
		t.Fatal(err)
	}
	if msg.Status != "scheduled" || msg.MessagingServiceSID != service {
		t.Fatalf("message %+v; want scheduled through %s", msg, service)
	}
	held, ok := sim.Message(msg.SID)
	if !ok || held.SendAt == nil || !held.SendAt.Equal(at) || held.ScheduleType != "fixed" {
		t.Fatalf("simulator holds %+v; want SendAt %s, fixed", held, at)
	}
	canceled, err := c.CancelMessage(ctx, msg.SID)
	if err != nil {
		t.Fatal(err)
	}
	if canceled.Status != "canceled" {
		t.Fatalf("cancel answered %s", canceled.Status)
	}
	if held, _ := sim.Message(msg.SID); held.Status != "canceled" {
		t.Fatalf("simulator has %s", held.Status)
	}
	// Canceling again: Twilio's 30409, an invalid request.
	_, err = c.CancelMessage(ctx, msg.SID)
	if te := asTwilio(t, err); te.Code != twilioapi.CodeNotCancelable || te.Class != twilioapi.ClassInvalid || te.Status != 400 {
		t.Fatalf("second cancel: %v", err)
	}
	// Unknown SID.
	_, err = c.CancelMessage(ctx, "SM00000000000000000000000000000000")
	if te := asTwilio(t, err); te.Class != twilioapi.ClassNotFound {
		t.Fatalf("cancel of an unknown message: %v", err)
	}
}

func TestScheduleRefusedWithoutService(t *testing.T) {
	t.Parallel()
	at := time.Now().Add(time.Hour)
	sim, plain := newSim(t, twiliosim.Config{})
	if plain.Schedules() {
		t.Fatal("a client without a Messaging Service says it schedules")
	}
	_, err := plain.SendSMS(context.Background(), twilioapi.SendParams{To: "+14155551234", Body: "x", SendAt: at})
	if !errors.Is(err, twilioapi.ErrScheduleNeedsService) || asTwilio(t, err).Class != twilioapi.ClassConfig {
		t.Fatalf("no service: %v", err)
	}
	_, svc := newSim(t, twiliosim.Config{}, withService)
	_, err = svc.SendSMS(context.Background(), twilioapi.SendParams{To: "+14155551234", From: from, Body: "x", SendAt: at})
	if !errors.Is(err, twilioapi.ErrScheduleNeedsService) {
		t.Fatalf("explicit from: %v", err)
	}
	if n := len(sim.Messages()); n != 0 {
		t.Fatalf("%d messages reached the simulator", n)
	}
}

func TestScheduleOutOfRange(t *testing.T) {
	t.Parallel()
	sim, c := newSim(t, twiliosim.Config{}, withService)
	for _, ahead := range []time.Duration{5 * time.Minute, 36 * 24 * time.Hour} {
		_, err := c.SendSMS(context.Background(), twilioapi.SendParams{To: "+14155551234", Body: "x", SendAt: time.Now().Add(ahead)})
		if te := asTwilio(t, err); te.Code != 35114 || te.Class != twilioapi.ClassInvalid || !te.Class.Permanent() {
			t.Fatalf("SendAt %s ahead: %v", ahead, err)
		}
	}
	if n := len(sim.Messages()); n != 0 {
		t.Fatalf("%d messages made", n)
	}
}
