package twiliosim

import (
	"encoding/json"
	"fmt"
	"io"
	"net/http"
	"net/url"
	"regexp"
	"strings"
	"testing"
	"time"
)

var (
	sidRE  = regexp.MustCompile(`^(SM|CA)[0-9a-f]{32}$`)
	dateRE = regexp.MustCompile(`^(Mon|Tue|Wed|Thu|Fri|Sat|Sun), \d\d (Jan|Feb|Mar|Apr|May|Jun|Jul|Aug|Sep|Oct|Nov|Dec) \d{4} \d\d:\d\d:\d\d \+0000$`)
)

func msgForm(to, body string) url.Values {
	return url.Values{"To": {to}, "From": {"+15005550006"}, "Body": {body}}
}

func callForm(to string) url.Values {
	return url.Values{"To": {to}, "From": {"+15005550006"}, "Url": {"http://demo.twilio.com/docs/voice.xml"}}
}

func TestAuth(t *testing.T) {
	t.Parallel()
	s := newSim(t, Config{APIKeys: map[string]string{"SK0123456789abcdef0123456789abcdef": "keysecret"}})
	acct := s.AccountSID()
	tests := []struct {
		name       string
		user, pass string
		path       string
		status     int
		code       int
	}{
		{"no auth", "", "", s.base() + ".json", 401, 20003},
		{"wrong token", acct, "wrongtoken", s.base() + ".json", 401, 20003},
		{"unknown user", "ACffffffffffffffffffffffffffffffff", s.AuthToken(), s.base() + ".json", 401, 20003},
		{"api key wrong secret", "SK0123456789abcdef0123456789abcdef", "nope", s.base() + ".json", 401, 20003},
		{"token as key secret", "SK0123456789abcdef0123456789abcdef", s.AuthToken(), s.base() + ".json", 401, 20003},
		{"account token", acct, s.AuthToken(), s.base() + ".json", 200, 0},
		{"api key", "SK0123456789abcdef0123456789abcdef", "keysecret", s.base() + ".json", 200, 0},
		{"other account", acct, s.AuthToken(), "/2010-04-01/Accounts/AC11111111111111111111111111111111/Messages.json", 404, 20404},
		{"other account fetch", acct, s.AuthToken(), "/2010-04-01/Accounts/AC11111111111111111111111111111111.json", 404, 20404},
		{"unknown resource", acct, s.AuthToken(), s.base() + "/Widgets.json", 404, 20404},
		{"unknown message", acct, s.AuthToken(), s.base() + "/Messages/SM00000000000000000000000000000000.json", 404, 20404},
	}
	for _, tt := range tests {
		t.Run(tt.name, func(t *testing.T) {
			t.Parallel()
			r := s.do(t, http.MethodGet, tt.path, nil, tt.user, tt.pass)
			if tt.code != 0 {
				e := wantError(t, r, tt.status, tt.code)
				if tt.code == 20003 && e.Message != "Authenticate" {
					t.Errorf("message %q, want Authenticate", e.Message)
				}
				return
			}
			if r.status != tt.status {
				t.Fatalf("status %d, want %d: %s", r.status, tt.status, r.body)
			}
			a := decode[tgAccount](t, r)
			if a.Sid == nil || *a.Sid != acct || a.Status == nil || *a.Status != "active" {
				t.Errorf("account %s", r.body)
			}
		})
	}
}

func TestAPIHeaders(t *testing.T) {
	t.Parallel()
	s := newSim(t, Config{})
	r := s.get(t, s.base()+".json", nil)
	if id := r.header.Get("Twilio-Request-Id"); !regexp.MustCompile(`^RQ[0-9a-f]{32}$`).MatchString(id) {
		t.Errorf("Twilio-Request-Id %q", id)
	}
	if n := r.header.Get("Twilio-Concurrent-Requests"); n != "1" {
		t.Errorf("Twilio-Concurrent-Requests %q, want 1", n)
	}
}

func TestMessageShape(t *testing.T) {
	t.Parallel()
	s := newSim(t, testConfig())
	m := s.sendMessage(t, msgForm("+14155551234", "Hello from the simulator"))
	checks := []struct {
		name string
		ok   bool
	}{
		{"sid", m.Sid != nil && sidRE.MatchString(*m.Sid) && strings.HasPrefix(*m.Sid, "SM")},
		{"status queued", m.Status != nil && *m.Status == "queued"},
		{"to", m.To != nil && *m.To == "+14155551234"},
		{"from", m.From != nil && *m.From == "+15005550006"},
		{"num_segments", m.NumSegments != nil && *m.NumSegments == "1"},
		{"num_media", m.NumMedia != nil && *m.NumMedia == "0"},
		{"price null", m.Price == nil},
		{"error_code null", m.ErrorCode == nil && m.ErrorMessage == nil},
		{"direction", m.Direction != nil && *m.Direction == "outbound-api"},
		{"api_version", m.ApiVersion != nil && *m.ApiVersion == "2010-04-01"},
		{"date_created", m.DateCreated != nil && dateRE.MatchString(*m.DateCreated)},
		{"date_sent null", m.DateSent == nil},
		{"uri", m.Uri != nil && *m.Uri == s.base()+"/Messages/"+*m.Sid+".json"},
		{"subresource_uris", m.SubresourceUris != nil && (*m.SubresourceUris)["media"] == s.base()+"/Messages/"+*m.Sid+"/Media.json"},
	}
	for _, c := range checks {
		if !c.ok {
			t.Errorf("%s wrong in %+v", c.name, m)
		}
	}
	// Fields Twilio sends as null are present as null, not missing.
	var raw map[string]any
	r := s.get(t, s.base()+"/Messages/"+*m.Sid+".json", nil)
	json.Unmarshal(r.body, &raw)
	for _, k := range []string{"price", "error_code", "error_message", "messaging_service_sid"} {
		if v, ok := raw[k]; !ok || v != nil {
			t.Errorf("%s = %v (present %v), want null", k, v, ok)
		}
	}
	long := s.sendMessage(t, msgForm("+14155551234", strings.Repeat("é", 161)+"✓"))
	if *long.NumSegments != "3" { // UCS-2: 162 chars in parts of 67
		t.Errorf("num_segments %q for 162 UCS-2 chars, want 3", *long.NumSegments)
	}
}

