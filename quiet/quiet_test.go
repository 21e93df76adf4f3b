package quiet

import (
	"errors"
	"testing"
	"time"
)

func mustLoad(t *testing.T, names ...string) []*time.Location {
	t.Helper()
	locs, err := Load(names)
	if err != nil {
		t.Fatal(err)
	}
	return locs
}

func at(t *testing.T, zone, s string) time.Time {
	t.Helper()
	loc := mustLoad(t, zone)[0]
	v, err := time.ParseInLocation("2006-01-02 15:04:05", s, loc)
	if err != nil {
		t.Fatal(err)
	}
	return v
}

func TestParse(t *testing.T) {
	tests := []struct {
		in   string
		want Window
		err  bool
	}{
		{"21:00-08:00", Window{21 * 3600, 8 * 3600}, false},
		{" 09:30-17:45 ", Window{9*3600 + 30*60, 17*3600 + 45*60}, false},
		{"23:59:30-00:00:15", Window{23*3600 + 59*60 + 30, 15}, false},
		{"00:00-00:00", Window{}, false},
		{"9pm-8am", Window{}, true},
		{"24:00-08:00", Window{}, true},
		{"21:60-08:00", Window{}, true},
		{"21:00", Window{}, true},
		{"21:0-08:00", Window{}, true},
	}
	for _, tt := range tests {
		t.Run(tt.in, func(t *testing.T) {
			got, err := Parse(tt.in)
			if (err != nil) != tt.err || got != tt.want {
				t.Fatalf("Parse(%q) = %+v, %v; want %+v, err %v", tt.in, got, err, tt.want, tt.err)
			}
			if err == nil {
				if again, _ := Parse(got.String()); again != got {
					t.Fatalf("String %q does not parse back", got.String())
				}
			}
		})
	}
}

func TestUntil(t *testing.T) {
	night := MustParse("21:00-08:00")
	tests := []struct {
		name   string
		w      Window
		zone   string
		now    string // local wall clock
		inside bool
		want   string // local wall clock of the end; "" = now
	}{
		{"evening", night, "America/Los_Angeles", "2025-01-15 23:00:00", true, "2025-01-16 08:00:00"},
		{"after midnight", night, "America/Los_Angeles", "2025-01-16 03:15:00", true, "2025-01-16 08:00:00"},
		{"start is inside", night, "Europe/London", "2025-06-01 21:00:00", true, "2025-06-02 08:00:00"},
		{"end is outside", night, "Europe/London", "2025-06-01 08:00:00", false, ""},
		{"afternoon", night, "Europe/London", "2025-06-01 14:00:00", false, ""},
		{"one second before", night, "Asia/Tokyo", "2025-06-01 20:59:59", false, ""},
		{"daytime window", MustParse("12:00-13:00"), "Asia/Kolkata", "2025-06-01 12:30:00", true, "2025-06-01 13:00:00"},
		{"empty window", Window{}, "UTC", "2025-06-01 12:30:00", false, ""},
		// The night clocks spring forward (US: 02:00 → 03:00 on 9 March 2025):
		// the window still ends at 08:00 local, which is 10 real hours after 21:00.
		{"spring forward night", night, "America/New_York", "2025-03-08 22:00:00", true, "2025-03-09 08:00:00"},
		// Fall back (EU: 03:00 → 02:00 on 26 October 2025).
		{"fall back night", night, "Europe/Berlin", "2025-10-25 23:30:00", true, "2025-10-26 08:00:00"},
		// An end inside the DST gap (02:30 does not exist on 9 March in New
		// York): the window ends when the clocks jump, 03:00 EDT.
		{"end in the gap", MustParse("22:00-02:30"), "America/New_York", "2025-03-09 01:00:00", true, "2025-03-09 03:00:00"},
		// An end in the repeated hour (01:30 happens twice on 2 November in
		// New York): the first 01:30 ends it.
		{"end in the repeated hour", MustParse("22:00-01:30"), "America/New_York", "2025-11-02 00:30:00", true, "2025-11-02 01:30:00"},
		// Southern hemisphere: Sydney springs forward on 5 October 2025.
		{"sydney spring", night, "Australia/Sydney", "2025-10-04 22:00:00", true, "2025-10-05 08:00:00"},
		// Half-hour zone.
		{"st johns", night, "America/St_Johns", "2025-01-15 07:59:00", true, "2025-01-15 08:00:00"},
	}
	for _, tt := range tests {
		t.Run(tt.name, func(t *testing.T) {
			loc := mustLoad(t, tt.zone)[0]
			now := at(t, tt.zone, tt.now)
			if got := tt.w.Inside(now, loc); got != tt.inside {
				t.Fatalf("Inside = %v, want %v", got, tt.inside)
			}
			want := now
			if tt.want != "" {
				want = at(t, tt.zone, tt.want)
			}
			got := tt.w.Until(now, loc)
			if !got.Equal(want) {
				t.Fatalf("Until = %s, want %s", got.In(loc), want)
			}
			if tt.inside && tt.w.Inside(got, loc) {
				t.Fatalf("the end %s is still inside the window", got.In(loc))
			}
		})
	}
}

