package tasks_test

import (
	"context"
	"encoding/json"
	"errors"
	"strings"
	"sync"
	"testing"
	"time"

	"github.com/hibiken/asynq"

	"github.com/sbagenthub/twilio-worker/metrics"
	"github.com/sbagenthub/twilio-worker/optout"
	"github.com/sbagenthub/twilio-worker/quiet"
	"github.com/sbagenthub/twilio-worker/ratelimit"
	"github.com/sbagenthub/twilio-worker/segment"
	"github.com/sbagenthub/twilio-worker/tasks"
	"github.com/sbagenthub/twilio-worker/twilioapi"
)

func TestWithOptOutFooter(t *testing.T) {
	tests := []struct{ in, want string }{
		{"Spring sale: 20% off", "Spring sale: 20% off\n" + tasks.OptOutFooter},
		{"Sale! ", "Sale!\n" + tasks.OptOutFooter},
		{"Sale. Reply STOP to opt out", "Sale. Reply STOP to opt out"},
		{"Sale. Text STOP2END to end", "Sale. Text STOP2END to end\n" + tasks.OptOutFooter},
		{"Sale. Unsubscribe: example.com/u", "Sale. Unsubscribe: example.com/u"},
		{"Sale. opt-out at example.com", "Sale. opt-out at example.com"},
		{"Don't stop now!", "Don't stop now!\n" + tasks.OptOutFooter},
	}
	for _, tt := range tests {
		t.Run(tt.in, func(t *testing.T) {
			got := tasks.WithOptOutFooter(tt.in)
			if got != tt.want {
				t.Fatalf("got %q, want %q", got, tt.want)
			}
			if again := tasks.WithOptOutFooter(got); again != got {
				t.Fatalf("not idempotent: %q", again)
			}
		})
	}
}

func TestMarketingFooterCountsInSegments(t *testing.T) {
	body := strings.Repeat("a", 150) // one segment alone, two with the footer
	p, err := tasks.SMSPayload{To: "+14155551234", Body: body, Class: tasks.ClassMarketing}.Normalize(tasks.Rules{MaxSegments: 2})
	if err != nil {
		t.Fatal(err)
	}
	if !strings.HasSuffix(p.Body, tasks.OptOutFooter) || segment.Count(p.Body) != 2 {
		t.Fatalf("body %q (%d segments)", p.Body, segment.Count(p.Body))
	}
	_, err = tasks.SMSPayload{To: "+14155551234", Body: body, Class: tasks.ClassMarketing}.Normalize(tasks.Rules{MaxSegments: 1})
	var fe *tasks.FieldError
	if !errors.As(err, &fe) || fe.Field != "body" {
		t.Fatalf("err %v: the footer must count against MAX_SEGMENTS", err)
	}
	p, err = tasks.SMSPayload{To: "+14155551234", Body: body}.Normalize(tasks.Rules{MaxSegments: 1})
	if err != nil || p.Body != body {
		t.Fatalf("transactional body changed or refused: %q %v", p.Body, err)
	}
}

// fakeMessenger records what it was asked to send.
type fakeMessenger struct {
	mu   sync.Mutex
	sent []twilioapi.SendParams
}

func (f *fakeMessenger) SendSMS(_ context.Context, p twilioapi.SendParams) (*twilioapi.Message, error) {
	f.mu.Lock()
	defer f.mu.Unlock()
	f.sent = append(f.sent, p)
	return &twilioapi.Message{SID: "SM1", Status: "queued", DateCreated: time.Now()}, nil
}

func (f *fakeMessenger) ListMessages(context.Context, twilioapi.ListParams) ([]twilioapi.Message, error) {
	return nil, nil
}

// fakeLists is an in-memory opt-out and consent store.
type fakeLists struct{ out, consent map[string]bool }

func (f fakeLists) OptedOut(_ context.Context, _ optout.Channel, n string) (bool, error) {
	return f.out[n], nil
}
func (f fakeLists) Add(_ context.Context, _ optout.Channel, n string, _ optout.Source) (bool, error) {
	f.out[n] = true
	return true, nil
}
func (f fakeLists) HasConsent(_ context.Context, _ optout.Channel, n string) (bool, error) {
	return f.consent[n], nil
}