func TestMessageLifecycle(t *testing.T) {
	t.Parallel()
	tests := []struct {
		name   string
		to     string
		status string
		code   int
	}{
		{"delivered", "+14155551234", "delivered", 0},
		{"undelivered", NumberSMSUndelivered, "undelivered", 30003},
		{"failed", NumberSMSFailed, "failed", 30005},
	}
	for _, tt := range tests {
		t.Run(tt.name, func(t *testing.T) {
			t.Parallel()
			s := newSim(t, testConfig())
			h := newHook(t)
			form := msgForm(tt.to, "status please")
			form.Set("StatusCallback", h.srv.URL+"/status?tenant=7")
			m := s.sendMessage(t, form)
			var got tgMessage
			eventually(t, 5*time.Second, "final status", func() bool {
				got = decode[tgMessage](t, s.get(t, s.base()+"/Messages/"+*m.Sid+".json", nil))
				return *got.Status == tt.status
			})
			if got.DateSent == nil || !dateRE.MatchString(*got.DateSent) {
				t.Errorf("date_sent %v", got.DateSent)
			}
			if tt.code == 0 && (got.ErrorCode != nil || got.ErrorMessage != nil) {
				t.Errorf("error %v %v on delivered message", got.ErrorCode, got.ErrorMessage)
			}
			if tt.code != 0 && (got.ErrorCode == nil || *got.ErrorCode != tt.code || got.ErrorMessage == nil) {
				t.Errorf("error_code %v, want %d", got.ErrorCode, tt.code)
			}

			wantSeq := []string{"sending", "sent", tt.status}
			eventually(t, 5*time.Second, "callbacks", func() bool { return len(h.got()) == len(wantSeq) })
			for i, r := range h.got() {
				checkSignature(t, s.AuthToken(), r)
				if r.method != http.MethodPost {
					t.Errorf("callback method %s", r.method)
				}
				f := r.form
				if f.Get("MessageStatus") != wantSeq[i] || f.Get("SmsStatus") != wantSeq[i] {
					t.Errorf("callback %d status %q, want %q", i, f.Get("MessageStatus"), wantSeq[i])
				}
				for k, want := range map[string]string{"MessageSid": *m.Sid, "SmsSid": *m.Sid, "AccountSid": s.AccountSID(),
					"From": "+15005550006", "To": tt.to, "ApiVersion": "2010-04-01"} {
					if f.Get(k) != want {
						t.Errorf("callback %s = %q, want %q", k, f.Get(k), want)
					}
				}
				wantCode := ""
				if i == 2 && tt.code != 0 {
					wantCode = fmt.Sprint(tt.code)
				}
				if _, has := f["ErrorCode"]; f.Get("ErrorCode") != wantCode || has != (wantCode != "") {
					t.Errorf("callback %d ErrorCode %q, want %q", i, f.Get("ErrorCode"), wantCode)
				}
			}
			sm := s.Messages()
			if len(sm) != 1 || sm[0].Status != tt.status || (tt.code != 0) != (sm[0].ErrorCode != nil) {
				t.Errorf("Messages() = %+v", sm)
			}
		})
	}
}

func TestUndeliveredFirstThenDelivered(t *testing.T) {
	t.Parallel()
	s := newSim(t, testConfig())
	first := s.sendMessage(t, msgForm(NumberSMSUndeliveredFirst, "try 1"))
	second := s.sendMessage(t, msgForm(NumberSMSUndeliveredFirst, "try 2"))
	other := s.sendMessage(t, msgForm("+14155550000", "unrelated"))
	want := map[string]string{*first.Sid: "undelivered", *second.Sid: "delivered", *other.Sid: "delivered"}
	eventually(t, 5*time.Second, "final statuses", func() bool {
		for _, m := range s.Messages() {
			if m.Status != want[m.Sid] {
				return false
			}
		}
		return true
	})
	if m, _ := s.Message(*first.Sid); m.ErrorCode == nil || *m.ErrorCode != 30003 {
		t.Errorf("first message error %v, want 30003", m.ErrorCode)
	}
	// Reset clears the per-number counter.
	s.post(t, "/sim/reset", nil)
	again := s.sendMessage(t, msgForm(NumberSMSUndeliveredFirst, "after reset"))
	eventually(t, 5*time.Second, "undelivered after reset", func() bool {
		m, _ := s.Message(*again.Sid)
		return m.Status == "undelivered"
	})
}

