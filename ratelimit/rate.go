package ratelimit

import (
	"fmt"
	"strconv"
	"strings"
	"time"
)

// Rate is N events per Per, with bursts of up to Burst (at least 1).
// Written "N/s", "N/m" or "N/h", optionally ":B" for a burst of B ("30/m:5").
// Without ":B", "N/m" and "N/h" allow all N at once (up to N in any minute
// or hour, as people read them) and "N/s" spaces events 1/N s apart (the
// pace Twilio's own queue keeps per sender).
type Rate struct {
	N     int
	Per   time.Duration
	Burst int
}

// Interval is the time one event uses up: Per / N.
func (r Rate) Interval() time.Duration { return r.Per / time.Duration(r.N) }

func (r Rate) String() string {
	unit := map[time.Duration]string{time.Second: "s", time.Minute: "m", time.Hour: "h"}[r.Per]
	s := fmt.Sprintf("%d/%s", r.N, unit)
	if r.Burst != DefaultBurst(r.N, r.Per) {
		s += fmt.Sprintf(":%d", r.Burst)
	}
	return s
}

// DefaultBurst is the burst of a rate written without ":B": 1 per second,
// all n per minute or hour.
func DefaultBurst(n int, per time.Duration) int {
	if per <= time.Second {
		return 1
	}
	return n
}

// ParseRate parses "N/s", "N/m", "N/h" with an optional ":B" burst.
func ParseRate(s string) (Rate, error) {
	spec := strings.TrimSpace(s)
	rate, burst, hasBurst := strings.Cut(spec, ":")
	num, unit, ok := strings.Cut(rate, "/")
	if !ok {
		return Rate{}, fmt.Errorf("%q is not a rate such as 1/s, 30/m or 30/m:5", s)
	}
	n, err := strconv.Atoi(strings.TrimSpace(num))
	if err != nil || n <= 0 {
		return Rate{}, fmt.Errorf("%q: the count must be a whole number above 0", s)
	}
	r := Rate{N: n}
	switch strings.TrimSpace(unit) {
	case "s":
		r.Per = time.Second
	case "m":
		r.Per = time.Minute
	case "h":
		r.Per = time.Hour
	default:
		return Rate{}, fmt.Errorf("%q: the unit must be s, m or h", s)
	}
	r.Burst = DefaultBurst(n, r.Per)
	if r.Interval() <= 0 {
		return Rate{}, fmt.Errorf("%q: too fast to meter", s)
	}
	if hasBurst {
		b, err := strconv.Atoi(strings.TrimSpace(burst))
		if err != nil || b <= 0 {
			return Rate{}, fmt.Errorf("%q: the burst after ':' must be a whole number above 0", s)
		}
		r.Burst = b
	}
	return r, nil
}

// ParseRates parses per-key overrides: "+18005550100=3/s,+12025550123=100/s".
// normalize, when not nil, checks and rewrites each key (e.g. to E.164).
func ParseRates(s string, normalize func(string) (string, error)) (map[string]Rate, error) {
	out := map[string]Rate{}
	for _, item := range strings.Split(s, ",") {
		item = strings.TrimSpace(item)
		if item == "" {
			continue
		}
		key, spec, ok := strings.Cut(item, "=")
		if !ok {
			return nil, fmt.Errorf("%q: write sender=rate, e.g. +18005550100=3/s", item)
		}
		key = strings.TrimSpace(key)
		if normalize != nil {
			k, err := normalize(key)
			if err != nil {
				return nil, fmt.Errorf("sender in %q: %w", item, err)
			}
			key = k
		}
		r, err := ParseRate(spec)
		if err != nil {
			return nil, err
		}
		out[key] = r
	}
	return out, nil
}
