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
// message could be admitted on it: after its booked plan, its gate and its
// last Pick, and never before now. A sender pool compares them to choose the number
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
	if len(res) != 3*len(senders) {
		return nil, fmt.Errorf("read sender limits: unexpected answer %v", res)
	}
	for i, s := range senders {
		r := l.SenderRate(s)
		at := now
		if r.N > 0 {
			slack := time.Duration(max(r.Burst-1, 0)) * r.Interval()
			for j, v := range res[3*i : 3*i+3] {
				us, _ := strconv.ParseInt(v, 10, 64)
				t := time.UnixMicro(us)
				if j < 2 {
					t = t.Add(-slack) // plan and gate allow the burst; a pick does not
				}
				if us > 0 && t.After(at) {
					at = t
				}
			}
		}
		out[i] = at
	}
	return out, nil
}

// Pick chooses among senders the one whose next free slot is soonest (a
// preferred one, when it is at most slack later than the soonest of all)
// and reserves that slot in the same script, so that pickers running at the
// same moment, in any worker, spread over the senders instead of all taking
// the one that looked free. The reservation is one interval of the chosen
// sender; the send itself is still admitted (AdmitSMS) on it. It returns the
// index of the chosen sender and its slot.
func (l *Limiter) Pick(ctx context.Context, senders []string, preferred []bool, slack time.Duration) (int, time.Time, error) {
	if len(senders) == 0 {
		return -1, time.Time{}, fmt.Errorf("pick a sender: none given")
	}
	now := l.cfg.Now()
	keys := make([]string, len(senders))
	args := []any{micros(now), slack.Microseconds()}
	for i, s := range senders {
		keys[i] = l.key(ScopeSender, l.senderKey(s))
		r := l.SenderRate(s)
		var iv int64
		burst := 1
		if r.N > 0 {
			iv, burst = intervalMicros(r), r.Burst
		}
		pref := 0
		if i < len(preferred) && preferred[i] {
			pref = 1
		}
		args = append(args, iv, burst, pref)
	}
	res, err := pickScript.Run(ctx, l.rdb, keys, args...).Slice()
	if err != nil {
		return -1, time.Time{}, fmt.Errorf("pick a sender: %w", err)
	}
	if len(res) != 2 {
		return -1, time.Time{}, fmt.Errorf("pick a sender: unexpected answer %v", res)
	}
	i, _ := res[0].(int64)
	us, err := strconv.ParseInt(fmt.Sprint(res[1]), 10, 64)
	if err != nil || i < 0 || int(i) >= len(senders) {
		return -1, time.Time{}, fmt.Errorf("pick a sender: unexpected answer %v", res)
	}
	return int(i), time.UnixMicro(us), nil
}

// pickScript: KEYS the senders; ARGV now, slack, then per sender interval,
// burst, preferred (0/1). A sender's next slot is after its plan and gate
// (less the burst) and after its last pick; the chosen one's pick moves on
// by one interval. Answer {index from 0, slot}.
var pickScript = redis.NewScript(`
local now, slack = tonumber(ARGV[1]), tonumber(ARGV[2])
local best, bestPref, nxt = 0, 0, {}
for i = 1, #KEYS do
  local a = 2 + (i - 1) * 3
  local I, B, pref = tonumber(ARGV[a + 1]), tonumber(ARGV[a + 2]), tonumber(ARGV[a + 3])
  local t = now
  if I > 0 then
    local v = redis.call('HMGET', KEYS[i], 'plan', 'gate', 'pick')
    local s = math.max(B - 1, 0) * I
    for j = 1, 2 do
      local x = (tonumber(v[j]) or 0) - s
      if x > t then t = x end
    end
    local p = tonumber(v[3]) or 0
    if p > t then t = p end
  end
  nxt[i] = t
  if best == 0 or t < nxt[best] then best = i end
  if pref == 1 and (bestPref == 0 or t < nxt[bestPref]) then bestPref = i end
end
if bestPref > 0 and nxt[bestPref] <= nxt[best] + slack then best = bestPref end
local I = tonumber(ARGV[2 + (best - 1) * 3 + 1])
if I > 0 then
  local pick = nxt[best] + I
  redis.call('HSET', KEYS[best], 'pick', string.format('%.0f', pick))
  local need = math.ceil((pick - now) / 1000) + 1000
  if redis.call('PTTL', KEYS[best]) < need then redis.call('PEXPIRE', KEYS[best], need) end
end
return {best - 1, string.format('%.0f', nxt[best])}`)

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

// readScript returns plan, gate and pick of every key ("0" when unset).
var readScript = redis.NewScript(`
local out = {}
for i = 1, #KEYS do
  local v = redis.call('HMGET', KEYS[i], 'plan', 'gate', 'pick')
  for j = 1, 3 do out[#out + 1] = v[j] or '0' end
end
return out`)

// holdScript returns the hold's value, "" when there is none.
var holdScript = redis.NewScript(`return redis.call('GET', KEYS[1]) or ''`)
