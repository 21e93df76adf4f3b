// Command enqueue puts tasks for the worker into Redis and reports on them.
// It prints JSON on stdout; exit status 0 means done, 2 bad input (the field
// is named on stderr), 1 an infrastructure failure such as Redis being down.
package main

import (
	"context"
	"encoding/json"
	"errors"
	"flag"
	"fmt"
	"io"
	"os"
	"strconv"
	"strings"
	"time"

	"github.com/hibiken/asynq"
	"github.com/redis/go-redis/v9"

	"github.com/sbagenthub/twilio-worker/internal/redisconn"
	"github.com/sbagenthub/twilio-worker/optout"
	"github.com/sbagenthub/twilio-worker/tasks"
)

const usage = `enqueue: put SMS and call tasks for twilio-worker into Redis, and look at them.

Usage:
  enqueue sms --to NUMBER --body TEXT [--from NUMBER] [--queue critical|default|bulk]
              [--id KEY] [--valid-for 10m] [--class transactional|alert|marketing]
  enqueue call --to NUMBER (--url URL | --twiml XML | --say TEXT) [--from NUMBER] [--record] [--id KEY]
  enqueue action [FILE|-]     the agent hub's action JSON: sendSMS, makeCall, getCallStatus, sendBulkSMS
  enqueue status TASK_ID
  enqueue call-status CALL_SID
  enqueue log [--to NUMBER] [--task ID] [--since 1h] [--follow] [--unmask]
  enqueue optout add|remove|check|history|list|import|imports [--channel sms|voice|all] …
  enqueue consent add|remove|check|history|list|import|imports [--channel sms|voice|all] …
  enqueue bulk --campaign ID --body TEXT [--from NUMBER] [--class C] [FILE|-]
              recipients one per line, or CSV with a phone (or to) column whose
              other columns fill {{column}} in the body; safe to run again
  enqueue campaign status|cancel ID
  enqueue pool status         the sender pool: numbers, rates, next free slots, out of rotation and why
  enqueue pool restore NUMBER put a pool number back in rotation

Examples:
  enqueue sms --to "+1 (415) 555-1234" --body "Your code is 123456" --queue critical --valid-for 10m
  enqueue sms --to +14155551234 --body "Order 42 shipped" --id order-42-shipped   # safe to repeat
  enqueue status order-42-shipped
  enqueue call --to +14155551234 --say "Service api is down. Incident 123."
  enqueue call-status CA0123456789abcdef0123456789abcdef
  enqueue bulk --campaign incident-42 --body "Hi {{name}}, the API is down." customers.csv
  enqueue campaign status incident-42

Environment:
  REDIS_URL       Redis the worker uses (default redis://127.0.0.1:6379/0; also rediss://,
                  redis-sentinel://h:p,…?master=M, redis-cluster://h:p,…, rediss-cluster://)
  REDIS_WAIT_REPLICAS  replicas that must confirm a task before it is printed (default 0);
                  unconfirmed: exit 1, retry with the same --id
  MAX_SEGMENTS    longest body in SMS segments (default 10)
  DEFAULT_REGION  region for national numbers such as (415) 555-1234, e.g. US (default: refuse them)
  RESULT_TTL      how long a task's result is kept (default 24h)

Output is JSON on stdout. Exit status: 0 ok, 2 bad input (the field is named on
stderr, nothing is queued), 1 infrastructure failure (Redis unreachable, …).
`

// exit codes
const (
	exitOK    = 0
	exitInfra = 1
	exitInput = 2
)

// inputError is bad input: exit 2.
type inputError struct{ err error }

func (e inputError) Error() string { return e.err.Error() }
func (e inputError) Unwrap() error { return e.err }

func badInput(format string, args ...any) error { return inputError{fmt.Errorf(format, args...)} }

type env struct {
	getenv func(string) string
	stdout io.Writer
	stderr io.Writer
	stdin  io.Reader
}

