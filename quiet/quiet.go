// Package quiet does the arithmetic of quiet hours: a daily window of local
// wall-clock time (21:00-08:00) in which marketing messages must not arrive.
// Every function takes the current time as an argument, so callers inject
// their clock and tests can pretend it is 23:00 anywhere.
//
// The window is wall-clock time in the recipient's zone, so it follows DST:
// 21:00-08:00 lasts 11 hours on most nights, 10 on the night clocks spring
// forward and 12 when they fall back. A window end that does not exist on
// a day (clocks jump over it) ends at the jump.
package quiet

import (
	"errors"
	"fmt"
	"strconv"
	"strings"
	"sync"
	"time"
)

// Default is the window DESIGN.md gives QUIET_HOURS.
const Default = "21:00-08:00"

// Window is a daily window of local wall-clock time, [Start, End), in
// seconds after midnight. Start > End crosses midnight (21:00-08:00);
// Start == End is empty: nothing is ever quiet.
type Window struct {
	Start, End int
}

// Parse reads "HH:MM-HH:MM" (seconds allowed: "HH:MM:SS-HH:MM:SS").
func Parse(s string) (Window, error) {
	a, b, ok := strings.Cut(strings.TrimSpace(s), "-")
	if !ok {
		return Window{}, errors.New("must be HH:MM-HH:MM, e.g. 21:00-08:00")
	}
	start, err := parseClock(a)
	if err != nil {
		return Window{}, err
	}
	end, err := parseClock(b)
	if err != nil {
		return Window{}, err
	}
	return Window{Start: start, End: end}, nil
}

// MustParse is Parse for constants; it panics on a malformed window.
func MustParse(s string) Window {
	w, err := Parse(s)
	if err != nil {
		panic("quiet: " + s + ": " + err.Error())
	}
	return w
}

func parseClock(s string) (int, error) {
	parts := strings.Split(strings.TrimSpace(s), ":")
	bad := fmt.Errorf("%q is not a time of day HH:MM (00:00 to 23:59)", s)
	if len(parts) < 2 || len(parts) > 3 {
		return 0, bad
	}
	limits := []int{23, 59, 59}
	secs := 0
	for i, p := range parts {
		if len(p) != 2 {
			return 0, bad
		}
		n, err := strconv.Atoi(p)
		if err != nil || n < 0 || n > limits[i] {
			return 0, bad
		}
		secs += n * []int{3600, 60, 1}[i]
	}
	return secs, nil
}

// String formats w as Parse reads it.
func (w Window) String() string { return clock(w.Start) + "-" + clock(w.End) }

func clock(s int) string {
	if s%60 != 0 {
		return fmt.Sprintf("%02d:%02d:%02d", s/3600, s/60%60, s%60)
	}
	return fmt.Sprintf("%02d:%02d", s/3600, s/60%60)
}

// Empty reports whether nothing is ever quiet.
func (w Window) Empty() bool { return w.Start == w.End }

// Inside reports whether t is inside the window in loc.
func (w Window) Inside(t time.Time, loc *time.Location) bool {
	l := t.In(loc)
	s := l.Hour()*3600 + l.Minute()*60 + l.Second()
	switch {
	case w.Start < w.End:
		return s >= w.Start && s < w.End
	case w.Start > w.End:
		return s >= w.Start || s < w.End
	default:
		return false
	}
}

// Until returns when the window that holds t ends in loc: the first instant
// after t whose local wall clock reads End (or, on a day the clocks jump over
// End, the jump). It returns t itself when t is outside the window.
func (w Window) Until(t time.Time, loc *time.Location) time.Time {
	if !w.Inside(t, loc) {
		return t
	}
	l := t.In(loc)
	s := l.Hour()*3600 + l.Minute()*60 + l.Second()
	day := 0
	if s >= w.End { // crossing midnight: the window ends tomorrow
		day = 1
	}
	end := time.Date(l.Year(), l.Month(), l.Day()+day, w.End/3600, w.End/60%60, w.End%60, 0, loc)
	e := end.In(loc)
	if es := e.Hour()*3600 + e.Minute()*60 + e.Second(); es != w.End {
		// The wall-clock end does not exist that day (a DST gap): the
		// window ends when the clocks jump over it.
		zs, ze := end.ZoneBounds()
		if es < w.End && !ze.IsZero() {
			end = ze
		} else if !zs.IsZero() {
			end = zs
		}
	}
	if !end.After(t) { // defensive: never hand back a time that is not later
		end = t.Add(time.Second)
	}
	return end
}

// ErrNoCommonWindow is returned when no time within the search horizon is
// outside the window in every one of the zones.
var ErrNoCommonWindow = errors.New("no time outside quiet hours in every zone of the recipient")

// Horizon bounds the search for a time that suits every zone.
const Horizon = 48 * time.Hour

// Next returns the first instant not before now that is outside the window
// in every one of locs (now itself when it already is). A number that may
// be in several zones may be texted only when it is allowed in all of them.
func (w Window) Next(now time.Time, locs []*time.Location) (time.Time, error) {
	if w.Empty() || len(locs) == 0 {
		return now, nil
	}
	t := now
	for t.Sub(now) <= Horizon {
		later := t
		for _, loc := range locs {
			if u := w.Until(t, loc); u.After(later) {
				later = u
			}
		}
		if later.Equal(t) {
			return t, nil
		}
		t = later
	}
	return time.Time{}, ErrNoCommonWindow
}

var zoneCache sync.Map // name → *time.Location

// Load returns the locations of the IANA zone names, cached. An unknown name
// (such as phone.UnknownTimeZone, "Etc/Unknown") is an error.
func Load(names []string) ([]*time.Location, error) {
	out := make([]*time.Location, 0, len(names))
	for _, n := range names {
		if v, ok := zoneCache.Load(n); ok {
			out = append(out, v.(*time.Location))
			continue
		}
		loc, err := time.LoadLocation(n)
		if err != nil {
			return nil, fmt.Errorf("time zone %q: %w", n, err)
		}
		zoneCache.Store(n, loc)
		out = append(out, loc)
	}
	return out, nil
}
