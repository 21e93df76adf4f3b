package main

import (
	"context"
	"errors"
	"flag"
	"fmt"
	"time"

	"github.com/hibiken/asynq"
	"github.com/redis/go-redis/v9"

	"github.com/sbagenthub/twilio-worker/calls"
	"github.com/sbagenthub/twilio-worker/tasks"
	"github.com/sbagenthub/twilio-worker/twilioapi"
	"github.com/sbagenthub/twilio-worker/vapi"
)

func cmdCall(args []string, e env) error {
	fs := newFlags("call", e)
	var p tasks.CallPayload
	var queue, id string
	fs.StringVar(&p.To, "to", "", "number to call (required)")
	fs.StringVar(&p.From, "from", "", "caller ID (default: the worker's number)")
	fs.StringVar(&p.URL, "url", "", "TwiML URL, http or https (one of --url, --twiml, --say)")
	fs.StringVar(&p.Twiml, "twiml", "", "inline TwiML: <Response>…</Response>")
	fs.StringVar(&p.Say, "say", "", "text to read aloud")
	fs.BoolVar(&p.Record, "record", false, "record the call (get consent first)")
	fs.StringVar(&p.AssistantID, "assistant", "", "VAPI assistant id: the assistant conducts the call, placed through VAPI (instead of --url, --twiml, --say)")
	fs.BoolVar(&p.Agent, "agent", false, "the default assistant (VAPI_ASSISTANT_ID) conducts the call")
	fs.StringVar(&queue, "queue", tasks.QueueDefault, "critical, default or bulk")
	fs.StringVar(&id, "id", "", "task id; the same id again returns the existing task")
	r, opts, err := parseProducer(fs, args, e, &p.To, &queue, &id)
	if err != nil {
		return err
	}
	task, err := tasks.NewMakeCallTask(p, r, opts...)
	if err != nil {
		return err
	}
	norm, _ := p.Normalize(r)
	return enqueueTask(e, task, id, norm.To)
}

// enqueueTask enqueues task and prints where it went; with an id already
// taken, it prints the existing task instead.
func enqueueTask(e env, task *asynq.Task, id, to string) error {
	return enqueueWith(e, task.Type(), id, to, func(ctx context.Context, _ redis.UniversalClient, c *asynq.Client) (*asynq.TaskInfo, error) {
		return c.EnqueueContext(ctx, task)
	})
}

// enqueueWith runs submit and prints the task it queued. asynq's ids are
// unique per queue only, so a given id is first looked up in every queue:
// the same --id with another --queue still names the one task.
func enqueueWith(e env, taskType, id, to string, submit func(context.Context, redis.UniversalClient, *asynq.Client) (*asynq.TaskInfo, error)) error {
	dur, err := durability(e)
	if err != nil {
		return err
	}
	rdb, err := redisClient(e)
	if err != nil {
		return err
	}
	defer rdb.Close()
	ctx, cancel := context.WithTimeout(context.Background(), 10*time.Second)
	defer cancel()
	existing := func() error {
		info, err := tasks.Find(asynq.NewInspectorFromRedisClient(rdb), id)
		if err != nil {
			return err
		}
		if err := dur.ConfirmTask(ctx, rdb, info.Queue, info.ID); err != nil {
			return fmt.Errorf("enqueue: %w", err)
		}
		return printJSON(e.stdout, enqueued{TaskID: info.ID, Queue: info.Queue, To: to, Existing: true})
	}
	if id != "" {
		if err := existing(); !errors.Is(err, tasks.ErrTaskNotFound) {
			return err
		}
	}
	info, err := submit(ctx, rdb, asynq.NewClientFromRedisClient(rdb))
	if errors.Is(err, asynq.ErrTaskIDConflict) {
		if err := existing(); err != nil {
			return fmt.Errorf("task %q exists but could not be read: %w", id, err)
		}
		return nil
	}
	if err != nil {
		return fmt.Errorf("enqueue: %w", err)
	}
	if err := dur.ConfirmTask(ctx, rdb, info.Queue, info.ID); err != nil {
		return fmt.Errorf("enqueue: %w", err)
	}
	channel := "voice"
	if taskType == tasks.TypeSendSMS {
		channel = "sms"
	}
	logQueued(ctx, e, rdb, info, to, channel)
	return printJSON(e.stdout, enqueued{TaskID: info.ID, Queue: info.Queue, To: to})
}

