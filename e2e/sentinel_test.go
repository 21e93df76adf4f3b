package e2e

import (
	"errors"
	"fmt"
	"io"
	"net/http"
	"strconv"
	"strings"
	"sync"
	"testing"
	"time"

	"github.com/hibiken/asynq"
	"github.com/redis/go-redis/v9"

	"github.com/sbagenthub/twilio-worker/internal/redistest"
	"github.com/sbagenthub/twilio-worker/tasks"
)

// Three Sentinel failovers while messages are enqueued and sent, with
// REDIS_WAIT_REPLICAS=1: every message `enqueue` acknowledged (exit 0)
// reaches Twilio exactly once. An enqueue that fails (exit 1: the replica did
// not confirm, or Redis was switching) is retried with the same --id, as a
// producer would.
func TestSentinelFailoversLoseAndRepeatNothing(t *testing.T) {
	t.Parallel()
	const n = 40 // each `enqueue sms` takes about a second under the race detector
	set := redistest.StartSentinel(t)
	simAddr := freeAddr(t)
	start(t, nil, bin.twiliosim, "--addr", simAddr, "--delivery-delay", "10ms", "--latency", "20ms-80ms")
	simURL := "http://" + simAddr
	waitHTTP(t, simURL+"/sim/messages")
	env := []string{"REDIS_URL=" + set.URL(), "REDIS_WAIT_REPLICAS=1"}
	for range 2 {
		addr := freeAddr(t)
		start(t, append([]string{"HTTP_ADDR=" + addr, "TWILIO_API_URL=" + simURL,
			"TWILIO_ACCOUNT_SID=AC00000000000000000000000000000000", "TWILIO_AUTH_TOKEN=00000000000000000000000000000000",
			"TWILIO_PHONE_NUMBER=+15005550006", "SENDER_RATE=10000/s", "RECIPIENT_RATE=10000/s", "CONCURRENCY=8"}, env...), bin.worker)
		waitHTTP(t, "http://"+addr+"/healthz")
	}
	to := func(i int) string { return fmt.Sprintf("+1415556%04d", i) }
	began := time.Now()

	var mu sync.Mutex
	acked := map[string]bool{}
	failures := 0
	enqueued := make(chan struct{})
	go func() {
		defer close(enqueued)
		deadline := time.Now().Add(3 * time.Minute)
		for i := 0; i < n; i++ {
			r := runEnqueue(t, env, "sms", "--to", to(i), "--body", "failover message "+strconv.Itoa(i), "--id", "fo-"+strconv.Itoa(i))
			mu.Lock()
			switch {
			case r.code == 0:
				acked[to(i)] = true
			case r.code == 1 && time.Now().Before(deadline):
				failures++
				i-- // retry the same id: idempotent
			default:
				t.Errorf("enqueue %d: exit %d: %s", i, r.code, r.stderr)
			}
			mu.Unlock()
		}
	}()

	for k := 1; k <= 3; k++ {
		// Fail over once a quarter, a half and three quarters of the
		// messages have gone, while the rest are being queued and sent.
		waitSimCount(t, simURL, n*k/4)
		set.Failover(t)
		t.Logf("failover %d: master now %s", k, set.Master(t).Addr)
	}
	<-enqueued
	t.Logf("all %d enqueued after %v", n, time.Since(began).Round(time.Millisecond))

	// Wait until no send task is left to run, then count. A task whose
	// end a failover discarded is active again with nobody running it:
	// asynq's recoverer takes it back once its lease (30 s) has been expired
	// for 30 s, looking once a minute, and it then waits out its backoff;
	// that alone can take over two minutes.
	rdb := redis.NewFailoverClient(&redis.FailoverOptions{MasterName: redistest.SentinelMaster, SentinelAddrs: []string{set.Sentinel.Addr}})
	defer rdb.Close()
	insp := asynq.NewInspectorFromRedisClient(rdb)
	deadline := time.Now().Add(4 * time.Minute)
	for {
		left, err := unfinishedSends(insp)
		if err == nil && left == 0 && len(simMessages(t, simURL)) >= len(acked) {
			break
		}
		if time.Now().After(deadline) {
			// Say where each missing message's task is, and what the
			// communications log holds of it, for whoever reads the failure.
			got := map[string]bool{}
			for _, m := range simMessages(t, simURL) {
				got[m.To] = true
			}
			for i := 0; i < n; i++ {
				if !got[to(i)] {
					st := runEnqueue(t, env, "status", "fo-"+strconv.Itoa(i))
					lg := runEnqueue(t, env, "log", "--to", to(i))
					t.Logf("not sent: fo-%d: status exit %d %s %s; log %s", i, st.code, st.stdout, st.stderr, lg.stdout)
				}
			}
			t.Fatalf("send tasks still unfinished: %d (%v); simulator has %d of %d", left, err, len(simMessages(t, simURL)), len(acked))
		}
		time.Sleep(100 * time.Millisecond)
	}
	t.Logf("all sent after %v", time.Since(began).Round(time.Millisecond))
	by := map[string]int{}
	for _, m := range simMessages(t, simURL) {
		by[m.To]++
	}
	mu.Lock()
	defer mu.Unlock()
	if len(acked) != n {
		t.Errorf("%d of %d messages acknowledged", len(acked), n)
	}
	for num := range acked {
		if by[num] != 1 {
			t.Errorf("%s: acknowledged, reached Twilio %d times (want exactly once)", num, by[num])
		}
	}
	for num, c := range by {
		if c > 1 {
			t.Errorf("%s sent %d times", num, c)
		}
	}
	t.Logf("%d acknowledged, %d enqueue attempts failed and were retried, 3 failovers", len(acked), failures)
}