func main() {
	os.Exit(run(os.Args[1:], env{os.Getenv, os.Stdout, os.Stderr, os.Stdin}))
}

func run(args []string, e env) int {
	if len(args) == 0 || args[0] == "-h" || args[0] == "--help" || args[0] == "help" {
		fmt.Fprint(e.stderr, usage)
		if len(args) == 0 {
			return exitInput
		}
		return exitOK
	}
	var err error
	switch args[0] {
	case "sms":
		err = cmdSMS(args[1:], e)
	case "status":
		err = cmdStatus(args[1:], e)
	case "call":
		err = cmdCall(args[1:], e)
	case "call-status":
		err = cmdCallStatus(args[1:], e)
	case "log":
		err = cmdLog(args[1:], e)
	case "action":
		err = cmdAction(args[1:], e)
	case "optout", "consent": // optout.go
		err = cmdList(optout.Kind(args[0]), args[1:], e)
	case "bulk": // bulk.go
		err = cmdBulk(args[1:], e)
	case "campaign":
		err = cmdCampaign(args[1:], e)
	case "pool": // pool.go
		err = cmdPool(args[1:], e)
	default:
		err = badInput("unknown command %q; run enqueue --help", args[0])
	}
	switch {
	case err == nil:
		return exitOK
	case errors.Is(err, flag.ErrHelp):
		return exitOK
	case isInput(err):
		fmt.Fprintf(e.stderr, "enqueue: %v\n", err)
		return exitInput
	default:
		fmt.Fprintf(e.stderr, "enqueue: %v\n", err)
		return exitInfra
	}
}

func isInput(err error) bool {
	var ie inputError
	var fe *tasks.FieldError
	return errors.As(err, &ie) || errors.As(err, &fe)
}

func newFlags(name string, e env) *flag.FlagSet {
	fs := flag.NewFlagSet("enqueue "+name, flag.ContinueOnError)
	fs.SetOutput(e.stderr)
	return fs
}

// parse parses flags; a flag error is bad input.
func parse(fs *flag.FlagSet, args []string) error {
	if err := fs.Parse(args); err != nil {
		if errors.Is(err, flag.ErrHelp) {
			return err
		}
		return inputError{err}
	}
	return nil
}

func rules(e env) (tasks.Rules, error) {
	r := tasks.Rules{DefaultRegion: strings.ToUpper(strings.TrimSpace(e.getenv("DEFAULT_REGION"))),
		AssistantID: strings.TrimSpace(e.getenv("VAPI_ASSISTANT_ID"))}
	if v := strings.TrimSpace(e.getenv("MAX_SEGMENTS")); v != "" {
		n, err := strconv.Atoi(v)
		if err != nil || n < 1 || n > 100 {
			return r, badInput("MAX_SEGMENTS: must be a whole number from 1 to 100")
		}
		r.MaxSegments = n
	}
	if v := strings.TrimSpace(e.getenv("RESULT_TTL")); v != "" {
		d, err := time.ParseDuration(v)
		if err != nil || d <= 0 {
			return r, badInput("RESULT_TTL: must be a positive duration such as 24h")
		}
		r.ResultTTL = d
	}
	return r.WithDefaults(), nil
}

// redisClient connects to REDIS_URL and checks the deployment is what the
// URL says: a mismatch is bad input (exit 2), no answer an infrastructure
// failure (exit 1).
func redisClient(e env) (redis.UniversalClient, error) {
	u := strings.TrimSpace(e.getenv("REDIS_URL"))
	if u == "" {
		u = "redis://127.0.0.1:6379/0"
	}
	c, err := redisconn.Parse(u)
	if err != nil {
		return nil, badInput("REDIS_URL: %v", err)
	}
	rdb := c.Client()
	ctx, cancel := context.WithTimeout(context.Background(), 10*time.Second)
	defer cancel()
	if err := redisconn.Check(ctx, c, rdb); err != nil {
		rdb.Close()
		if errors.Is(err, redisconn.ErrUnreachable) {
			return nil, fmt.Errorf("REDIS_URL %s: %w", c.Redacted(), err)
		}
		return nil, badInput("REDIS_URL %s: %v", c.Redacted(), err)
	}
	return rdb, nil
}