func TestMessagingService(t *testing.T) {
	t.Parallel()
	s := newSim(t, testConfig())
	ms := "MG0123456789abcdef0123456789abcdef"
	m := s.sendMessage(t, url.Values{"To": {"+14155551234"}, "MessagingServiceSid": {ms}, "Body": {"via service"}})
	if *m.Status != "accepted" || m.From != nil || *m.MessagingServiceSid != ms || *m.NumSegments != "0" {
		t.Fatalf("accepted message %+v", m)
	}
	eventually(t, 5*time.Second, "delivered", func() bool {
		got, _ := s.Message(*m.Sid)
		return got.Status == "delivered"
	})
	got := decode[tgMessage](t, s.get(t, s.base()+"/Messages/"+*m.Sid+".json", nil))
	if got.From == nil || *got.From != DefaultFromDefault || *got.NumSegments != "1" {
		t.Errorf("from %v segments %v after queueing, want %s and 1", got.From, *got.NumSegments, DefaultFromDefault)
	}
}

func TestMessageValidation(t *testing.T) {
	t.Parallel()
	s := newSim(t, testConfig())
	tests := []struct {
		name string
		form url.Values
		code int
	}{
		{"missing To", url.Values{"From": {"+15005550006"}, "Body": {"x"}}, 21604},
		{"malformed To", msgForm("555-1234", "x"), 21211},
		{"To without plus", msgForm("14155551234", "x"), 21211},
		{"To too long", msgForm("+1234567890123456", "x"), 21211},
		{"empty body", msgForm("+14155551234", ""), 21602},
		{"body over 1600", msgForm("+14155551234", strings.Repeat("a", 2000)), 21617},
		{"missing From", url.Values{"To": {"+14155551234"}, "Body": {"x"}}, 21603},
		{"bad From", url.Values{"To": {"+14155551234"}, "From": {"+1-not-a-number!"}, "Body": {"x"}}, 21212},
		{"bad service sid", url.Values{"To": {"+14155551234"}, "MessagingServiceSid": {"MGnope"}, "Body": {"x"}}, 21701},
		{"bad media", url.Values{"To": {"+14155551234"}, "From": {"+15005550006"}, "MediaUrl": {"ftp://x"}}, 21620},
		{"bad status callback", url.Values{"To": {"+14155551234"}, "From": {"+15005550006"}, "Body": {"x"}, "StatusCallback": {"not a url"}}, 21609},
		{"bad validity", url.Values{"To": {"+14155551234"}, "From": {"+15005550006"}, "Body": {"x"}, "ValidityPeriod": {"0"}}, 21100},
	}
	for _, tt := range tests {
		t.Run(tt.name, func(t *testing.T) {
			t.Parallel()
			wantError(t, s.post(t, s.base()+"/Messages.json", tt.form), http.StatusBadRequest, tt.code)
		})
	}
	t.Run("1600 characters is fine", func(t *testing.T) {
		t.Parallel()
		m := s.sendMessage(t, msgForm("+14155551234", strings.Repeat("a", 1600)))
		if *m.NumSegments != "11" {
			t.Errorf("num_segments %s, want 11", *m.NumSegments)
		}
	})
	t.Run("media without body", func(t *testing.T) {
		t.Parallel()
		m := s.sendMessage(t, url.Values{"To": {"+14155551234"}, "From": {"+15005550006"}, "MediaUrl": {"https://example.com/a.png"}})
		if *m.NumMedia != "1" {
			t.Errorf("num_media %s", *m.NumMedia)
		}
	})
	t.Run("validity period recorded", func(t *testing.T) {
		t.Parallel()
		f := msgForm("+14155557777", "x")
		f.Set("ValidityPeriod", "600")
		m := s.sendMessage(t, f)
		got, _ := s.Message(*m.Sid)
		if got.ValidityPeriod != 600 {
			t.Errorf("validity %d", got.ValidityPeriod)
		}
	})
	t.Run("body too large", func(t *testing.T) {
		t.Parallel()
		f := msgForm("+14155551234", strings.Repeat("a", 2<<20))
		wantError(t, s.post(t, s.base()+"/Messages.json", f), http.StatusRequestEntityTooLarge, 20413)
	})
	t.Run("malformed form", func(t *testing.T) {
		t.Parallel()
		req, _ := http.NewRequest(http.MethodPost, s.URL+s.base()+"/Messages.json", strings.NewReader("To=%zz&Body=%"))
		req.Header.Set("Content-Type", "application/x-www-form-urlencoded")
		req.SetBasicAuth(s.AccountSID(), s.AuthToken())
		resp, err := http.DefaultClient.Do(req)
		if err != nil {
			t.Fatal(err)
		}
		resp.Body.Close()
		if resp.StatusCode != http.StatusBadRequest {
			t.Errorf("status %d, want 400", resp.StatusCode)
		}
	})
	t.Run("wrong method", func(t *testing.T) {
		t.Parallel()
		r := s.do(t, http.MethodDelete, s.base()+"/Messages.json", nil, s.AccountSID(), s.AuthToken())
		wantError(t, r, http.StatusMethodNotAllowed, 20004)
	})
}

