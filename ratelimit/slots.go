package ratelimit

import (
	"context"
	"fmt"
	"strconv"
	"strings"
	"time"

	"github.com/redis/go-redis/v9"
)

// NextSlots returns, for each sender, the earliest moment a one-segment
// message could be admitted on it: after both its booked plan and its gate,
// and never before now. A sender pool compares them to choose the number
// whose next free slot is soonest. The senders' keys are read in one script
// (they share the limiter's hash tag once keys are tagged).
func (l *Limiter) NextSlots(ctx context.Context, senders []string) ([]time.Time, error) {
	now := l.cfg.Now()
	out := make([]time.Time, len(senders))
	if len(senders) == 0 {
		return out, nil
	}
	keys := make([]string, len(senders))
	for i, s := range senders {
		keys[i] = l.key(ScopeSender, l.senderKey(s))
	}
	res, err := readScript.Run(ctx, l.rdb, keys).StringSlice()
	if err != nil {
		return nil, fmt.Errorf("read sender limits: %w", err)
	}
	if len(res) != 2*len(senders) {
		return nil, fmt.Errorf("read sender limits: unexpected answer %v", res)
	}
	for i, s := range senders {
		r := l.SenderRate(s)
		at := now
		if r.N > 0 {
			slack := time.Duration(max(r.Burst-1, 0)) * r.Interval()
			for _, v := range res[2*i : 2*i+2] {
				us, _ := strconv.ParseInt(v, 10, 64)
				if t := time.UnixMicro(us).Add(-slack); us > 0 && t.After(at) {
					at = t
				}
			}
		}
		out[i] = at
	}
	return out, nil
}

// HoldAt returns the slot booked for the task, if it holds one.
func (l *Limiter) HoldAt(ctx context.Context, taskID string) (time.Time, bool, error) {
	if taskID == "" {
		return time.Time{}, false, nil
	}
	v, err := holdScript.Run(ctx, l.rdb, []string{l.key("hold", taskID)}).Text()
	if err != nil {
		return time.Time{}, false, fmt.Errorf("read the task's rate-limit slot: %w", err)
	}
	if v == "" {
		return time.Time{}, false, nil
	}
	us, err := strconv.ParseInt(strings.TrimPrefix(v, "g:"), 10, 64)
	if err != nil {
		return time.Time{}, false, fmt.Errorf("read the task's rate-limit slot: unexpected %q", v)
	}
	return time.UnixMicro(us), true, nil
}

// readScript returns plan and gate of every key ("0" when unset).
var readScript = redis.NewScript(`
local out = {}
for i = 1, #KEYS do
  local v = redis.call('HMGET', KEYS[i], 'plan', 'gate')
  out[#out + 1] = v[1] or '0'
  out[#out + 1] = v[2] or '0'
end
return out`)

// holdScript returns the hold's value, "" when there is none.
var holdScript = redis.NewScript(`return redis.call('GET', KEYS[1]) or ''`)