func TestUntilSpringForwardLastsTenHours(t *testing.T) {
	w := MustParse("21:00-08:00")
	loc := mustLoad(t, "America/New_York")[0]
	start := at(t, "America/New_York", "2025-03-08 21:00:00")
	if d := w.Until(start, loc).Sub(start); d != 10*time.Hour {
		t.Fatalf("the spring-forward night lasts %v, want 10h", d)
	}
	start = at(t, "America/New_York", "2025-11-01 21:00:00")
	if d := w.Until(start, loc).Sub(start); d != 12*time.Hour {
		t.Fatalf("the fall-back night lasts %v, want 12h", d)
	}
}

func TestNextSeveralZones(t *testing.T) {
	w := MustParse("21:00-08:00")
	utc := func(s string) time.Time {
		v, err := time.Parse(time.RFC3339, s)
		if err != nil {
			t.Fatal(err)
		}
		return v
	}
	tests := []struct {
		name  string
		zones []string
		now   string
		want  string
		err   error
	}{
		{"allowed in both", []string{"America/New_York", "America/Los_Angeles"}, "2025-01-15T18:00:00Z", "2025-01-15T18:00:00Z", nil},
		// 14:00 UTC: 09:00 in New York, 06:00 in Los Angeles: wait for LA's 08:00.
		{"waits for the latest zone", []string{"America/New_York", "America/Los_Angeles"}, "2025-01-15T14:00:00Z", "2025-01-15T16:00:00Z", nil},
		// 03:00 UTC: 22:00 in New York, 19:00 in LA: LA allowed, New York not;
		// New York's 08:00 is 13:00 UTC, when LA is at 05:00: then LA's 08:00.
		{"chases the zones", []string{"America/New_York", "America/Los_Angeles"}, "2025-01-16T03:00:00Z", "2025-01-16T16:00:00Z", nil},
		// Guam (+10) and Pago Pago (-11) share 08:00-21:00 only from 22:00 to 08:00 UTC.
		{"pacific both sides", []string{"Pacific/Guam", "Pacific/Pago_Pago"}, "2025-01-15T12:00:00Z", "2025-01-15T22:00:00Z", nil},
		// Kiritimati (+14) and Pago Pago (-11) are 25 hours apart, i.e. one
		// hour: a 23-hour quiet window leaves them nothing in common.
		{"no common time", []string{"Pacific/Kiritimati", "Pacific/Pago_Pago"}, "2025-01-15T12:00:00Z", "", ErrNoCommonWindow},
	}
	for _, tt := range tests {
		t.Run(tt.name, func(t *testing.T) {
			ww := w
			if tt.err != nil {
				ww = MustParse("08:00-07:00")
			}
			got, err := ww.Next(utc(tt.now), mustLoad(t, tt.zones...))
			if !errors.Is(err, tt.err) {
				t.Fatalf("err %v, want %v", err, tt.err)
			}
			if tt.err == nil && !got.Equal(utc(tt.want)) {
				t.Fatalf("Next = %s, want %s", got.UTC(), tt.want)
			}
		})
	}
}

func TestLoadRefusesUnknown(t *testing.T) {
	if _, err := Load([]string{"Etc/Unknown"}); err == nil {
		t.Fatal("Etc/Unknown loaded")
	}
}
