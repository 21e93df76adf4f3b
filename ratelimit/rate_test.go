package ratelimit

import (
	"testing"
	"time"
)

func TestParseRate(t *testing.T) {
	tests := []struct {
		in      string
		want    Rate
		wantErr bool
	}{
		{"1/s", Rate{1, time.Second, 1}, false},
		// N/m and N/h allow N at once (defect 4: "10/m" held a second
		// message 6 s); ":B" says otherwise; N/s stays spaced.
		{"10/m", Rate{10, time.Minute, 10}, false},
		{"10/m:1", Rate{10, time.Minute, 1}, false},
		{"30/m:5", Rate{30, time.Minute, 5}, false},
		{" 100/s ", Rate{100, time.Second, 1}, false},
		{"3/h", Rate{3, time.Hour, 3}, false},
		{"", Rate{}, true},
		{"1", Rate{}, true},
		{"0/s", Rate{}, true},
		{"-1/s", Rate{}, true},
		{"1/d", Rate{}, true},
		{"1/s:0", Rate{}, true},
		{"x/s", Rate{}, true},
	}
	for _, tt := range tests {
		t.Run(tt.in, func(t *testing.T) {
			got, err := ParseRate(tt.in)
			if (err != nil) != tt.wantErr {
				t.Fatalf("ParseRate(%q) error = %v, wantErr %v", tt.in, err, tt.wantErr)
			}
			if !tt.wantErr && got != tt.want {
				t.Fatalf("ParseRate(%q) = %+v, want %+v", tt.in, got, tt.want)
			}
		})
	}
}

func TestParseRates(t *testing.T) {
	got, err := ParseRates("+18005550100=3/s, +12025550123=100/s:10", nil)
	if err != nil {
		t.Fatal(err)
	}
	if got["+18005550100"] != (Rate{3, time.Second, 1}) || got["+12025550123"] != (Rate{100, time.Second, 10}) {
		t.Fatalf("got %+v", got)
	}
	if _, err := ParseRates("+18005550100", nil); err == nil {
		t.Fatal("missing '=' accepted")
	}
	if _, err := ParseRates("+18005550100=fast", nil); err == nil {
		t.Fatal("bad rate accepted")
	}
}
