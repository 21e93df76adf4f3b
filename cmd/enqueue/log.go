package main

import (
	"context"
	"errors"
	"os/signal"
	"strings"
	"syscall"
	"time"

	"github.com/hibiken/asynq"
	"github.com/redis/go-redis/v9"

	"github.com/sbagenthub/twilio-worker/commlog"
	"github.com/sbagenthub/twilio-worker/internal/redact"
	"github.com/sbagenthub/twilio-worker/phone"
	"github.com/sbagenthub/twilio-worker/tasks"
)

// commLog is the communications log with LOG_RETENTION and LOG_BODIES as
// the worker reads them.
func commLog(e env, rdb redis.UniversalClient) *commlog.Log {
	cfg := commlog.Config{}
	if d, err := time.ParseDuration(strings.TrimSpace(e.getenv("LOG_RETENTION"))); err == nil && d > 0 {
		cfg.Retention = d
	}
	cfg.KeepBodies, _ = commlog.ParseBodies(e.getenv("LOG_BODIES"))
	return commlog.New(rdb, cfg)
}

// logQueued records a task the command queued. A log failure is reported
// on stderr but the task stays queued.
func logQueued(ctx context.Context, e env, rdb redis.UniversalClient, info *asynq.TaskInfo, to, channel string) {
	entry := commlog.Entry{Event: commlog.Queued, Channel: channel, TaskID: info.ID, To: to, Reason: "queue " + info.Queue}
	if err := commLog(e, rdb).Append(ctx, entry); err != nil {
		e.stderr.Write([]byte("enqueue: communications log: " + err.Error() + "\n"))
	}
}

// cmdLog prints the communications log as JSON lines, oldest first, with
// numbers masked (in task ids too: campaign tasks are {campaign}:{E.164})
// and kept bodies redacted, unless --unmask.
func cmdLog(args []string, e env) error {
	fs := newFlags("log", e)
	to := fs.String("to", "", "only this recipient")
	task := fs.String("task", "", "only this task id")
	since := fs.Duration("since", 0, "only entries of the last D, e.g. 1h (default: all kept)")
	follow := fs.Bool("follow", false, "keep printing new entries until interrupted")
	unmask := fs.Bool("unmask", false, "print full phone numbers, task ids and kept bodies")
	if err := parse(fs, args); err != nil {
		return err
	}
	if fs.NArg() > 0 {
		return badInput("unexpected argument %q", fs.Arg(0))
	}
	var f commlog.Filter
	if *to != "" {
		n, err := tasks.ParseNumber("to", *to, strings.ToUpper(strings.TrimSpace(e.getenv("DEFAULT_REGION"))))
		if err != nil {
			return err
		}
		f.To = n.String()
	}
	f.TaskID = *task
	if *since < 0 {
		return badInput("since: must be a positive duration such as 1h")
	}
	if *since > 0 {
		f.Since = time.Now().Add(-*since)
	}
	rdb, err := redisClient(e)
	if err != nil {
		return err
	}
	defer rdb.Close()
	l := commLog(e, rdb)
	print := func(en commlog.Entry) error {
		if !*unmask {
			en = maskEntry(en)
		}
		return printJSON(e.stdout, en)
	}
	ctx, stop := signal.NotifyContext(context.Background(), syscall.SIGINT, syscall.SIGTERM)
	defer stop()
	last, err := l.Read(ctx, f, print)
	if err != nil || !*follow {
		return err
	}
	if err := l.Follow(ctx, f, last, print); err != nil && !errors.Is(err, context.Canceled) {
		return err
	}
	return nil
}

// maskEntry hides what is personal in a log entry.
func maskEntry(en commlog.Entry) commlog.Entry {
	en.To, en.From = maskNumber(en.To), maskNumber(en.From)
	en.TaskID = phone.MaskText(en.TaskID)
	en.Reason = redact.Text(en.Reason)
	if en.Body != "" && !strings.HasPrefix(en.Body, "[redacted") {
		en.Body = redact.Body(en.Body)
	}
	return en
}

func maskNumber(n string) string {
	if n == "" {
		return ""
	}
	return phone.Number(n).Masked()
}
