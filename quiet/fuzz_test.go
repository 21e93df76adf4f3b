package quiet

import (
	"testing"
	"time"
)

// FuzzParse: whatever Parse accepts prints back to the same window, and the
// window's end is never before the time asked about.
func FuzzParse(f *testing.F) {
	for _, s := range []string{"21:00-08:00", "00:00-00:00", "23:59:59-00:00:01", "9pm-8am", "24:00-01:00"} {
		f.Add(s, int64(1736982000))
	}
	f.Fuzz(func(t *testing.T, s string, unix int64) {
		w, err := Parse(s)
		if err != nil {
			return
		}
		if again, err := Parse(w.String()); err != nil || again != w {
			t.Fatalf("%q → %v → %q → %v, %v", s, w, w.String(), again, err)
		}
		now := time.Unix(unix%(1<<33), 0)
		if u := w.Until(now, time.UTC); u.Before(now) || w.Inside(u, time.UTC) {
			t.Fatalf("%v at %s: until %s", w, now, u)
		}
	})
}
