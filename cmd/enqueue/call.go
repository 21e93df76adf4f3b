package main

import (
	"context"
	"errors"
	"flag"
	"fmt"
	"time"

	"github.com/sbagenthub/twilio-worker/calls"
	"github.com/sbagenthub/twilio-worker/producer"
	"github.com/sbagenthub/twilio-worker/tasks"
	"github.com/sbagenthub/twilio-worker/twilioapi"
	"github.com/sbagenthub/twilio-worker/vapi"
)

func cmdCall(args []string, e env) error {
	fs := newFlags("call", e)
	var c producer.Call
	var sendAt string
	fs.StringVar(&c.To, "to", "", "number to call (required)")
	fs.StringVar(&c.From, "from", "", "caller ID (default: the worker's number)")
	fs.StringVar(&c.URL, "url", "", "TwiML URL, http or https (one of --url, --twiml, --say)")
	fs.StringVar(&c.Twiml, "twiml", "", "inline TwiML: <Response>…</Response>")
	fs.StringVar(&c.Say, "say", "", "text to read aloud")
	fs.BoolVar(&c.Record, "record", false, "record the call (get consent first)")
	fs.StringVar(&c.AssistantID, "assistant", "", "VAPI assistant id: the assistant conducts the call, placed through VAPI (instead of --url, --twiml, --say)")
	fs.BoolVar(&c.Agent, "agent", false, "the default assistant (VAPI_ASSISTANT_ID) conducts the call")
	fs.StringVar(&c.Queue, "queue", tasks.QueueDefault, "critical, default or bulk")
	fs.StringVar(&c.Key, "id", "", "task id; the same id again returns the existing task")
	fs.StringVar(&sendAt, "send-at", "", "call at this RFC 3339 time, at most 35 days ahead")
	if err := parseProducer(fs, args, &c.To, &c.Queue); err != nil {
		return err
	}
	var err error
	if c.SendAt, err = producer.ParseSendAt(sendAt); err != nil {
		return err
	}
	return withProducer(e, func(ctx context.Context, p *producer.Producer) (producer.Result, error) {
		c.Source = tasks.SourceOperator
		return p.MakeCall(ctx, c)
	})
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
// call share: no stray argument, a recipient, a known queue.
func parseProducer(fs *flag.FlagSet, args []string, to, queue *string) error {
	if err := parse(fs, args); err != nil {
		return err
	}
	if fs.NArg() > 0 {
		return badInput("unexpected argument %q (quote text with spaces)", fs.Arg(0))
	}
	if *to == "" {
		return badInput("to: is required (--to)")
	}
	if !tasks.ValidQueue(*queue) {
		return badInput("queue: must be critical, default or bulk")
	}
	if f := fs.Lookup("id"); f != nil && f.Value.String() != "" && !tasks.ValidKey(f.Value.String()) {
		return badInput("id: must be 1-128 letters, digits, '.', '_', ':' or '-'")
	}
	return nil
}