// waitSimCount waits until the simulator has at least want messages.
func waitSimCount(t *testing.T, simURL string, want int) {
	t.Helper()
	deadline := time.Now().Add(2 * time.Minute)
	for len(simMessages(t, simURL)) < want {
		if time.Now().After(deadline) {
			t.Fatalf("simulator has %d messages, waited for %d", len(simMessages(t, simURL)), want)
		}
		time.Sleep(50 * time.Millisecond)
	}
}

// unfinishedSends counts sms:send tasks not yet completed or archived.
func unfinishedSends(insp *asynq.Inspector) (int, error) {
	left := 0
	for _, q := range []string{tasks.QueueCritical, tasks.QueueDefault, tasks.QueueBulk} {
		for _, list := range []func(string, ...asynq.ListOption) ([]*asynq.TaskInfo, error){
			insp.ListPendingTasks, insp.ListActiveTasks, insp.ListScheduledTasks, insp.ListRetryTasks,
		} {
			infos, err := list(q, asynq.PageSize(1000))
			if err != nil {
				if errors.Is(err, asynq.ErrQueueNotFound) {
					continue
				}
				return -1, err
			}
			for _, ti := range infos {
				if ti.Type == tasks.TypeSendSMS {
					left++
				}
			}
		}
	}
	return left, nil
}

// With REDIS_WAIT_REPLICAS=1 and no replica, nothing counts as done: enqueue
// exits 1, the HTTP API answers 503, and a task queued without confirmation
// is not sent (its ledger claim is not confirmed), retrying instead.
func TestWaitReplicasUnconfirmedIsAnError(t *testing.T) {
	t.Parallel()
	s := newStack(t, nil, "REDIS_WAIT_REPLICAS=1", "SENDER_RATE=100/s")
	r := runEnqueue(t, append(s.env, "REDIS_WAIT_REPLICAS=1"), "sms", "--to", "+14155550191", "--body", "unconfirmed", "--id", "unconfirmed-1")
	if r.code != 1 || !strings.Contains(r.stderr, "replicas") {
		t.Fatalf("enqueue: exit %d, stderr %q; want 1 naming the replicas", r.code, r.stderr)
	}
	resp, err := http.Post("http://"+s.http+"/v1/actions", "application/json",
		strings.NewReader(`{"action":"sendSMS","arguments":{"to":"+14155550192","body":"unconfirmed"}}`))
	if err != nil {
		t.Fatal(err)
	}
	body, _ := io.ReadAll(resp.Body)
	resp.Body.Close()
	if resp.StatusCode != http.StatusServiceUnavailable || !strings.Contains(string(body), "REDIS_WAIT_REPLICAS") {
		t.Fatalf("POST /v1/actions: %d %s; want 503 naming REDIS_WAIT_REPLICAS", resp.StatusCode, body)
	}
	// The task did reach Redis (only its confirmation failed); the worker
	// must not send it while its own claim cannot be confirmed.
	deadline := time.Now().Add(30 * time.Second)
	for {
		st := runEnqueue(t, s.env, "status", "unconfirmed-1")
		var got status
		st.json(t, &got)
		if strings.Contains(got.LastError, "replicas") {
			break
		}
		if time.Now().After(deadline) {
			t.Fatalf("task %+v: want a retry for the unconfirmed claim", got)
		}
		time.Sleep(100 * time.Millisecond)
	}
	if msgs := simMessages(t, s.simURL); len(msgs) != 0 {
		t.Fatalf("sent %d messages without a confirmed ledger claim", len(msgs))
	}
}
