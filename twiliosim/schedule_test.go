package twiliosim

import (
	"net/http"
	"net/url"
	"strings"
	"testing"
	"time"
)

const testService = "MG0123456789abcdef0123456789abcdef"

func scheduledForm(to string, at time.Time) url.Values {
	return url.Values{"To": {to}, "MessagingServiceSid": {testService}, "Body": {"see you at 9"},
		"ScheduleType": {"fixed"}, "SendAt": {at.UTC().Format(time.RFC3339)}}
}

func TestScheduleValidation(t *testing.T) {
	t.Parallel()
	s := newSim(t, testConfig())
	now := s.Now()
	noService := scheduledForm("+14155551234", now.Add(time.Hour))
	noService.Del("MessagingServiceSid")
	noService.Set("From", "+15005550006")
	noSendAt := scheduledForm("+14155551234", now.Add(time.Hour))
	noSendAt.Del("SendAt")
	weekly := scheduledForm("+14155551234", now.Add(time.Hour))
	weekly.Set("ScheduleType", "weekly")
	garbled := scheduledForm("+14155551234", now.Add(time.Hour))
	garbled.Set("SendAt", "tomorrow at nine")
	tests := []struct {
		name string
		form url.Values
		code int
	}{
		{"too soon", scheduledForm("+14155551234", now.Add(10*time.Minute)), 35114},
		{"too far", scheduledForm("+14155551234", now.Add(36*24*time.Hour)), 35114},
		{"not a time", garbled, 35114},
		{"no SendAt", noSendAt, 35111},
		{"no service", noService, 35118},
		{"not fixed", weekly, 35126},
	}
	for _, tt := range tests {
		t.Run(tt.name, func(t *testing.T) {
			wantError(t, s.post(t, s.base()+"/Messages.json", tt.form), http.StatusBadRequest, tt.code)
		})
	}
	if n := len(s.Messages()); n != 0 {
		t.Fatalf("%d messages made by refused requests", n)
	}
}

func TestScheduledMessageSentWhenItsTimeComes(t *testing.T) {
	t.Parallel()
	s := newSim(t, testConfig())
	at := s.Now().Add(20 * time.Minute).Truncate(time.Second)
	m := s.sendMessage(t, scheduledForm("+14155551234", at))
	if *m.Status != "scheduled" || m.From != nil || m.DateSent != nil {
		t.Fatalf("created %+v; want scheduled, no From, no date_sent", m)
	}
	// Listed with its status; held, not sent, while the clock is before SendAt.
	list := decode[struct {
		Messages []tgMessage `json:"messages"`
	}](t, s.get(t, s.base()+"/Messages.json", url.Values{"To": {"+14155551234"}}))
	if len(list.Messages) != 1 || *list.Messages[0].Status != "scheduled" {
		t.Fatalf("list %+v", list.Messages)
	}
	got, _ := s.Message(*m.Sid)
	if got.SendAt == nil || !got.SendAt.Equal(at) || got.ScheduleType != "fixed" || got.SentAt != nil {
		t.Fatalf("record %+v; want SendAt %s", got, at)
	}
	// Moving the clock to a minute before SendAt sends nothing.
	s.Advance(19 * time.Minute)
	if got, _ := s.Message(*m.Sid); got.Status != "scheduled" {
		t.Fatalf("status %s a minute before SendAt", got.Status)
	}
	resp, err := http.Post(s.URL+"/sim/clock", "application/json", strings.NewReader(`{"advance":"2m"}`))
	if err != nil {
		t.Fatal(err)
	}
	resp.Body.Close()
	if resp.StatusCode != 200 {
		t.Fatalf("POST /sim/clock: %d", resp.StatusCode)
	}
	eventually(t, 5*time.Second, "delivered after SendAt", func() bool {
		got, _ := s.Message(*m.Sid)
		return got.Status == "delivered"
	})
	got, _ = s.Message(*m.Sid)
	if got.From != DefaultFromDefault || got.SentAt == nil {
		t.Fatalf("sent record %+v", got)
	}
	// Too late to cancel.
	wantError(t, s.post(t, s.base()+"/Messages/"+*m.Sid+".json", url.Values{"Status": {"canceled"}}), http.StatusBadRequest, 30409)
}

func TestCancelScheduledMessage(t *testing.T) {
	t.Parallel()
	s := newSim(t, testConfig())
	h := newHook(t)
	form := scheduledForm("+14155551234", s.Now().Add(time.Hour))
	form.Set("StatusCallback", h.srv.URL+"/status")
	m := s.sendMessage(t, form)
	r := s.post(t, s.base()+"/Messages/"+*m.Sid+".json", url.Values{"Status": {"canceled"}})
	if r.status != http.StatusOK {
		t.Fatalf("cancel: %d %s", r.status, r.body)
	}
	if c := decode[tgMessage](t, r); *c.Status != "canceled" {
		t.Fatalf("cancel answered %s", *c.Status)
	}
	eventually(t, 5*time.Second, "canceled callback", func() bool { return len(h.got()) == 1 })
	if st := h.got()[0].form.Get("MessageStatus"); st != "canceled" {
		t.Fatalf("callback status %s", st)
	}
	// Twice: no longer scheduled.
	wantError(t, s.post(t, s.base()+"/Messages/"+*m.Sid+".json", url.Values{"Status": {"canceled"}}), http.StatusBadRequest, 30409)
	// A canceled message is never sent, whatever the clock says.
	s.Advance(2 * time.Hour)
	if got, _ := s.Message(*m.Sid); got.Status != "canceled" || got.SentAt != nil {
		t.Fatalf("after its SendAt: %+v", got)
	}
	// A message sent at once cannot be canceled either; an unknown one is 404.
	now := s.sendMessage(t, msgForm("+14155551234", "now"))
	wantError(t, s.post(t, s.base()+"/Messages/"+*now.Sid+".json", url.Values{"Status": {"canceled"}}), http.StatusBadRequest, 30409)
	wantError(t, s.post(t, s.base()+"/Messages/SM00000000000000000000000000000000.json", url.Values{"Status": {"canceled"}}), http.StatusNotFound, 20404)
}
