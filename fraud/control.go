package fraud

import (
	"context"
	"errors"
	"fmt"
	"slices"
	"strconv"
	"time"

	"github.com/redis/go-redis/v9"

	"github.com/sbagenthub/twilio-worker/commlog"
)

// ErrNotBlocked is the condition of unblocking a prefix that is not blocked.
var ErrNotBlocked = errors.New("prefix is not blocked")

// Blocks lists the prefixes blocked now, soonest to end first.
func (g *Guard) Blocks(ctx context.Context) ([]Block, error) {
	now := g.cfg.Now()
	prefixes, err := g.rdb.ZRangeByScore(ctx, BlocksKey, &redis.ZRangeBy{Min: "(" + strconv.FormatInt(now.UnixMilli(), 10), Max: "+inf"}).Result()
	if err != nil {
		return nil, fmt.Errorf("list blocks: %w", err)
	}
	cmds := make([]*redis.MapStringStringCmd, len(prefixes))
	if len(prefixes) > 0 {
		if _, err := g.rdb.Pipelined(ctx, func(p redis.Pipeliner) error {
			for i, pr := range prefixes {
				cmds[i] = p.HGetAll(ctx, BlockKey(pr))
			}
			return nil
		}); err != nil {
			return nil, fmt.Errorf("list blocks: %w", err)
		}
	}
	out := []Block{}
	for i, pr := range prefixes {
		h := cmds[i].Val()
		until, _ := strconv.ParseInt(h["until"], 10, 64)
		if until <= now.UnixMilli() {
			continue // lifted or ended since the index was read
		}
		at, _ := strconv.ParseInt(h["at"], 10, 64)
		out = append(out, Block{Prefix: pr, Until: time.UnixMilli(until).UTC(), Reason: h["reason"], Kind: h["kind"],
			Country: h["country"], BlockedAt: time.UnixMilli(at).UTC()})
	}
	return out, nil
}

// Unblock lifts the block of prefix (written as ParsePrefix reads it) and
// forgets its rate, so the next message goes. It is recorded in the
// communications log with who did it (source: cli, api).
func (g *Guard) Unblock(ctx context.Context, prefix, source string) (string, error) {
	p, err := ParsePrefix(prefix)
	if err != nil {
		return "", fmt.Errorf("prefix: %w", err)
	}
	had, err := unblockScript.Run(ctx, g.rdb, []string{BlockKey(p), BlocksKey, RateKey(p)}, p).Int()
	if err != nil {
		return p, fmt.Errorf("unblock: %w", err)
	}
	if had == 0 {
		return p, ErrNotBlocked
	}
	g.cfg.Logger.Info("fraud guard: prefix unblocked", "prefix", p, "source", source)
	if err := g.cfg.Comms.Append(ctx, commlog.Entry{Event: EventUnblock, Reason: "prefix " + p + ": unblocked", Source: source}); err != nil {
		g.cfg.Logger.Warn("fraud guard: communications log", "err", err)
	}
	return p, nil
}

// SafeAdd puts a number or prefix on the safe list: it is never blocked.
// It returns the entry as stored and whether it was new.
func (g *Guard) SafeAdd(ctx context.Context, entry string) (string, bool, error) {
	p, err := ParsePrefix(entry)
	if err != nil {
		return "", false, err
	}
	n, err := g.rdb.SAdd(ctx, SafeKey, p).Result()
	if err != nil {
		return p, false, fmt.Errorf("safe list: %w", err)
	}
	return p, n == 1, nil
}

// SafeRemove takes a number or prefix off the safe list; it reports whether
// it was there.
func (g *Guard) SafeRemove(ctx context.Context, entry string) (string, bool, error) {
	p, err := ParsePrefix(entry)
	if err != nil {
		return "", false, err
	}
	n, err := g.rdb.SRem(ctx, SafeKey, p).Result()
	if err != nil {
		return p, false, fmt.Errorf("safe list: %w", err)
	}
	return p, n == 1, nil
}

// SafeList returns the safe list, sorted.
func (g *Guard) SafeList(ctx context.Context) ([]string, error) {
	l, err := g.rdb.SMembers(ctx, SafeKey).Result()
	if err != nil {
		return nil, fmt.Errorf("safe list: %w", err)
	}
	slices.Sort(l)
	return l, nil
}
