package e2e

import (
	"encoding/json"
	"fmt"
	"net/http"
	"slices"
	"strings"
	"testing"
	"time"

	"github.com/sbagenthub/twilio-worker/commlog"
)

// poolStack is a private Redis and simulator with workers that share the
// sender pool numbers at rate each (SENDER_POOL, SENDER_RATE).
func poolStack(t *testing.T, workers int, rate string, numbers ...string) *stack {
	t.Helper()
	s := &stack{redis: startRedis(t, onNode)}
	simAddr := freeAddr(t)
	start(t, nil, bin.twiliosim, "--addr", simAddr, "--delivery-delay", "10ms")
	s.simURL = "http://" + simAddr
	waitHTTP(t, s.simURL+"/sim/messages")
	s.env = []string{"REDIS_URL=" + s.redis.URL()}
	for i := range workers {
		addr := freeAddr(t)
		p := start(t, []string{"REDIS_URL=" + s.redis.URL(), "HTTP_ADDR=" + addr, "TWILIO_API_URL=" + s.simURL,
			"TWILIO_ACCOUNT_SID=AC00000000000000000000000000000000", "TWILIO_AUTH_TOKEN=00000000000000000000000000000000",
			"TWILIO_PHONE_NUMBER=+15005550006", "SENDER_POOL=" + strings.Join(numbers, ","), "SENDER_RATE=" + rate,
			"LOG_LEVEL=warn"}, bin.worker)
		waitHTTP(t, "http://"+addr+"/healthz")
		if i == 0 {
			s.http, s.worker = addr, p
		}
	}
	return s
}

// waitMessages polls the simulator until it holds at least n messages.
func waitMessages(t *testing.T, simURL string, n int, within time.Duration) []simMessage {
	t.Helper()
	deadline := time.Now().Add(within)
	for {
		msgs := simMessages(t, simURL)
		if len(msgs) >= n {
			return msgs
		}
		if time.Now().After(deadline) {
			t.Fatalf("%d of %d messages sent in %s", len(msgs), n, within)
		}
		time.Sleep(100 * time.Millisecond)
	}
}

type poolStatus struct {
	Numbers []struct {
		Number, Country, Rate string
		InRotation            bool
		Out                   *struct {
			Code   int
			Reason string
			Until  time.Time
		}
	}
	InRotation int
}

func poolStatusOf(t *testing.T, s *stack) poolStatus {
	t.Helper()
	r := runEnqueue(t, s.env, "pool", "status")
	if r.code != 0 {
		t.Fatalf("enqueue pool status: exit %d: %s", r.code, r.stderr)
	}
	var st poolStatus
	r.json(t, &st)
	return st
}

func recipients(prefix string, n int) string {
	var b strings.Builder
	for i := range n {
		fmt.Fprintf(&b, "%s%04d\n", prefix, i)
	}
	return b.String()
}

