package main

import (
	"context"
	"errors"
	"fmt"
	"os"
	"os/signal"

	"github.com/hibiken/asynq"

	"github.com/sbagenthub/twilio-worker/campaign"
	"github.com/sbagenthub/twilio-worker/producer"
	"github.com/sbagenthub/twilio-worker/tasks"
)

// cmdBulk queues one message per recipient of a file (or stdin): enqueue
// bulk --campaign ID --body TEXT [FILE|-]. It prints the campaign.Summary;
// progress goes to stderr every second.
func cmdBulk(args []string, e env) error {
	fs := newFlags("bulk", e)
	var req campaign.Request
	var workers int
	fs.StringVar(&req.Campaign, "campaign", "", "campaign id: 1-64 letters, digits, '.', '_' or '-' (required); task ids are ID:+E164")
	fs.StringVar(&req.Body, "body", "", "message text; with a CSV list, {{column}} is replaced by the row's value (required)")
	fs.StringVar(&req.From, "from", "", "sender number or alphanumeric ID (default: the worker's)")
	fs.StringVar(&req.Class, "class", "", "transactional (default), alert or marketing")
	fs.IntVar(&workers, "workers", campaign.WorkersDefault, "batches enqueued at once")
	if err := parse(fs, args); err != nil {
		return err
	}
	if fs.NArg() > 1 {
		return badInput("bulk takes one FILE (or - for stdin); got %d arguments", fs.NArg())
	}
	if req.Body == "" {
		return badInput("body: is required (--body)")
	}
	in := e.stdin
	if name := fs.Arg(0); name != "" && name != "-" {
		f, err := os.Open(name)
		if err != nil {
			return badInput("file: %v", err)
		}
		defer f.Close()
		in = f
	}
	r, err := rules(e)
	if err != nil {
		return err
	}
	rdb, err := redisClient(e)
	if err != nil {
		return err
	}
	defer rdb.Close()
	ctx, stop := signal.NotifyContext(context.Background(), os.Interrupt)
	defer stop()
	prod, err := newProducer(ctx, e, rdb, r)
	if err != nil {
		return err
	}
	o := &producer.CampaignOptions{Workers: workers, Progress: func(p campaign.Progress) {
		fmt.Fprintf(e.stderr, "bulk %s: read %d, enqueued %d, already queued %d, duplicates %d, invalid %d, opted out %d\n",
			req.Campaign, p.Read, p.Enqueued, p.AlreadyQueued, p.Duplicates, p.Invalid, p.OptedOut)
	}}
	req.Source = tasks.SourceOperator // an operator's campaign: not metered as agent traffic
	sum, err := prod.SubmitCampaignFile(ctx, req, in, o)
	switch {
	case err == nil:
		return printJSON(e.stdout, sum)
	case isInput(err):
		return err
	case errors.Is(err, campaign.ErrCanceled):
		return inputError{err}
	default:
		// What was queued stays queued; running the command again finishes the job.
		_ = printJSON(e.stdout, sum)
		return fmt.Errorf("bulk %s stopped after %d lines (run it again to finish): %w", req.Campaign, sum.Total, err)
	}
}

// cmdCampaign reports on and cancels campaigns: enqueue campaign status|cancel ID.
func cmdCampaign(args []string, e env) error {
	if len(args) != 2 || (args[0] != "status" && args[0] != "cancel") {
		return badInput("usage: enqueue campaign status|cancel ID")
	}
	id := args[1]
	if !campaign.ValidID(id) {
		return badInput("campaign: must be 1-64 letters, digits, '.', '_' or '-'")
	}
	rdb, err := redisClient(e)
	if err != nil {
		return err
	}
	defer rdb.Close()
	store := campaign.NewStore(rdb)
	ctx := context.Background()
	var out any
	if args[0] == "status" {
		out, err = store.Status(ctx, id)
	} else {
		out, err = store.Cancel(ctx, asynq.NewInspectorFromRedisClient(rdb), id)
	}
	if errors.Is(err, campaign.ErrNotFound) {
		return inputError{err}
	}
	if err != nil {
		return err
	}
	return printJSON(e.stdout, out)
}
