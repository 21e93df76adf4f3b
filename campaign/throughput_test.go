package campaign_test

import (
	"fmt"
	"io"
	"os"
	"strconv"
	"sync"
	"sync/atomic"
	"testing"
	"time"

	"github.com/hibiken/asynq"

	"github.com/sbagenthub/twilio-worker/campaign"
	"github.com/sbagenthub/twilio-worker/tasks"
)

// TestSubmitThroughput measures how long SubmitFile takes to queue
// CAMPAIGN_BENCH recipients (e.g. 100000) on a private redis-server, and
// compares it with bare asynq enqueueing as many tasks from 16 goroutines.
// It is skipped unless CAMPAIGN_BENCH is set:
//
//	CAMPAIGN_BENCH=100000 go test -run Throughput -v ./campaign/
func TestSubmitThroughput(t *testing.T) {
	n, _ := strconv.Atoi(os.Getenv("CAMPAIGN_BENCH"))
	if n <= 0 {
		t.Skip("set CAMPAIGN_BENCH=100000 to measure")
	}
	// Each on its own redis-server, bare asynq first.
	// Bare asynq: the same number of sms:send tasks from 16 goroutines.
	client := asynq.NewClientFromRedisClient(newRedis(t))
	var next atomic.Int64
	var wg sync.WaitGroup
	start := time.Now()
	for range 16 {
		wg.Add(1)
		go func() {
			defer wg.Done()
			for {
				i := next.Add(1)
				if i > int64(n) {
					return
				}
				to := fmt.Sprintf("+1415%07d", 2000000+i)
				task, err := tasks.NewSendSMSTask(tasks.SMSPayload{To: to, Body: "Incident 42: service degraded, we are on it.", Campaign: "bare"},
					tasks.Rules{}, asynq.Queue(tasks.QueueBulk), asynq.TaskID("bare:"+to))
				if err == nil {
					_, err = client.EnqueueContext(bg, task)
				}
				if err != nil {
					t.Error(err)
					return
				}
			}
		}()
	}
	wg.Wait()
	bare := time.Since(start)
	bareRate := float64(n) / bare.Seconds()

	// The recipient list streams from a pipe: nothing holds it in memory.
	pr, pw := io.Pipe()
	go func() {
		for i := range n {
			fmt.Fprintf(pw, "+1415%07d\n", 2000000+i)
		}
		pw.Close()
	}()
	d := campaign.Deps{Redis: newRedis(t), Workers: campaign.WorkersDefault}
	d.Batch, _ = strconv.Atoi(os.Getenv("CAMPAIGN_BATCH"))
	if w, _ := strconv.Atoi(os.Getenv("CAMPAIGN_WORKERS")); w > 0 {
		d.Workers = w
	}
	start = time.Now()
	sum, err := campaign.SubmitFile(bg, d, campaign.Request{Campaign: "bench", Body: "Incident 42: service degraded, we are on it."}, pr)
	took := time.Since(start)
	if err != nil {
		t.Fatal(err)
	}
	if sum.Enqueued != int64(n) {
		t.Fatalf("summary %+v", sum)
	}
	rate := float64(n) / took.Seconds()
	t.Logf("campaign.SubmitFile: %d recipients in %v (%.0f/s), %d workers", n, took.Round(time.Millisecond), rate, d.Workers)
	t.Logf("bare asynq, 16 goroutines: %d tasks in %v (%.0f/s); campaign/bare = %.2f", n, bare.Round(time.Millisecond), bareRate, rate/bareRate)
}
