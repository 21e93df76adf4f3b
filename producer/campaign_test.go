package producer_test

import (
	"context"
	"errors"
	"sync"
	"testing"

	"github.com/hibiken/asynq"

	"github.com/sbagenthub/twilio-worker/campaign"
	"github.com/sbagenthub/twilio-worker/tasks"
)

// A campaign goes through the producer's checks as sendSMS does: each
// recipient is validated and normalised, the Guard (the fraud guard's
// CheckEnqueue) sees each with the submission's source and may refuse it,
// and a bad request is a field error before anything is queued.
func TestCampaignGoesThroughTheProducersChecks(t *testing.T) {
	t.Parallel()
	p, rdb := newProducer(t)
	var mu sync.Mutex
	seen := map[string]string{}
	p.Guard = func(_ context.Context, to, source string) error {
		mu.Lock()
		defer mu.Unlock()
		seen[to] = source
		if to == "+14155550199" {
			return errors.New("prefix +1415555019 is blocked")
		}
		return nil
	}
	a, err := p.Decode([]byte(`{"action":"sendBulkSMS","arguments":{"campaign":"spring-1","body":"Spring sale",` +
		`"recipients":["+1 415 555 0190","+14155550199","not a number"]}}`))
	if err != nil {
		t.Fatal(err)
	}
	out, err := p.Do(bg, a)
	sum, _ := out.(campaign.Summary)
	if err != nil || sum.Enqueued != 1 || sum.InvalidCount != 2 {
		t.Fatalf("summary %+v %v; want 1 queued, the blocked and the malformed invalid", out, err)
	}
	if seen["+14155550190"] != tasks.SourceAgent || seen["+14155550199"] != tasks.SourceAgent || len(seen) != 2 {
		t.Fatalf("the guard saw %v; want both valid numbers, normalised, as agent traffic", seen)
	}
	pending, err := asynq.NewInspectorFromRedisClient(rdb).ListPendingTasks(tasks.QueueBulk)
	if err != nil || len(pending) != 1 || pending[0].ID != campaign.TaskID("spring-1", "+14155550190") {
		t.Fatalf("bulk queue %v %v", pending, err)
	}
	var fe *tasks.FieldError
	if _, err := p.SubmitCampaign(bg, campaign.Request{Campaign: "spring-2", Body: "", Recipients: []string{"+14155550191"}}, nil); !errors.As(err, &fe) || fe.Field != "body" {
		t.Fatalf("empty body: %v; want a field error naming body", err)
	}
	if _, err := p.SubmitCampaign(bg, campaign.Request{Campaign: "bad id!", Body: "x", Recipients: []string{"+14155550191"}}, nil); !errors.As(err, &fe) || fe.Field != "campaign" {
		t.Fatalf("bad campaign id: %v; want a field error naming campaign", err)
	}
}