// cmdCallStatus prints a call's state from its record; with Twilio
// credentials in the environment it asks Twilio when the record is missing
// or the call has not ended.
func cmdCallStatus(args []string, e env) error {
	fs := newFlags("call-status", e)
	if err := parse(fs, args); err != nil {
		return err
	}
	if fs.NArg() != 1 {
		return badInput("call-status takes one CALL_SID")
	}
	if _, err := calls.CheckID(fs.Arg(0)); err != nil {
		return inputError{fmt.Errorf("CALL_SID: %w", err)}
	}
	rdb, err := redisClient(e)
	if err != nil {
		return err
	}
	defer rdb.Close()
	var fetcher tasks.CallFetcher
	if twCfg, err := twilioapi.ConfigFromEnv(e.getenv); err == nil && twCfg.HasCredentials() {
		if c, err := twilioapi.New(twCfg); err == nil {
			fetcher = c
		}
	}
	ctx, cancel := context.WithTimeout(context.Background(), 20*time.Second)
	defer cancel()
	store := calls.NewStore(rdb)
	var st tasks.CallState
	if calls.KindOf(fs.Arg(0)) == calls.KindVAPI {
		// A call an assistant conducts: VAPI is asked when VAPI_API_KEY is set.
		var agents tasks.AgentCaller
		if key := e.getenv("VAPI_API_KEY"); key != "" {
			agents = &vapi.Client{BaseURL: e.getenv("VAPI_API_URL"), APIKey: twilioapi.Secret(key)}
		}
		st, err = tasks.LookupAgentCall(ctx, store, agents, fs.Arg(0))
	} else {
		st, err = tasks.LookupCall(ctx, store, fetcher, fs.Arg(0))
	}
	if errors.Is(err, calls.ErrNotFound) || twilioapi.ClassOf(err) == twilioapi.ClassNotFound {
		return inputError{fmt.Errorf("call %s: no record (and Twilio has none)", fs.Arg(0))}
	}
	if err != nil {
		return err
	}
	rec, _ := store.Get(ctx, fs.Arg(0))
	out := struct {
		tasks.CallState
		History []calls.Change `json:"history,omitempty"`
		Polls   int            `json:"polls,omitempty"`
	}{CallState: st}
	if rec != nil {
		out.History, out.Polls = rec.History, rec.Polls
	}
	return printJSON(e.stdout, out)
}

// parseProducer parses a producing command's flags and checks what sms and
// call share: no stray argument, a recipient, a known queue. It returns the
// rules and the task options (queue, and id when given).
func parseProducer(fs *flag.FlagSet, args []string, e env, to, queue, id *string) (tasks.Rules, []asynq.Option, error) {
	if err := parse(fs, args); err != nil {
		return tasks.Rules{}, nil, err
	}
	if fs.NArg() > 0 {
		return tasks.Rules{}, nil, badInput("unexpected argument %q (quote text with spaces)", fs.Arg(0))
	}
	if *to == "" {
		return tasks.Rules{}, nil, badInput("to: is required (--to)")
	}
	if !tasks.ValidQueue(*queue) {
		return tasks.Rules{}, nil, badInput("queue: must be critical, default or bulk")
	}
	r, err := rules(e)
	if err != nil {
		return r, nil, err
	}
	opts := []asynq.Option{asynq.Queue(*queue)}
	if *id != "" {
		opts = append(opts, asynq.TaskID(*id))
	}
	return r, opts, nil
}