func TestMagicNumbers(t *testing.T) {
	t.Parallel()
	s := newSim(t, testConfig())
	messages := []struct {
		from, to string
		code     int
	}{
		{"+15005550001", "+14155551234", 21212},
		{"+15005550007", "+14155551234", 21606},
		{"+15005550008", "+14155551234", 21611},
		{"+15005550006", "+15005550001", 21211},
		{"+15005550006", "+15005550002", 21612},
		{"+15005550006", "+15005550003", 21408},
		{"+15005550006", "+15005550004", 21610},
		{"+15005550006", "+15005550009", 21614},
	}
	for _, tt := range messages {
		t.Run(fmt.Sprintf("message %s to %s", tt.from, tt.to), func(t *testing.T) {
			t.Parallel()
			form := url.Values{"From": {tt.from}, "To": {tt.to}, "Body": {"magic"}}
			wantError(t, s.post(t, s.base()+"/Messages.json", form), http.StatusBadRequest, tt.code)
		})
	}
	calls := []struct {
		from, to string
		code     int
	}{
		{"+15005550006", "+15005550001", 21217},
		{"+15005550006", "+15005550002", 21214},
		{"+15005550006", "+15005550003", 21215},
		{"+15005550006", "+15005550004", 21216},
		{"+15005550001", "+14155551234", 21212},
		{"+15005550007", "+14155551234", 21210},
	}
	for _, tt := range calls {
		t.Run(fmt.Sprintf("call %s to %s", tt.from, tt.to), func(t *testing.T) {
			t.Parallel()
			form := callForm(tt.to)
			form.Set("From", tt.from)
			wantError(t, s.post(t, s.base()+"/Calls.json", form), http.StatusBadRequest, tt.code)
		})
	}
	t.Run("valid magic From", func(t *testing.T) {
		m := s.sendMessage(t, msgForm("+14155551234", "ok"))
		if *m.From != magicValidFrom {
			t.Errorf("from %s", *m.From)
		}
	})
}

func TestListMessages(t *testing.T) {
	t.Parallel()
	s := newSim(t, testConfig())
	var sids []string // oldest first
	for i := range 7 {
		to := "+14155550001"
		if i%2 == 1 {
			to = "+14155550002"
		}
		m := s.sendMessage(t, msgForm(to, fmt.Sprint("message ", i)))
		sids = append(sids, *m.Sid)
	}
	eventually(t, 5*time.Second, "all sent", func() bool {
		for _, m := range s.Messages() {
			if m.SentAt == nil {
				return false
			}
		}
		return true
	})

	// walk follows next_page_uri the way twilio-go does: base URL + path.
	walk := func(t *testing.T, query url.Values) []string {
		t.Helper()
		var got []string
		r := s.get(t, s.base()+"/Messages.json", query)
		for page := 0; ; page++ {
			if r.status != http.StatusOK {
				t.Fatalf("list: %d %s", r.status, r.body)
			}
			l := decode[tgListMessages](t, r)
			if l.Page != page {
				t.Errorf("page %d, want %d", l.Page, page)
			}
			for _, m := range l.Messages {
				got = append(got, *m.Sid)
			}
			if l.NextPageUri == nil {
				return got
			}
			if !strings.HasPrefix(*l.NextPageUri, s.base()+"/Messages.json?") {
				t.Fatalf("next_page_uri %q", *l.NextPageUri)
			}
			r = s.get(t, *l.NextPageUri, nil)
		}
	}
	newestFirst := func(keep func(i int) bool) []string {
		var out []string
		for i := len(sids) - 1; i >= 0; i-- {
			if keep(i) {
				out = append(out, sids[i])
			}
		}
		return out
	}
	today := time.Now().UTC().Format(time.DateOnly)
	tests := []struct {
		name  string
		query url.Values
		want  []string
	}{
		{"all", nil, newestFirst(func(int) bool { return true })},
		{"paged by 2", url.Values{"PageSize": {"2"}}, newestFirst(func(int) bool { return true })},
		{"paged by 1 to", url.Values{"PageSize": {"1"}, "To": {"+14155550002"}}, newestFirst(func(i int) bool { return i%2 == 1 })},
		{"to", url.Values{"To": {"+14155550001"}}, newestFirst(func(i int) bool { return i%2 == 0 })},
		{"from", url.Values{"From": {"+15005550006"}}, newestFirst(func(int) bool { return true })},
		{"from other", url.Values{"From": {"+15005550099"}}, nil},
		{"date sent today", url.Values{"DateSent": {today}}, newestFirst(func(int) bool { return true })},
		{"date sent before today", url.Values{"DateSent<": {"2020-01-01"}}, nil},
		{"date sent after today", url.Values{"DateSent>": {today}, "PageSize": {"3"}}, newestFirst(func(int) bool { return true })},
		{"date sent after an hour ago, RFC 3339", url.Values{"DateSent>": {time.Now().Add(-time.Hour).UTC().Format(time.RFC3339)}}, newestFirst(func(int) bool { return true })},
		{"date sent after tomorrow", url.Values{"DateSent>": {time.Now().Add(48 * time.Hour).UTC().Format(time.DateOnly)}}, nil},
	}
	for _, tt := range tests {
		t.Run(tt.name, func(t *testing.T) {
			t.Parallel()
			got := walk(t, tt.query)
			if strings.Join(got, ",") != strings.Join(tt.want, ",") {
				t.Errorf("got %v\nwant %v", got, tt.want)
			}
		})
	}
	t.Run("envelope", func(t *testing.T) {
		t.Parallel()
		r := s.get(t, s.base()+"/Messages.json", url.Values{"PageSize": {"3"}})
		var raw map[string]any
		json.Unmarshal(r.body, &raw)
		for _, k := range []string{"messages", "page", "page_size", "first_page_uri", "next_page_uri", "previous_page_uri", "start", "end", "uri"} {
			if _, ok := raw[k]; !ok {
				t.Errorf("envelope lacks %s", k)
			}
		}
		l := decode[tgListMessages](t, r)
		if l.PageSize != 3 || l.Start != 0 || l.End != 2 || l.PreviousPageUri != nil || l.NextPageUri == nil {
			t.Errorf("first page %+v", l)
		}
		second := decode[tgListMessages](t, s.get(t, *l.NextPageUri, nil))
		if second.Start != 3 || second.End != 5 || second.PreviousPageUri == nil {
			t.Errorf("second page start %d end %d prev %v", second.Start, second.End, second.PreviousPageUri)
		}
		back := decode[tgListMessages](t, s.get(t, *second.PreviousPageUri, nil))
		if len(back.Messages) != 3 || *back.Messages[0].Sid != *l.Messages[0].Sid {
			t.Errorf("previous page does not lead back to the first")
		}
		last := decode[tgListMessages](t, s.get(t, s.base()+"/Messages.json", url.Values{"PageSize": {"1000"}}))
		if last.NextPageUri != nil {
			t.Errorf("next_page_uri %q on the only page", *last.NextPageUri)
		}
		big := decode[tgListMessages](t, s.get(t, s.base()+"/Messages.json", url.Values{"PageSize": {"5000"}}))
		if big.PageSize != PageSizeMax {
			t.Errorf("page_size %d, want clamp to %d", big.PageSize, PageSizeMax)
		}
	})
	t.Run("bad query", func(t *testing.T) {
		t.Parallel()
		for _, q := range []url.Values{{"PageSize": {"x"}}, {"Page": {"-1"}}, {"DateSent": {"yesterday"}}} {
			if r := s.get(t, s.base()+"/Messages.json", q); r.status != http.StatusBadRequest {
				t.Errorf("%v: status %d", q, r.status)
			}
		}
	})
}

