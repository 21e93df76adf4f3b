package main

import (
	"context"
	"errors"
	"time"

	"github.com/redis/go-redis/v9"

	"github.com/sbagenthub/twilio-worker/fraud"
)

// guard is the fraud guard configured from the same variables as the
// worker's; rdb may be nil for the refusals at enqueue, which need no Redis.
// A malformed variable is bad input.
func guard(e env, rdb redis.UniversalClient) (*fraud.Guard, error) {
	cfg, err := fraud.ParseConfig(e.getenv)
	if err != nil {
		return nil, inputError{err}
	}
	if rdb != nil {
		cfg.Comms = commLog(e, rdb)
	}
	return fraud.New(rdb, cfg), nil
}

// checkEnqueue is the fraud guard's refusal at enqueue: a *tasks.FieldError
// naming "to" and the country (exit 2), or nil.
func checkEnqueue(e env, to, source string) error {
	g, err := guard(e, nil)
	if err != nil {
		return err
	}
	return g.CheckEnqueue(context.Background(), to, source)
}

// cmdFraud: enqueue fraud list | unblock PREFIX | safe add|remove|list [X].
func cmdFraud(args []string, e env) error {
	if len(args) == 0 {
		return badInput("fraud takes list, unblock PREFIX or safe add|remove|list [NUMBER_OR_PREFIX]")
	}
	fs := newFlags("fraud "+args[0], e)
	if err := parse(fs, args[1:]); err != nil {
		return err
	}
	rest := fs.Args()
	rdb, err := redisClient(e)
	if err != nil {
		return err
	}
	defer rdb.Close()
	g, err := guard(e, rdb)
	if err != nil {
		return err
	}
	ctx, cancel := context.WithTimeout(context.Background(), 10*time.Second)
	defer cancel()
	switch args[0] {
	case "list":
		if len(rest) > 0 {
			return badInput("fraud list takes no argument")
		}
		blocks, err := g.Blocks(ctx)
		if err != nil {
			return err
		}
		return printJSON(e.stdout, map[string]any{"blocks": blocks, "count": len(blocks)})
	case "unblock":
		if len(rest) != 1 {
			return badInput("fraud unblock takes one PREFIX, such as +1415555")
		}
		p, err := g.Unblock(ctx, rest[0], "cli")
		switch {
		case p == "" && err != nil:
			return inputError{err}
		case errors.Is(err, fraud.ErrNotBlocked):
			return badInput("prefix: %s is not blocked", p)
		case err != nil:
			return err
		}
		return printJSON(e.stdout, map[string]any{"prefix": p, "unblocked": true})
	case "safe":
		return cmdFraudSafe(ctx, g, rest, e)
	}
	return badInput("fraud: unknown subcommand %q; use list, unblock or safe", args[0])
}

func cmdFraudSafe(ctx context.Context, g *fraud.Guard, args []string, e env) error {
	if len(args) == 0 {
		return badInput("fraud safe takes add, remove or list")
	}
	switch args[0] {
	case "list":
		if len(args) != 1 {
			return badInput("fraud safe list takes no argument")
		}
		l, err := g.SafeList(ctx)
		if err != nil {
			return err
		}
		return printJSON(e.stdout, map[string]any{"safe": l, "count": len(l)})
	case "add", "remove":
		if len(args) != 2 {
			return badInput("fraud safe %s takes one NUMBER_OR_PREFIX, such as +14155551234 or +1415555", args[0])
		}
		op, key := g.SafeAdd, "added"
		if args[0] == "remove" {
			op, key = g.SafeRemove, "removed"
		}
		p, changed, err := op(ctx, args[1])
		switch {
		case p == "" && err != nil:
			return badInput("entry: %v", err)
		case err != nil:
			return err
		}
		return printJSON(e.stdout, map[string]any{"entry": p, key: changed})
	}
	return badInput("fraud safe: unknown subcommand %q; use add, remove or list", args[0])
}
