package main

import (
	"context"
	"errors"
	"fmt"
	"io"
	"os"
	"time"

	"github.com/hibiken/asynq"

	"github.com/sbagenthub/twilio-worker/campaign"
	"github.com/sbagenthub/twilio-worker/httpapi"
	"github.com/sbagenthub/twilio-worker/tasks"
)

// actionMaxBytes bounds an action document (a sendBulkSMS list included).
const actionMaxBytes = 10 << 20

// cmdAction runs one agent hub action read from FILE or stdin, exactly as
// POST /v1/actions would: sendSMS and makeCall queue a task, getCallStatus
// prints the call's state, sendBulkSMS submits a campaign.
func cmdAction(args []string, e env) error {
	fs := newFlags("action", e)
	if err := parse(fs, args); err != nil {
		return err
	}
	if fs.NArg() > 1 {
		return badInput("action takes one FILE (or - for stdin)")
	}
	var in io.Reader = e.stdin
	if name := fs.Arg(0); name != "" && name != "-" {
		f, err := os.Open(name)
		if err != nil {
			return badInput("%v", err)
		}
		defer f.Close()
		in = f
	}
	data, err := io.ReadAll(io.LimitReader(in, actionMaxBytes+1))
	if err != nil {
		return badInput("read the action: %v", err)
	}
	if len(data) > actionMaxBytes {
		return badInput("the action is over %d MiB", actionMaxBytes>>20)
	}
	a, err := httpapi.DecodeAction(data)
	if err != nil {
		return inputError{err}
	}
	r, err := rules(e)
	if err != nil {
		return err
	}
	var opts []asynq.Option
	if a.Priority != "" {
		opts = append(opts, asynq.Queue(a.Priority))
	}
	switch a.Name {
	case httpapi.ActionSendSMS:
		return enqueueSMS(e, a.SMS, r, "", opts)
	case httpapi.ActionMakeCall:
		task, err := tasks.NewMakeCallTask(a.Call, r, opts...)
		if err != nil {
			return err
		}
		norm, _ := a.Call.Normalize(r)
		return enqueueTask(e, task, "", norm.To)
	case httpapi.ActionGetCallStatus:
		return cmdCallStatus([]string{a.CallSID}, e)
	case httpapi.ActionSendBulkSMS:
		dur, err := durability(e)
		if err != nil {
			return err
		}
		rdb, err := redisClient(e)
		if err != nil {
			return err
		}
		defer rdb.Close()
		ctx, cancel := context.WithTimeout(context.Background(), 10*time.Minute)
		defer cancel()
		sum, err := campaign.Submit(ctx, campaign.Deps{Redis: rdb, Durability: dur, Rules: r}, a.Bulk)
		switch {
		case errors.Is(err, campaign.ErrCanceled):
			return inputError{err}
		case err != nil:
			var fe *tasks.FieldError
			if errors.As(err, &fe) {
				return err
			}
			_ = printJSON(e.stdout, sum)
			return fmt.Errorf("campaign %s: %w", a.Bulk.Campaign, err)
		}
		return printJSON(e.stdout, sum)
	}
	return badInput("action: %s is not supported here", a.Name)
}