// TestSenderPoolSpreadsAndSticks: four US numbers at 2/s and one UK number,
// two workers. A campaign of 80 US recipients goes from the four US numbers,
// about a quarter each, none of them over its limit in any second; a UK
// recipient gets the UK number; a recipient's next message comes from the
// number it got first.
func TestSenderPoolSpreadsAndSticks(t *testing.T) {
	t.Parallel()
	us := []string{"+12025550101", "+13125550102", "+16175550103", "+17185550104"}
	const uk, ukTo, n = "+442071234567", "+447911123456", 80
	s := poolStack(t, 2, "2/s", append(slices.Clone(us), uk)...)

	if st := poolStatusOf(t, s); len(st.Numbers) != 5 || st.InRotation != 5 || st.Numbers[4].Country != "GB" || st.Numbers[0].Rate != "2/s" {
		t.Fatalf("pool status %+v; want the five numbers in rotation at 2/s", st)
	}
	list := writeFile(t, "us.txt", recipients("+1415555", n))
	r := runEnqueue(t, s.env, "bulk", "--campaign", "pool-us", "--body", "Incident 42: we are on it.", list)
	if r.code != 0 {
		t.Fatalf("enqueue bulk: exit %d: %s", r.code, r.stderr)
	}
	r = runEnqueue(t, s.env, "sms", "--to", ukTo, "--body", "Incident 42 (UK)")
	if r.code != 0 {
		t.Fatalf("enqueue sms: exit %d: %s", r.code, r.stderr)
	}
	// A 2FA code queued while the campaign drains goes ahead of it.
	const codeTo = "+14155559999"
	r = runEnqueue(t, s.env, "sms", "--to", codeTo, "--body", "Your code is 123456", "--queue", "critical", "--valid-for", "5m")
	if r.code != 0 {
		t.Fatalf("enqueue sms: exit %d: %s", r.code, r.stderr)
	}
	// 80 messages at 8/s take 10 s; a slow machine gets generous room.
	msgs := waitMessages(t, s.simURL, n+2, 120*time.Second)

	byFrom := map[string][]time.Time{}
	firstFrom := map[string]string{}
	for _, m := range msgs {
		if _, dup := firstFrom[m.To]; dup {
			t.Errorf("%s got a second message", m.To)
		}
		firstFrom[m.To] = m.From
		byFrom[m.From] = append(byFrom[m.From], m.CreatedAt)
	}
	if got := firstFrom[ukTo]; got != uk {
		t.Errorf("the UK recipient got %s; want the UK number %s", got, uk)
	}
	var first, last, code time.Time
	for _, m := range msgs {
		if m.To == ukTo {
			continue
		}
		if m.To == codeTo {
			code = m.CreatedAt
		}
		if !slices.Contains(us, m.From) {
			t.Errorf("a US recipient got %s, not one of the US numbers", m.From)
		}
		if first.IsZero() || m.CreatedAt.Before(first) {
			first = m.CreatedAt
		}
		if m.CreatedAt.After(last) {
			last = m.CreatedAt
		}
	}
	// The limiter's own decisions, per number, from the communications
	// log's "sending" entries (the simulator's arrivals carry delivery
	// jitter, which a busy machine makes as large as it likes).
	slotsFrom := map[string][]time.Time{}
	if _, err := commlog.New(s.redis.Client(t), commlog.Config{}).Read(bg, commlog.Filter{}, func(e commlog.Entry) error {
		if e.Event == commlog.Sending && !e.Slot.IsZero() {
			slotsFrom[e.From] = append(slotsFrom[e.From], e.Slot)
		}
		return nil
	}); err != nil {
		t.Fatal(err)
	}
	for _, num := range us {
		at := byFrom[num]
		most := mostInSecond(slotsFrom[num])
		t.Logf("%s: %d messages, at most %d let through in one second (%d arrived)", num, len(at), most, mostInSecond(at))
		// about n/4 each: the choice takes the soonest free number, so none
		// falls far behind (a loose bound: two workers choose concurrently)
		if len(at) < n/8 || len(at) > 3*n/8 {
			t.Errorf("%s sent %d of %d; want about %d", num, len(at), n, n/4)
		}
		// 2/s with a burst of 1 allows 3 in any one-second window.
		if len(slotsFrom[num]) != len(at) || most > 2+1 {
			t.Errorf("%s: %d messages let through in one second (%d decisions logged for %d sent); its limit is 2/s",
				num, most, len(slotsFrom[num]), len(at))
		}
	}
	if !code.Before(last) {
		t.Errorf("the 2FA code went at %v, after the campaign's last message at %v", code, last)
	}
	t.Logf("campaign: %d messages in %v (%.1f/s; the pool's US numbers sum to 8/s)", n, last.Sub(first).Round(time.Millisecond),
		float64(n-1)/last.Sub(first).Seconds())

	// The next message to a recipient comes from the number it got first.
	to := "+14155550007"
	r = runEnqueue(t, s.env, "sms", "--to", to, "--body", "Incident 42 resolved.")
	if r.code != 0 {
		t.Fatalf("enqueue sms: exit %d: %s", r.code, r.stderr)
	}
	msgs = waitMessages(t, s.simURL, n+3, 60*time.Second)
	follow := msgs[len(msgs)-1]
	if follow.To != to || follow.From != firstFrom[to] {
		t.Errorf("follow-up to %s came from %s; its first message came from %s", follow.To, follow.From, firstFrom[to])
	}
	// The ledger keeps the choice: the follow-up's task names its sender.
	var out struct{ TaskID string }
	r.json(t, &out)
	if from := s.redis.Client(t).HGet(bg, "tw:send:{"+to+"}:"+out.TaskID, "from").Val(); from != firstFrom[to] {
		t.Errorf("ledger records sender %q for the follow-up; it went from %s", from, firstFrom[to])
	}
}