func TestCalls(t *testing.T) {
	t.Parallel()
	tests := []struct {
		name     string
		to       string
		status   string
		duration string
		events   []string // requested
		want     []string // CallStatus of the callbacks, in order
	}{
		{"completed default events", "+14155551234", "completed", "1", nil, []string{"completed"}},
		{"completed all events", "+14155551234", "completed", "1", []string{"initiated", "ringing", "answered", "completed"}, []string{"initiated", "ringing", "in-progress", "completed"}},
		{"busy", NumberCallBusy, "busy", "0", []string{"ringing", "completed"}, []string{"ringing", "busy"}},
		{"no-answer", NumberCallNoAnswer, "no-answer", "0", []string{"answered", "completed"}, []string{"no-answer"}},
		{"failed", NumberCallFailed, "failed", "0", nil, []string{"failed"}},
	}
	for _, tt := range tests {
		t.Run(tt.name, func(t *testing.T) {
			t.Parallel()
			s := newSim(t, testConfig())
			h := newHook(t)
			form := callForm(tt.to)
			form.Set("StatusCallback", h.srv.URL+"/calls")
			form.Set("MachineDetection", "Enable")
			for _, ev := range tt.events {
				form.Add("StatusCallbackEvent", ev)
			}
			c := s.placeCall(t, form)
			if !sidRE.MatchString(*c.Sid) || *c.Status != "queued" || c.Duration != nil || c.StartTime != nil ||
				*c.Direction != "outbound-api" || *c.ApiVersion != "2010-04-01" || !dateRE.MatchString(*c.DateCreated) ||
				*c.Uri != s.base()+"/Calls/"+*c.Sid+".json" || c.QueueTime == nil {
				t.Fatalf("created call %+v", c)
			}
			var got tgCall
			fetches := 0
			eventually(t, 5*time.Second, "terminal status", func() bool {
				got = decode[tgCall](t, s.get(t, s.base()+"/Calls/"+*c.Sid+".json", nil))
				fetches++
				return *got.Status == tt.status
			})
			if got.Duration == nil || *got.Duration != tt.duration {
				t.Errorf("duration %v, want %s", got.Duration, tt.duration)
			}
			if got.StartTime == nil || got.EndTime == nil || !dateRE.MatchString(*got.EndTime) {
				t.Errorf("start %v end %v", got.StartTime, got.EndTime)
			}
			if (tt.status == "completed") != (got.AnsweredBy != nil) {
				t.Errorf("answered_by %v for %s", got.AnsweredBy, tt.status)
			}
			sc, _ := s.Call(*c.Sid)
			if sc.Fetches != fetches || sc.Status != tt.status {
				t.Errorf("fetches %d, want %d; status %s", sc.Fetches, fetches, sc.Status)
			}

			eventually(t, 5*time.Second, "callbacks", func() bool { return len(h.got()) == len(tt.want) })
			time.Sleep(20 * time.Millisecond) // no extra callbacks trail behind
			reqs := h.got()
			if len(reqs) != len(tt.want) {
				t.Fatalf("%d callbacks, want %d", len(reqs), len(tt.want))
			}
			for i, r := range reqs {
				checkSignature(t, s.AuthToken(), r)
				f := r.form
				if f.Get("CallStatus") != tt.want[i] || f.Get("SequenceNumber") != fmt.Sprint(i) {
					t.Errorf("callback %d: CallStatus %q SequenceNumber %q, want %q %d", i, f.Get("CallStatus"), f.Get("SequenceNumber"), tt.want[i], i)
				}
				for k, want := range map[string]string{"CallSid": *c.Sid, "AccountSid": s.AccountSID(), "From": "+15005550006",
					"To": tt.to, "Direction": "outbound-api", "ApiVersion": "2010-04-01", "CallbackSource": "call-progress-events"} {
					if f.Get(k) != want {
						t.Errorf("callback %d %s = %q, want %q", i, k, f.Get(k), want)
					}
				}
				if !dateRE.MatchString(f.Get("Timestamp")) {
					t.Errorf("Timestamp %q", f.Get("Timestamp"))
				}
				terminal := i == len(reqs)-1 && tt.want[i] != "in-progress" && tt.want[i] != "ringing" && tt.want[i] != "initiated"
				if terminal && f.Get("CallDuration") != tt.duration {
					t.Errorf("CallDuration %q, want %s", f.Get("CallDuration"), tt.duration)
				}
				if !terminal && f.Has("CallDuration") {
					t.Errorf("CallDuration on %s callback", tt.want[i])
				}
			}
		})
	}
}

