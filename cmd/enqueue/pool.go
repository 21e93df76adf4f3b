package main

import (
	"context"
	"errors"

	"github.com/sbagenthub/twilio-worker/phone"
	"github.com/sbagenthub/twilio-worker/pool"
	"github.com/sbagenthub/twilio-worker/ratelimit"
)

// cmdPool is `enqueue pool status` (the sender pool's numbers, rates, next
// free slots and which are out of rotation and why) and `enqueue pool
// restore NUMBER` (put a number back in rotation).
func cmdPool(args []string, e env) error {
	if len(args) == 0 {
		return badInput("pool takes status or restore NUMBER")
	}
	sub, rest := args[0], args[1:]
	fs := newFlags("pool "+sub, e)
	if err := parse(fs, rest); err != nil {
		return err
	}
	var number phone.Number
	switch sub {
	case "status":
		if fs.NArg() != 0 {
			return badInput("pool status takes no arguments")
		}
	case "restore":
		if fs.NArg() != 1 {
			return badInput("pool restore takes one NUMBER")
		}
		n, err := phone.Parse(fs.Arg(0), e.getenv("DEFAULT_REGION"))
		if err != nil {
			return badInput("number: %v", err)
		}
		number = n
	default:
		return badInput("unknown pool command %q; use status or restore NUMBER", sub)
	}
	rdb, err := redisClient(e)
	if err != nil {
		return err
	}
	defer rdb.Close()
	ctx := context.Background()
	l, err := ratelimit.Load(ctx, rdb, ratelimit.Config{})
	if errors.Is(err, ratelimit.ErrNoConfig) {
		return badInput("no sender pool: %v", err)
	}
	if err != nil {
		return err
	}
	p, err := pool.Load(ctx, rdb, l)
	if errors.Is(err, pool.ErrNoPool) {
		return badInput("no sender pool: the workers run without SENDER_POOL")
	}
	if err != nil {
		return err
	}
	if sub == "status" {
		st, err := p.Status(ctx)
		if err != nil {
			return err
		}
		return printJSON(e.stdout, st)
	}
	if !p.Has(number.String()) {
		return badInput("number: %s is not one of the sender pool's", number.Masked())
	}
	was, err := p.Restore(ctx, number.String())
	if err != nil {
		return err
	}
	return printJSON(e.stdout, map[string]any{"number": number.String(), "restored": was, "inRotation": true})
}
