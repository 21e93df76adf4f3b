package optout

import (
	"context"
	"fmt"
	"strings"
)

// ScanCountDefault is the COUNT hint of each SSCAN.
const ScanCountDefault = 1000

// Scan returns one page of l's numbers from cursor (0 starts) and the cursor
// of the next page (0 when done): one SSCAN. Pages are not sorted, and a
// number added or removed during the walk may be seen or not; every number
// present for the whole walk is seen at least once.
func (s *Store) Scan(ctx context.Context, l List, cursor uint64, count int64) ([]string, uint64, error) {
	if err := l.valid(); err != nil {
		return nil, 0, err
	}
	if count <= 0 {
		count = ScanCountDefault
	}
	keys, next, err := s.rdb.SScan(ctx, l.Key(), cursor, "", count).Result()
	if err != nil {
		return nil, 0, fmt.Errorf("list %s: %w", l, err)
	}
	return keys, next, nil
}

// Each calls fn for every number in l, a page at a time, never holding more
// than one page. SSCAN may return a number twice; Each passes it on twice.
func (s *Store) Each(ctx context.Context, l List, fn func(number string) error) error {
	var cursor uint64
	for {
		page, next, err := s.Scan(ctx, l, cursor, ScanCountDefault)
		if err != nil {
			return err
		}
		for _, n := range page {
			if err := fn(n); err != nil {
				return err
			}
		}
		if next == 0 {
			return nil
		}
		cursor = next
	}
}

// MarshalText writes l as "optout:sms".
func (l List) MarshalText() ([]byte, error) { return []byte(l.String()), nil }

// UnmarshalText reads "optout:sms".
func (l *List) UnmarshalText(b []byte) error {
	k, c, ok := strings.Cut(string(b), ":")
	v := List{Kind(k), Channel(c)}
	if !ok || v.valid() != nil {
		return fmt.Errorf("list %q: must be optout:sms, consent:voice, …", b)
	}
	*l = v
	return nil
}
