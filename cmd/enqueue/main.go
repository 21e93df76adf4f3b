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

	"github.com/sbagenthub/twilio-worker/calls"
	"github.com/sbagenthub/twilio-worker/internal/redisconn"
	"github.com/sbagenthub/twilio-worker/optout"
	"github.com/sbagenthub/twilio-worker/producer"
	"github.com/sbagenthub/twilio-worker/tasks"
	"github.com/sbagenthub/twilio-worker/twilioapi"
)

const usage = `enqueue: put SMS and call tasks for twilio-worker into Redis, and look at them.

Usage:
  enqueue sms --to NUMBER --body TEXT [--from NUMBER] [--queue critical|default|bulk]
              [--id KEY] [--valid-for 10m] [--class transactional|alert|marketing] [--send-at TIME]
  enqueue call --to NUMBER (--url URL | --twiml XML | --say TEXT) [--from NUMBER] [--record] [--id KEY] [--send-at TIME]
  enqueue cancel TASK_ID      cancel a task that has not started (a --send-at still ahead), or its
                              message Twilio holds as scheduled (needs TWILIO_ACCOUNT_SID and TWILIO_AUTH_TOKEN)
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
  enqueue fraud list | unblock PREFIX | safe add|remove|list [NUMBER_OR_PREFIX]
              the fraud guard's blocked prefixes (until when, why) and its safe list
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
  ALLOWED_COUNTRIES, BLOCKED_COUNTRIES, ALLOW_NUMBER_TYPES
                  the fraud guard's refusals at enqueue, as the worker reads them

Output is JSON on stdout. Exit status: 0 ok, 2 bad input (the field is named on
stderr, nothing is queued; also an --id already used for another task), 1
infrastructure failure (Redis unreachable, …).
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
	case "cancel":
		err = cmdCancel(args[1:], e)
	case "fraud": // fraud.go
		err = cmdFraud(args[1:], e)
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
	var ae *producer.ActionError
	return errors.As(err, &ie) || errors.As(err, &fe) || errors.As(err, &ae) ||
		errors.Is(err, producer.ErrConflict) || errors.Is(err, producer.ErrStarted) || errors.Is(err, tasks.ErrTaskNotFound)
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
	State    string `json:"state,omitempty"`
	RunAt    string `json:"runAt,omitempty"`    // a scheduled task: when it runs
	Existing bool   `json:"existing,omitempty"` // --id named a task that was already queued
}

func cmdSMS(args []string, e env) error {
	fs := newFlags("sms", e)
	var m producer.SMS
	var sendAt string
	fs.StringVar(&m.To, "to", "", "recipient, E.164 or +CC with spaces/dashes/parentheses (required)")
	fs.StringVar(&m.Body, "body", "", "message text (required)")
	fs.StringVar(&m.From, "from", "", "sender number or alphanumeric ID (default: the worker's)")
	fs.StringVar(&m.Queue, "queue", tasks.QueueDefault, "critical (2FA codes, alerts), default or bulk")
	fs.StringVar(&m.Key, "id", "", "task id (1-128 of A-Z a-z 0-9 . _ : -); the same id again returns the existing task")
	fs.StringVar(&m.ValidFor, "valid-for", "", "drop the message if not sent within this long, e.g. 10m (from --send-at when given)")
	fs.StringVar(&m.Class, "class", "", "transactional (default), alert or marketing")
	fs.StringVar(&sendAt, "send-at", "", "send at this RFC 3339 time, at most 35 days ahead, e.g. 2026-12-24T09:00:00Z")
	if err := parseProducer(fs, args, &m.To, &m.Queue); err != nil {
		return err
	}
	var err error
	if m.SendAt, err = producer.ParseSendAt(sendAt); err != nil {
		return err
	}
	return withProducer(e, func(ctx context.Context, p *producer.Producer) (producer.Result, error) {
		m.Source = tasks.SourceOperator
		return p.SendSMS(ctx, m)
	})
}

// withProducer runs submit on a producer on REDIS_URL and prints the task.
func withProducer(e env, submit func(context.Context, *producer.Producer) (producer.Result, error)) error {
	r, err := rules(e)
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
	p, err := newProducer(ctx, e, rdb, r)
	if err != nil {
		return err
	}
	res, err := submit(ctx, p)
	if err != nil {
		return err
	}
	out := enqueued{TaskID: res.TaskID, Queue: res.Queue, To: res.To, State: res.State, Existing: res.Existing}
	if !res.RunAt.IsZero() {
		out.RunAt = res.RunAt.UTC().Format(time.RFC3339)
	}
	return printJSON(e.stdout, out)
}

// newProducer is the producer the command queues through: the limits the
// workers published (to book each message's slot), the communications log.
func newProducer(ctx context.Context, e env, rdb redis.UniversalClient, r tasks.Rules) (*producer.Producer, error) {
	dur, err := durability(e)
	if err != nil {
		return nil, err
	}
	g, err := guard(e, rdb)
	if err != nil {
		return nil, err
	}
	p := &producer.Producer{Redis: rdb, Rules: r, Comms: commLog(e, rdb), Source: "cli", Calls: calls.NewStore(rdb), Durability: dur,
		Guard: g.CheckEnqueue, GuardNumber: g.CheckNumber}
	l, b, err := limits(ctx, rdb)
	if err != nil {
		return nil, err
	}
	if l != nil {
		p.Booker, p.Releaser = b, l
	}
	if p.ScheduleMin, err = producer.LoadScheduling(ctx, rdb); err != nil {
		return nil, err
	}
	return p, nil
}

// twilioCanceler is a Twilio client for canceling messages Twilio holds as
// scheduled (enqueue cancel), when the environment has Twilio credentials
// (the worker's variables); nil without them.
func twilioCanceler(e env) (tasks.MessageCanceler, error) {
	cfg, err := twilioapi.ConfigFromEnv(e.getenv)
	if err != nil {
		return nil, inputError{err}
	}
	if cfg.AccountSID == "" {
		return nil, nil
	}
	c, err := twilioapi.New(cfg)
	if err != nil {
		return nil, inputError{err}
	}
	return c, nil
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

// cmdCancel cancels a task that has not started: enqueue cancel TASK_ID.
func cmdCancel(args []string, e env) error {
	fs := newFlags("cancel", e)
	if err := parse(fs, args); err != nil {
		return err
	}
	if fs.NArg() != 1 {
		return badInput("cancel takes one TASK_ID")
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
	ctx, cancel := context.WithTimeout(context.Background(), 10*time.Second)
	defer cancel()
	p, err := newProducer(ctx, e, rdb, r)
	if err != nil {
		return err
	}
	if p.Canceler, err = twilioCanceler(e); err != nil {
		return err
	}
	st, err := p.Cancel(ctx, fs.Arg(0))
	if err != nil {
		return err
	}
	return printJSON(e.stdout, st)
}