func TestCallValidationAndList(t *testing.T) {
	t.Parallel()
	s := newSim(t, testConfig())
	bad := []struct {
		name string
		form url.Values
		code int
	}{
		{"missing To", url.Values{"From": {"+15005550006"}, "Url": {"http://x.test/a"}}, 21201},
		{"missing From", url.Values{"To": {"+14155551234"}, "Url": {"http://x.test/a"}}, 21213},
		{"missing Url and Twiml", url.Values{"To": {"+14155551234"}, "From": {"+15005550006"}}, 21205},
		{"invalid To", url.Values{"To": {"12"}, "From": {"+15005550006"}, "Url": {"http://x.test/a"}}, 21217},
		{"Url not http", url.Values{"To": {"+14155551234"}, "From": {"+15005550006"}, "Url": {"ftp://x.test/a"}}, 21205},
		{"bad event", url.Values{"To": {"+14155551234"}, "From": {"+15005550006"}, "Url": {"http://x.test/a"}, "StatusCallbackEvent": {"exploded"}}, 21626},
	}
	for _, tt := range bad {
		t.Run(tt.name, func(t *testing.T) {
			t.Parallel()
			wantError(t, s.post(t, s.base()+"/Calls.json", tt.form), http.StatusBadRequest, tt.code)
		})
	}
	t.Run("list", func(t *testing.T) {
		t.Parallel()
		twiml := url.Values{"To": {"+14155559999"}, "From": {"+15005550006"}, "Twiml": {"<Response><Say>hi</Say></Response>"}, "Record": {"true"}}
		a := s.placeCall(t, twiml)
		b := s.placeCall(t, callForm("+14155559998"))
		l := decode[tgListCalls](t, s.get(t, s.base()+"/Calls.json", url.Values{"To": {"+14155559999"}}))
		if len(l.Calls) != 1 || *l.Calls[0].Sid != *a.Sid {
			t.Fatalf("To filter: %+v", l)
		}
		eventually(t, 5*time.Second, "ringing", func() bool {
			c, _ := s.Call(*b.Sid)
			return c.StartTime != nil
		})
		l = decode[tgListCalls](t, s.get(t, s.base()+"/Calls.json", url.Values{"StartTime>": {time.Now().Add(-time.Minute).UTC().Format(time.RFC3339)}, "To": {"+14155559998"}}))
		if len(l.Calls) != 1 || *l.Calls[0].Sid != *b.Sid {
			t.Errorf("StartTime> filter: %d calls", len(l.Calls))
		}
		l = decode[tgListCalls](t, s.get(t, s.base()+"/Calls.json", url.Values{"StartTime<": {"2001-01-01"}}))
		if len(l.Calls) != 0 {
			t.Errorf("StartTime< filter: %d calls", len(l.Calls))
		}
		sc, _ := s.Call(*a.Sid)
		if !sc.Record || sc.Twiml == "" || sc.URL != "" {
			t.Errorf("recorded call %+v", sc)
		}
	})
}

func TestGetStatusCallback(t *testing.T) {
	t.Parallel()
	s := newSim(t, testConfig())
	h := newHook(t)
	form := callForm("+14155551234")
	form.Set("StatusCallback", h.srv.URL+"/cb?a=1")
	form.Set("StatusCallbackMethod", "GET")
	s.placeCall(t, form)
	eventually(t, 5*time.Second, "callback", func() bool { return len(h.got()) == 1 })
	r := h.got()[0]
	if r.method != http.MethodGet || r.form.Get("CallStatus") != "completed" || r.form.Get("a") != "1" {
		t.Fatalf("GET callback %+v", r)
	}
	checkSignature(t, s.AuthToken(), r) // GET: the URL alone is signed
}