// durability reads REDIS_WAIT_REPLICAS: how many replicas must confirm an
// enqueue before it is printed.
func durability(e env) (redisconn.Durability, error) {
	v := strings.TrimSpace(e.getenv("REDIS_WAIT_REPLICAS"))
	if v == "" {
		return redisconn.Durability{}, nil
	}
	n, err := strconv.Atoi(v)
	if err != nil || n < 0 || n > 100 {
		return redisconn.Durability{}, badInput("REDIS_WAIT_REPLICAS: must be a whole number from 0 to 100")
	}
	return redisconn.Durability{Replicas: n}, nil
}

func printJSON(w io.Writer, v any) error {
	enc := json.NewEncoder(w)
	enc.SetEscapeHTML(false)
	return enc.Encode(v)
}

type enqueued struct {
	TaskID   string `json:"taskId"`
	Queue    string `json:"queue"`
	To       string `json:"to,omitempty"`
	Existing bool   `json:"existing,omitempty"` // --id named a task that was already queued
}

func cmdSMS(args []string, e env) error {
	fs := newFlags("sms", e)
	var p tasks.SMSPayload
	var queue, id string
	fs.StringVar(&p.To, "to", "", "recipient, E.164 or +CC with spaces/dashes/parentheses (required)")
	fs.StringVar(&p.Body, "body", "", "message text (required)")
	fs.StringVar(&p.From, "from", "", "sender number or alphanumeric ID (default: the worker's)")
	fs.StringVar(&queue, "queue", tasks.QueueDefault, "critical (2FA codes, alerts), default or bulk")
	fs.StringVar(&id, "id", "", "task id; enqueueing the same id again returns the existing task")
	fs.StringVar(&p.ValidFor, "valid-for", "", "drop the message if not sent within this long, e.g. 10m")
	fs.StringVar(&p.Class, "class", "", "transactional (default), alert or marketing")
	r, opts, err := parseProducer(fs, args, e, &p.To, &queue, &id)
	if err != nil {
		return err
	}
	return enqueueSMS(e, p, r, id, opts)
}

// enqueueSMS validates p and queues it through tasks.EnqueueSMS (booking its
// send slot when the workers published their limits), printing the task.
func enqueueSMS(e env, p tasks.SMSPayload, r tasks.Rules, id string, opts []asynq.Option) error {
	task, err := tasks.NewSendSMSTask(p, r, opts...)
	if err != nil {
		return err
	}
	var norm tasks.SMSPayload
	_ = json.Unmarshal(task.Payload(), &norm)
	return enqueueWith(e, task.Type(), id, norm.To, func(ctx context.Context, rdb redis.UniversalClient, c *asynq.Client) (*asynq.TaskInfo, error) {
		b, err := booker(ctx, rdb)
		if err != nil {
			return nil, err
		}
		return tasks.EnqueueSMS(ctx, c, b, p, r, opts...)
	})
}

func cmdStatus(args []string, e env) error {
	fs := newFlags("status", e)
	if err := parse(fs, args); err != nil {
		return err
	}
	if fs.NArg() != 1 {
		return badInput("status takes one TASK_ID")
	}
	rdb, err := redisClient(e)
	if err != nil {
		return err
	}
	defer rdb.Close()
	info, err := tasks.Find(asynq.NewInspectorFromRedisClient(rdb), fs.Arg(0))
	if errors.Is(err, tasks.ErrTaskNotFound) {
		return inputError{err}
	}
	if err != nil {
		return err
	}
	return printJSON(e.stdout, tasks.StatusOf(info))
}