// TestSenderPoolNumberLeavesRotation: a pool number that Twilio answers with
// 21611 (queue full) leaves rotation, the rest of the campaign goes from the
// others, and every recipient gets exactly one message. The number is shown
// out of rotation with its reason, and an operator can restore it.
func TestSenderPoolNumberLeavesRotation(t *testing.T) {
	t.Parallel()
	const full, n = "+15005550008", 30
	good := []string{"+12025550101", "+13125550102"}
	s := poolStack(t, 2, "5/s", full, good[0], good[1])

	list := writeFile(t, "list.txt", recipients("+1415555", n))
	r := runEnqueue(t, s.env, "bulk", "--campaign", "pool-21611", "--body", "Maintenance tonight.", list)
	if r.code != 0 {
		t.Fatalf("enqueue bulk: exit %d: %s", r.code, r.stderr)
	}
	waitCampaign(t, s, "pool-21611", "every message settled", func(st campaignStatus) bool { return st.Done == n })
	st := campaignStatusOf(t, s, "pool-21611")
	if st.Sent != n {
		t.Errorf("campaign status %+v; want all %d sent", st, n)
	}
	msgs := simMessages(t, s.simURL)
	got := map[string]int{}
	for _, m := range msgs {
		got[m.To]++
		if !slices.Contains(good, m.From) {
			t.Errorf("message to %s from %s; want one of the numbers in rotation", m.To, m.From)
		}
	}
	for i := range n {
		if to := fmt.Sprintf("+1415555%04d", i); got[to] != 1 {
			t.Errorf("%s got %d messages; want exactly one", to, got[to])
		}
	}
	if len(msgs) != n {
		t.Errorf("%d messages for %d recipients", len(msgs), n)
	}

	ps := poolStatusOf(t, s)
	if ps.InRotation != 2 || ps.Numbers[0].Number != full || ps.Numbers[0].InRotation || ps.Numbers[0].Out == nil ||
		ps.Numbers[0].Out.Code != 21611 || ps.Numbers[0].Out.Until.IsZero() {
		t.Fatalf("pool status %+v; want %s out of rotation for the cool-down, code 21611", ps, full)
	}

	// GET /v1/pool shows the same; DELETE /v1/pool/out/{number} restores it.
	resp, err := http.Get("http://" + s.http + "/v1/pool")
	if err != nil {
		t.Fatal(err)
	}
	var api poolStatus
	err = json.NewDecoder(resp.Body).Decode(&api)
	resp.Body.Close()
	if err != nil || resp.StatusCode != 200 || api.InRotation != 2 {
		t.Fatalf("GET /v1/pool: %d %+v %v", resp.StatusCode, api, err)
	}
	req, _ := http.NewRequest(http.MethodDelete, "http://"+s.http+"/v1/pool/out/"+full, nil)
	resp, err = http.DefaultClient.Do(req)
	if err != nil {
		t.Fatal(err)
	}
	resp.Body.Close()
	if resp.StatusCode != 200 {
		t.Fatalf("DELETE /v1/pool/out: %d", resp.StatusCode)
	}
	if ps := poolStatusOf(t, s); ps.InRotation != 3 {
		t.Errorf("after restoring %s: %d in rotation; want 3", full, ps.InRotation)
	}
	if r := runEnqueue(t, s.env, "pool", "restore", "+19995550000"); r.code != 2 {
		t.Errorf("enqueue pool restore of a bad number: exit %d; want 2", r.code)
	}
}