func TestQuietHoursAndConsent(t *testing.T) {
	la, _ := time.LoadLocation("America/Los_Angeles")
	at := func(s string) time.Time {
		v, err := time.ParseInLocation("2006-01-02 15:04", s, la)
		if err != nil {
			t.Fatal(err)
		}
		return v
	}
	const sf = "+14155551234" // America/Los_Angeles
	tests := []struct {
		name     string
		now      time.Time
		payload  tasks.SMSPayload
		m        tasks.Marketing
		consent  bool
		sent     bool
		until    time.Time // a deferral until then
		archived bool
		skipped  string // metric label counted
	}{
		{name: "marketing at 23:00 waits for 08:00", now: at("2025-01-15 23:00"),
			payload: tasks.SMSPayload{To: sf, Body: "Sale", Class: "marketing"}, until: at("2025-01-16 08:00"), skipped: "quiet_hours"},
		{name: "marketing at 07:59 waits a minute", now: at("2025-01-16 07:59"),
			payload: tasks.SMSPayload{To: sf, Body: "Sale", Class: "marketing"}, until: at("2025-01-16 08:00"), skipped: "quiet_hours"},
		{name: "marketing at 08:00 goes", now: at("2025-01-16 08:00"),
			payload: tasks.SMSPayload{To: sf, Body: "Sale", Class: "marketing"}, sent: true},
		{name: "transactional at 23:00 goes", now: at("2025-01-15 23:00"),
			payload: tasks.SMSPayload{To: sf, Body: "Your order shipped"}, sent: true},
		{name: "alert at 03:00 goes", now: at("2025-01-16 03:00"),
			payload: tasks.SMSPayload{To: sf, Body: "Server down", Class: "alert"}, sent: true},
		{name: "configured window", now: at("2025-01-15 13:30"), m: tasks.Marketing{QuietHours: ptr(quiet.MustParse("13:00-14:00"))},
			payload: tasks.SMSPayload{To: sf, Body: "Sale", Class: "marketing"}, until: at("2025-01-15 14:00"), skipped: "quiet_hours"},
		{name: "empty window turns it off", now: at("2025-01-15 23:00"), m: tasks.Marketing{QuietHours: &quiet.Window{}},
			payload: tasks.SMSPayload{To: sf, Body: "Sale", Class: "marketing"}, sent: true},
		// Across the spring-forward night: 22:00 PST → 08:00 PDT, 10 real hours.
		{name: "across DST", now: at("2025-03-08 22:00"),
			payload: tasks.SMSPayload{To: sf, Body: "Sale", Class: "marketing"}, until: at("2025-03-09 08:00"), skipped: "quiet_hours"},
		// 14:00 in New York is 11:00 in LA; +1 212 is New York only: goes.
		{name: "other zone's daytime", now: at("2025-01-15 11:00"),
			payload: tasks.SMSPayload{To: "+12125550100", Body: "Sale", Class: "marketing"}, sent: true},
		// 19:00 in LA is 22:00 in New York.
		{name: "other zone's night", now: at("2025-01-15 19:00"),
			payload: tasks.SMSPayload{To: "+12125550100", Body: "Sale", Class: "marketing"}, until: at("2025-01-16 05:00"), skipped: "quiet_hours"},
		{name: "global number: time unknown", now: at("2025-01-15 12:00"),
			payload: tasks.SMSPayload{To: "+80012345678", Body: "Sale", Class: "marketing"}, skipped: "unknown_timezone"},
		{name: "consent required and missing", now: at("2025-01-15 12:00"), m: tasks.Marketing{RequireConsent: true},
			payload: tasks.SMSPayload{To: sf, Body: "Sale", Class: "marketing"}, skipped: "no_consent"},
		{name: "consent required and given", now: at("2025-01-15 12:00"), m: tasks.Marketing{RequireConsent: true}, consent: true,
			payload: tasks.SMSPayload{To: sf, Body: "Sale", Class: "marketing"}, sent: true},
		{name: "consent not needed for transactional", now: at("2025-01-15 12:00"), m: tasks.Marketing{RequireConsent: true},
			payload: tasks.SMSPayload{To: sf, Body: "Code 1234"}, sent: true},
		{name: "valid-for shorter than the night", now: at("2025-01-15 23:00"),
			payload: tasks.SMSPayload{To: sf, Body: "Flash sale", Class: "marketing", ValidFor: "1h"}, archived: true, skipped: "expired"},
	}
	for _, tt := range tests {
		t.Run(tt.name, func(t *testing.T) {
			now := func() time.Time { return tt.now }
			rules := tasks.Rules{Now: now}
			task, err := tasks.NewSendSMSTask(tt.payload, rules)
			if err != nil {
				t.Fatal(err)
			}
			msgr := &fakeMessenger{}
			lists := fakeLists{out: map[string]bool{}, consent: map[string]bool{}}
			if tt.consent {
				lists.consent[tt.payload.To] = true
			}
			m := metrics.New(nil)
			h := &tasks.SMSHandler{Messenger: msgr, OptOuts: lists, Rules: rules, Metrics: m, Marketing: tt.m}
			err = h.ProcessTask(context.Background(), task)

			var d *ratelimit.DeferError
			switch {
			case !tt.until.IsZero():
				if !errors.As(err, &d) || !d.Until.Equal(tt.until) {
					t.Fatalf("err %v, want a deferral until %s", err, tt.until)
				}
				if !strings.Contains(d.Reason, "quiet hours") {
					t.Fatalf("reason %q", d.Reason)
				}
			case tt.archived:
				if !errors.Is(err, asynq.SkipRetry) {
					t.Fatalf("err %v, want archived", err)
				}
			default:
				if err != nil {
					t.Fatalf("err %v", err)
				}
			}
			if got := len(msgr.sent) == 1; got != tt.sent {
				t.Fatalf("sent = %v, want %v", got, tt.sent)
			}
			if tt.sent && tt.payload.Class == "marketing" && !strings.HasSuffix(msgr.sent[0].Body, tasks.OptOutFooter) {
				t.Fatalf("marketing sent without the footer: %q", msgr.sent[0].Body)
			}
			if tt.skipped != "" {
				if n := counter(t, m.SMSSkipped.WithLabelValues(tt.skipped)); n != 1 {
					t.Fatalf("sms_skipped_total{reason=%q} = %v, want 1", tt.skipped, n)
				}
			}
		})
	}
}

