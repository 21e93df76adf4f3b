package vapisim

import (
	"context"
	"encoding/json"
	"errors"
	"io"
	"net/http"
	"net/http/httptest"
	"sync"
	"testing"
	"time"

	"github.com/sbagenthub/twilio-worker/twilioapi"
	"github.com/sbagenthub/twilio-worker/vapi"
)

// receiver is a Server URL that checks the HMAC signature and keeps the
// message types it took.
type receiver struct {
	mu    sync.Mutex
	types []string
	auth  vapi.Auth
}

func (rc *receiver) ServeHTTP(w http.ResponseWriter, r *http.Request) {
	b, _ := io.ReadAll(r.Body)
	if err := rc.auth.Check(r.Header, b); rc.auth.Enabled() && err != nil {
		w.WriteHeader(http.StatusUnauthorized)
		return
	}
	var env vapi.Envelope
	_ = json.Unmarshal(b, &env)
	rc.mu.Lock()
	name := env.Message.Type
	if name == vapi.TypeStatusUpdate {
		name += ":" + env.Message.Status
	}
	rc.types = append(rc.types, name)
	rc.mu.Unlock()
	w.Write([]byte(`{}`))
}

func setup(t *testing.T, cfg Config) (*Server, *vapi.Client, *receiver) {
	t.Helper()
	rc := &receiver{auth: vapi.Auth{HMACSecret: twilioapi.Secret(cfg.HMACSecret)}}
	hook := httptest.NewServer(rc)
	t.Cleanup(hook.Close)
	cfg.ServerURL = hook.URL
	s := New(cfg)
	ts := httptest.NewServer(s)
	s.SetBaseURL(ts.URL)
	t.Cleanup(func() { ts.Close(); s.Close() })
	return s, &vapi.Client{BaseURL: ts.URL, APIKey: APIKeyDefault, PhoneNumberID: "pn"}, rc
}

func waitEnded(t *testing.T, s *Server, id string) Call {
	t.Helper()
	deadline := time.Now().Add(10 * time.Second)
	for {
		for _, c := range s.Calls() {
			if c.ID == id && len(c.Events) > 0 && c.Events[len(c.Events)-1] == vapi.TypeEndOfCallReport {
				return c
			}
		}
		if time.Now().After(deadline) {
			t.Fatalf("call %s did not end: %+v", id, s.Calls())
		}
		time.Sleep(5 * time.Millisecond)
	}
}

func TestCallLifeReportsEachStep(t *testing.T) {
	s, c, rc := setup(t, Config{HMACSecret: "sec", CallRing: 20 * time.Millisecond, CallDuration: 30 * time.Millisecond})
	ctx := context.Background()
	call, err := c.CreateCall(ctx, vapi.CreateCall{AssistantID: "a1", Customer: vapi.Customer{Number: "+14155550100"}})
	if err != nil || call.Status != "queued" || call.Monitor == nil || call.Monitor.ControlURL == "" {
		t.Fatalf("create: %+v %v", call, err)
	}
	ended := waitEnded(t, s, call.ID)
	want := []string{"status-update:queued", "status-update:ringing", "status-update:in-progress", "status-update:ended", "end-of-call-report"}
	if len(ended.Events) != len(want) || ended.EventFailures != 0 {
		t.Fatalf("events %v (failures %d); want %v", ended.Events, ended.EventFailures, want)
	}
	rc.mu.Lock()
	got := append([]string(nil), rc.types...)
	rc.mu.Unlock()
	for i := range want {
		if ended.Events[i] != want[i] || got[i] != want[i] {
			t.Fatalf("events %v, received %v; want %v", ended.Events, got, want)
		}
	}
	g, err := c.GetCall(ctx, call.ID)
	if err != nil || g.Status != "ended" || g.EndedReason != "customer-ended-call" || g.Duration() < 1 || g.Cost == nil {
		t.Fatalf("get: %+v %v", g, err)
	}
	list, err := c.ListCalls(ctx, vapi.ListParams{CreatedAfter: vapi.Time(call.CreatedAt).Add(-time.Second), AssistantID: "a1"})
	if err != nil || len(list) != 1 || list[0].ID != call.ID {
		t.Fatalf("list: %+v %v", list, err)
	}
	if list, _ := c.ListCalls(ctx, vapi.ListParams{AssistantID: "other"}); len(list) != 0 {
		t.Fatalf("list of another assistant: %+v", list)
	}
}

func TestEndCallAndFaults(t *testing.T) {
	s, c, _ := setup(t, Config{CallRing: time.Hour})
	ctx := context.Background()
	call, err := c.CreateCall(ctx, vapi.CreateCall{AssistantID: "a1", Customer: vapi.Customer{Number: "+14155550100"}})
	if err != nil {
		t.Fatal(err)
	}
	if err := c.EndCall(ctx, call.ID, call.Monitor.ControlURL); err != nil {
		t.Fatal(err)
	}
	if ended := waitEnded(t, s, call.ID); ended.EndedReason != "manually-canceled" || !ended.EndedByRequest {
		t.Fatalf("ended %+v", ended)
	}
	if _, err := c.GetCall(ctx, "00000000-0000-4000-8000-000000000001"); !vapi.IsNotFound(err) {
		t.Fatalf("unknown call: %v", err)
	}
	if _, err := c.CreateCall(ctx, vapi.CreateCall{AssistantID: "a1", Customer: vapi.Customer{Number: "0415"}}); !vapi.IsRefused(err) {
		t.Fatalf("bad number: %v; want a refusal", err)
	}
	bad := &vapi.Client{BaseURL: c.BaseURL, APIKey: "wrong", PhoneNumberID: "pn"}
	if _, err := bad.GetCall(ctx, call.ID); !vapi.IsRefused(err) {
		t.Fatalf("wrong key: %v", err)
	}
	s.knobs.Store(&Knobs{DropRate: 1})
	n := len(s.Calls())
	_, err = c.CreateCall(ctx, vapi.CreateCall{AssistantID: "a1", Customer: vapi.Customer{Number: "+14155550101"}})
	var ve *vapi.Error
	if !errors.As(err, &ve) || ve.Status != 0 || len(s.Calls()) != n+1 {
		t.Fatalf("dropped create: %v, %d calls; want a lost answer and the call made", err, len(s.Calls()))
	}
	s.knobs.Store(&Knobs{ErrorRate: 1})
	if _, err := c.GetCall(ctx, call.ID); !errors.As(err, &ve) || ve.Status != 500 || vapi.IsRefused(err) {
		t.Fatalf("injected error: %v", err)
	}
}
