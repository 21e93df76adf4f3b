package campaign_test

import (
	"encoding/json"
	"fmt"
	"strings"
	"testing"

	"github.com/hibiken/asynq"

	"github.com/sbagenthub/twilio-worker/campaign"
	"github.com/sbagenthub/twilio-worker/tasks"
)

// The first row of a repeated number wins, always: its task carries the
// first row's personalised body however the batches race to Redis. (Issue
// 15, defect 2: "Hi Dup12" in one run, "Hi Ann12" in the next.) Each
// first/duplicate pair is split across two batches that run concurrently.
func TestSubmitFirstRowOfARepeatedNumberWins(t *testing.T) {
	t.Parallel()
	rdb := newRedis(t)
	const pairs = 60
	var b strings.Builder
	b.WriteString("phone,name\n")
	for i := range pairs {
		fmt.Fprintf(&b, "+1415556%04d,Ann%d\n", i, i)
		fmt.Fprintf(&b, "+1 (415) 556-%04d,Dup%d\n", i, i)
	}
	d := campaign.Deps{Redis: rdb, Workers: 16, Batch: 1}
	sum := submitFile(t, d, campaign.Request{Campaign: "order", Body: "Hi {{name}}"}, b.String())
	checkSummary(t, sum, 2*pairs, pairs, 0, pairs, 0, 0)
	insp := asynq.NewInspectorFromRedisClient(rdb)
	wrong := 0
	for i := range pairs {
		number := fmt.Sprintf("+1415556%04d", i)
		info, err := insp.GetTaskInfo(tasks.QueueBulk, campaign.TaskID("order", number))
		if err != nil {
			t.Fatalf("%s: %v", number, err)
		}
		var p tasks.SMSPayload
		if err := json.Unmarshal(info.Payload, &p); err != nil {
			t.Fatal(err)
		}
		if p.Body != fmt.Sprintf("Hi Ann%d", i) {
			wrong++
			t.Errorf("%s got %q, want the first row's body", number, p.Body)
		}
	}
	if wrong > 0 {
		t.Fatalf("%d of %d repeated numbers took a later row", wrong, pairs)
	}
}
