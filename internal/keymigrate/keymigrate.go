// Package keymigrate moves the project's keys from the layout without hash
// tags (tw:optout:sms, tw:rl:sender:…, tw:campaign:ID, …) to the one Redis
// Cluster needs (tw:{optout}:optout:sms, tw:{rl}:sender:…,
// tw:campaign:{ID}, …; docs/keys.md), when a worker starts.
//
// Old keys can only exist on a single node or a Sentinel master (the old
// layout never worked on a cluster), so Run does nothing on a cluster. Each
// key moves in one script: renamed when its new name is free, merged into it
// otherwise (sets are united, hashes keep the new fields, lists get the old
// entries after the new ones), then deleted. Running it again, or in several
// workers starting at once, moves nothing twice.
//
// Send-ledger entries (tw:send:TASK) and SID claims (tw:sid:SID) cannot be
// renamed here: their new names carry the recipient, which the old key does
// not say. Run counts them, and the ledger reads them (moving each entry on
// first read) while any are left; they expire within two days.
package keymigrate

import (
	"context"
	"fmt"
	"strings"

	"github.com/redis/go-redis/v9"
)

// Report says what Run did.
type Report struct {
	Moved  int // renamed to the new name
	Merged int // merged into a new key that already existed
	// LegacyLedger counts old send-ledger entries and claims left for the
	// ledger to read (ledger.ReadLegacy).
	LegacyLedger int
}

// NewName returns the tagged name of an old key, and false for a key that is
// not an old project key (or is already tagged).
func NewName(old string) (string, bool) {
	if strings.ContainsAny(old, "{}") {
		return "", false
	}
	switch {
	case old == "tw:optout:sms" || old == "tw:optout:voice":
		return "tw:{optout}:optout:" + strings.TrimPrefix(old, "tw:optout:"), true
	case strings.HasPrefix(old, "tw:optout:history:"), strings.HasPrefix(old, "tw:optout:import:"),
		strings.HasPrefix(old, "tw:optout:imported:"), old == "tw:optout:imports":
		return "tw:{optout}:" + strings.TrimPrefix(old, "tw:optout:"), true
	case old == "tw:consent:sms" || old == "tw:consent:voice":
		return "tw:{optout}:consent:" + strings.TrimPrefix(old, "tw:consent:"), true
	case strings.HasPrefix(old, "tw:rl:"):
		return "tw:{rl}:" + strings.TrimPrefix(old, "tw:rl:"), true
	case strings.HasPrefix(old, "tw:campaign:"):
		rest := strings.TrimPrefix(old, "tw:campaign:") // ID, ID:to or ID:to:RUN (ids have no ':')
		id, tail, _ := strings.Cut(rest, ":")
		if id == "" {
			return "", false
		}
		n := "tw:campaign:{" + id + "}"
		if tail != "" {
			n += ":" + tail
		}
		return n, true
	}
	return "", false
}

// moveScript moves KEYS[1] to KEYS[2] (single node: the two keys' slots
// differ). 0: nothing to move, 1: renamed, 2: merged.
var moveScript = redis.NewScript(`
if redis.call('EXISTS', KEYS[1]) == 0 then return 0 end
if redis.call('EXISTS', KEYS[2]) == 0 then redis.call('RENAME', KEYS[1], KEYS[2]) return 1 end
local t = redis.call('TYPE', KEYS[1])['ok']
if t == 'set' then redis.call('SUNIONSTORE', KEYS[2], KEYS[2], KEYS[1])
elseif t == 'hash' then
  local kv = redis.call('HGETALL', KEYS[1])
  for i = 1, #kv, 2 do redis.call('HSETNX', KEYS[2], kv[i], kv[i + 1]) end
elseif t == 'list' then
  local vs = redis.call('LRANGE', KEYS[1], 0, -1)
  for i = 1, #vs do redis.call('RPUSH', KEYS[2], vs[i]) end
end
redis.call('DEL', KEYS[1])
return 2`)

// Run moves every old key on a single node or Sentinel master. On a cluster
// client it returns an empty report.
func Run(ctx context.Context, rdb redis.UniversalClient) (Report, error) {
	var rep Report
	if _, ok := rdb.(*redis.ClusterClient); ok {
		return rep, nil
	}
	for _, pattern := range []string{"tw:optout:*", "tw:consent:*", "tw:rl:*", "tw:campaign:*", "tw:send:*", "tw:sid:*"} {
		iter := rdb.Scan(ctx, 0, pattern, 1000).Iterator()
		for iter.Next(ctx) {
			old := iter.Val()
			if strings.ContainsAny(old, "{}") {
				continue
			}
			if strings.HasPrefix(old, "tw:send:") || strings.HasPrefix(old, "tw:sid:") {
				rep.LegacyLedger++
				continue
			}
			n, ok := NewName(old)
			if !ok {
				continue
			}
			res, err := moveScript.Run(ctx, rdb, []string{old, n}).Int()
			if err != nil {
				return rep, fmt.Errorf("move %s to %s: %w", old, n, err)
			}
			switch res {
			case 1:
				rep.Moved++
			case 2:
				rep.Merged++
			}
		}
		if err := iter.Err(); err != nil {
			return rep, fmt.Errorf("scan %s: %w", pattern, err)
		}
	}
	return rep, nil
}