func TestSimEndpoints(t *testing.T) {
	t.Parallel()
	s := newSim(t, testConfig())
	f := msgForm("+14155550101", "hi")
	f.Set("StatusCallback", "https://example.com/cb")
	m := s.sendMessage(t, f)
	s.sendMessage(t, msgForm("+14155550102", "there"))
	s.placeCall(t, callForm("+14155550101"))

	r := s.do(t, http.MethodGet, "/sim/messages?to=%2B14155550101", nil, "", "")
	var msgs []map[string]any
	if err := json.Unmarshal(r.body, &msgs); err != nil || len(msgs) != 1 {
		t.Fatalf("/sim/messages?to=: %v %s", err, r.body)
	}
	got := msgs[0]
	for _, k := range []string{"sid", "to", "from", "body", "status", "errorCode", "numSegments", "createdAt", "messagingServiceSid", "validityPeriod", "statusCallback"} {
		if _, ok := got[k]; !ok {
			t.Errorf("/sim/messages lacks %s", k)
		}
	}
	if got["sid"] != *m.Sid || got["numSegments"] != 1.0 || got["errorCode"] != nil || got["statusCallback"] != "https://example.com/cb" {
		t.Errorf("/sim/messages entry %v", got)
	}
	if ts, err := time.Parse(time.RFC3339Nano, got["createdAt"].(string)); err != nil || ts.IsZero() {
		t.Errorf("createdAt %v: %v", got["createdAt"], err)
	}
	all := s.do(t, http.MethodGet, "/sim/messages", nil, "", "")
	if n := len(decode[[]Message](t, all)); n != 2 {
		t.Errorf("%d messages, want 2", n)
	}

	r = s.do(t, http.MethodGet, "/sim/calls", nil, "", "")
	var calls []map[string]any
	json.Unmarshal(r.body, &calls)
	if len(calls) != 1 {
		t.Fatalf("/sim/calls: %s", r.body)
	}
	for _, k := range []string{"sid", "to", "from", "status", "duration", "createdAt", "fetches", "url", "twiml", "record", "answeredBy", "statusCallback"} {
		if _, ok := calls[0][k]; !ok {
			t.Errorf("/sim/calls lacks %s", k)
		}
	}

	if r := s.do(t, http.MethodPost, "/sim/reset", url.Values{}, "", ""); r.status != http.StatusOK {
		t.Fatalf("reset: %d", r.status)
	}
	if len(s.Messages()) != 0 || len(s.Calls()) != 0 {
		t.Error("records survive reset")
	}
	if r := s.do(t, http.MethodGet, "/sim/messages", nil, "", ""); strings.TrimSpace(string(r.body)) != "[]" {
		t.Errorf("empty list is %s, want []", r.body)
	}
}

func TestSimConfig(t *testing.T) {
	t.Parallel()
	s := newSim(t, Config{})
	post := func(body string) response {
		req, _ := http.NewRequest(http.MethodPost, s.URL+"/sim/config", strings.NewReader(body))
		req.Header.Set("Content-Type", "application/json")
		resp, err := http.DefaultClient.Do(req)
		if err != nil {
			t.Fatal(err)
		}
		defer resp.Body.Close()
		b, _ := io.ReadAll(resp.Body)
		return response{status: resp.StatusCode, body: b}
	}
	r := post(`{"latency":"50ms-150ms","errorRate":0.5,"maxConcurrent":10,"dropRate":0.2}`)
	if r.status != http.StatusOK {
		t.Fatalf("POST /sim/config: %d %s", r.status, r.body)
	}
	k := s.Knobs()
	want := Knobs{Latency: Latency{50 * time.Millisecond, 150 * time.Millisecond}, ErrorRate: 0.5, MaxConcurrent: 10, DropRate: 0.2,
		CallRing: CallRingDefault, CallDuration: CallDurationDefault, DeliveryDelay: DeliveryDelayDefault}
	if k != want {
		t.Fatalf("knobs %+v, want %+v", k, want)
	}
	r = post(`{"callRing":"2s","inboundUrl":"http://127.0.0.1:9/in"}`)
	if r.status != http.StatusOK || s.Knobs().CallRing != 2*time.Second || s.Knobs().ErrorRate != 0.5 {
		t.Fatalf("partial update: %d %s %+v", r.status, r.body, s.Knobs())
	}
	got := decode[map[string]any](t, s.do(t, http.MethodGet, "/sim/config", nil, "", ""))
	if got["latency"] != "50ms-150ms" || got["callRing"] != "2s" || got["inboundUrl"] != "http://127.0.0.1:9/in" {
		t.Errorf("GET /sim/config %v", got)
	}
	bad := map[string]string{
		"latency":     `{"latency":"soon"}`,
		"errorRate":   `{"errorRate":1.5}`,
		"dropRate":    `{"dropRate":-0.1}`,
		"callRing":    `{"callRing":"forever"}`,
		"unknown":     `{"colour":"blue"}`,
		"inboundUrl":  `{"inboundUrl":"mailto:x"}`,
		"not json":    `latency=1s`,
		"maxConc neg": `{"maxConcurrent":-1}`,
	}
	for name, body := range bad {
		before := s.Knobs()
		r := post(body)
		var e map[string]string
		json.Unmarshal(r.body, &e)
		if r.status != http.StatusBadRequest || e["error"] == "" {
			t.Errorf("%s: %d %s, want 400 with an error", name, r.status, r.body)
		}
		if s.Knobs() != before {
			t.Errorf("%s: knobs changed by a rejected update", name)
		}
	}
}