func ptr[T any](v T) *T { return &v }

// With the real store, queue and server: a consent-less marketing message
// ends completed and skipped with its reason.
func TestMarketingWithoutConsentEndsSkipped(t *testing.T) {
	t.Parallel()
	h := newHarness(t, harnessOpt{marketing: tasks.Marketing{RequireConsent: true, QuietHours: &quiet.Window{}}})
	info := h.waitFinal(t, h.enqueue(t, tasks.SMSPayload{To: "+14155550150", Body: "Sale", Class: "marketing"}))
	var res tasks.SMSResult
	_ = json.Unmarshal(info.Result, &res)
	if info.State != asynq.TaskStateCompleted || res.Status != "skipped" || res.Reason != tasks.ReasonNoConsent {
		t.Fatalf("state %s result %+v", info.State, res)
	}
	if _, err := h.optouts.AddConsent(bg, optout.SMS, "+14155550150", optout.SourceAPI); err != nil {
		t.Fatal(err)
	}
	info = h.waitFinal(t, h.enqueue(t, tasks.SMSPayload{To: "+14155550150", Body: "Sale", Class: "marketing"}))
	if info.State != asynq.TaskStateCompleted || len(h.messagesTo("+14155550150")) != 1 {
		t.Fatalf("after consent: state %s, %d messages", info.State, len(h.messagesTo("+14155550150")))
	}
}

// An opt-out recorded after the task was queued, before it ran, wins.
func TestOptOutAfterQueueingIsHonoured(t *testing.T) {
	t.Parallel()
	h := newHarness(t, harnessOpt{})
	id := h.enqueue(t, tasks.SMSPayload{To: "+14155550151", Body: "hi"}, asynq.ProcessIn(time.Hour))
	if _, err := h.optouts.Add(bg, optout.SMS, "+14155550151", optout.SourceAPI); err != nil {
		t.Fatal(err)
	}
	if err := h.insp.RunTask(tasks.QueueDefault, id); err != nil {
		t.Fatal(err)
	}
	info := h.waitFinal(t, id)
	var res tasks.SMSResult
	_ = json.Unmarshal(info.Result, &res)
	if info.State != asynq.TaskStateCompleted || res.Status != "skipped" || h.requests.Load() != 0 {
		t.Fatalf("state %s result %+v requests %d", info.State, res, h.requests.Load())
	}
}