func TestSimInbound(t *testing.T) {
	t.Parallel()
	h := newHook(t)
	h.reply = "<Response/>"
	s := newSim(t, Config{InboundURL: h.srv.URL + "/twilio/inbound"})
	tests := []struct {
		name, body, optOut, want string
		form                     bool
	}{
		{"plain", "hello there", "", "", false},
		{"stop keyword", "  stop ", "", "STOP", false},
		{"unsubscribe", "UNSUBSCRIBE", "", "STOP", true},
		{"start", "Start", "", "START", false},
		{"help", "help", "", "HELP", false},
		{"not a keyword", "please stop texting", "", "", false},
		{"explicit", "whatever", "STOP", "STOP", false},
	}
	for i, tt := range tests {
		t.Run(tt.name, func(t *testing.T) {
			from := fmt.Sprintf("+1415555%04d", i)
			var r response
			if tt.form {
				r = s.do(t, http.MethodPost, "/sim/inbound", url.Values{"From": {from}, "To": {"+15005550006"}, "Body": {tt.body}}, "", "")
			} else {
				b, _ := json.Marshal(map[string]string{"from": from, "to": "+15005550006", "body": tt.body, "optOutType": tt.optOut})
				req, _ := http.NewRequest(http.MethodPost, s.URL+"/sim/inbound", strings.NewReader(string(b)))
				req.Header.Set("Content-Type", "application/json")
				resp, err := http.DefaultClient.Do(req)
				if err != nil {
					t.Fatal(err)
				}
				var out map[string]any
				json.NewDecoder(resp.Body).Decode(&out)
				resp.Body.Close()
				b, _ = json.Marshal(out)
				r = response{status: resp.StatusCode, body: b}
			}
			out := decode[map[string]any](t, r)
			if r.status != http.StatusOK || out["status"] != 200.0 || out["body"] != "<Response/>" {
				t.Fatalf("inbound answer %d %v", r.status, out)
			}
			var got hookRequest
			for _, hr := range h.got() {
				if hr.form.Get("From") == from {
					got = hr
				}
			}
			if got.form == nil {
				t.Fatal("webhook not received")
			}
			checkSignature(t, s.AuthToken(), got)
			f := got.form
			if !sidRE.MatchString(f.Get("MessageSid")) || f.Get("SmsSid") != f.Get("MessageSid") || f.Get("SmsMessageSid") != f.Get("MessageSid") ||
				f.Get("Body") != tt.body || f.Get("To") != "+15005550006" || f.Get("NumMedia") != "0" || f.Get("NumSegments") != "1" ||
				f.Get("AccountSid") != s.AccountSID() || f.Get("ApiVersion") != "2010-04-01" {
				t.Errorf("webhook form %v", f)
			}
			if f.Get("OptOutType") != tt.want || f.Has("OptOutType") != (tt.want != "") {
				t.Errorf("OptOutType %q, want %q", f.Get("OptOutType"), tt.want)
			}
		})
	}
	t.Run("no inbound url", func(t *testing.T) {
		s2 := newSim(t, Config{})
		r := s2.do(t, http.MethodPost, "/sim/inbound", url.Values{"From": {"+14155551234"}, "To": {"+15005550006"}, "Body": {"x"}}, "", "")
		if r.status != http.StatusBadGateway || !strings.Contains(string(r.body), "error") {
			t.Errorf("%d %s, want 502", r.status, r.body)
		}
	})
	t.Run("unreachable inbound url", func(t *testing.T) {
		s2 := newSim(t, Config{InboundURL: "http://127.0.0.1:1/in"})
		r := s2.do(t, http.MethodPost, "/sim/inbound", url.Values{"From": {"+14155551234"}, "To": {"+15005550006"}, "Body": {"x"}}, "", "")
		if r.status != http.StatusBadGateway {
			t.Errorf("%d %s, want 502", r.status, r.body)
		}
	})
}

func TestCallUpdates(t *testing.T) {
	cfg := testConfig()
	cfg.CallRing = time.Hour // rings until hung up
	s := newSim(t, cfg)
	create := func() string {
		r := s.do(t, http.MethodPost, s.base()+"/Calls.json", url.Values{"To": {"+14155550100"}, "From": {"+15005550006"}, "Url": {"https://example.com/t"}}, s.AccountSID(), s.AuthToken())
		var c struct{ Sid string }
		_ = json.Unmarshal(r.body, &c)
		return c.Sid
	}
	update := func(sid string, form url.Values) response {
		return s.do(t, http.MethodPost, s.base()+"/Calls/"+sid+".json", form, s.AccountSID(), s.AuthToken())
	}
	waitStatus := func(sid, want string) {
		deadline := time.Now().Add(10 * time.Second)
		for {
			c, _ := s.Call(sid)
			if c.Status == want {
				return
			}
			if time.Now().After(deadline) {
				t.Fatalf("call %s is %s; want %s", sid, c.Status, want)
			}
			time.Sleep(5 * time.Millisecond)
		}
	}
	sid := create()
	waitStatus(sid, "ringing")
	if r := update(sid, url.Values{"Url": {"https://example.com/other"}}); r.status != 200 {
		t.Fatalf("redirect: %d %s", r.status, r.body)
	}
	if c, _ := s.Call(sid); c.URL != "https://example.com/other" || c.Updates != 1 {
		t.Fatalf("after redirect %+v", c)
	}
	if r := update(sid, url.Values{"Status": {"canceled"}}); r.status != 200 || !strings.Contains(string(r.body), `"status":"canceled"`) {
		t.Fatalf("cancel: %d %s", r.status, r.body)
	}
	if r := update(sid, url.Values{"Twiml": {"<Response/>"}}); r.status != 400 || !strings.Contains(string(r.body), "21220") {
		t.Fatalf("redirect of an ended call: %d %s", r.status, r.body)
	}
	if r := update(sid, url.Values{"Status": {"busy"}}); r.status != 400 {
		t.Fatalf("bad status: %d %s", r.status, r.body)
	}
	if r := update("CA"+strings.Repeat("0", 32), url.Values{"Status": {"completed"}}); r.status != 404 {
		t.Fatalf("unknown call: %d", r.status)
	}
}
