package fraud

import (
	"regexp"
	"strings"
	"testing"
)

var prefixForm = regexp.MustCompile(`^\+[1-9][0-9]{0,14}$`)

// FuzzParsePrefix: whatever an operator types, ParsePrefix gives +digits
// (at most 15, no leading 0) or an error, and reading its own output again
// gives the same.
func FuzzParsePrefix(f *testing.F) {
	for _, s := range []string{"+1415555", "+1 (415) 555-1234", "+44.20", "1415", "+", "+0", "+1\x00", "+١٢٣", "++1"} {
		f.Add(s)
	}
	f.Fuzz(func(t *testing.T, s string) {
		p, err := ParsePrefix(s)
		if err != nil {
			if p != "" {
				t.Fatalf("ParsePrefix(%q) = %q with error %v", s, p, err)
			}
			return
		}
		if !prefixForm.MatchString(p) {
			t.Fatalf("ParsePrefix(%q) = %q, not +digits", s, p)
		}
		if again, err := ParsePrefix(p); err != nil || again != p {
			t.Fatalf("ParsePrefix(%q) = %q, %v; not stable", p, again, err)
		}
	})
}

// FuzzPrefixAndCountry: the prefix of any string is "" or the input
// without its last four digits, and a number's country is "", "001" or an
// ISO code, never a panic.
func FuzzPrefixAndCountry(f *testing.F) {
	for _, s := range []string{"+14155551234", "+447400123456", "+2348031234567", "+80012345678", "+1900", "x", ""} {
		f.Add(s)
	}
	iso := regexp.MustCompile(`^([A-Z]{2}|001)?$`)
	f.Fuzz(func(t *testing.T, s string) {
		p := Prefix(s)
		if p != "" && (!strings.HasPrefix(s, p) || len(s)-len(p) != PrefixDigitsHidden || !prefixForm.MatchString(p)) {
			t.Fatalf("Prefix(%q) = %q", s, p)
		}
		if c := CountryOf(s); !iso.MatchString(c) {
			t.Fatalf("CountryOf(%q) = %q", s, c)
		}
		_ = TypeOf(s)
	})
}

// FuzzParseCountries: a list that parses holds distinct ISO codes, and
// joining and parsing it again gives it back.
func FuzzParseCountries(f *testing.F) {
	for _, s := range []string{"US,GB", " us , gb ,us", "none", "", "USA", "U\x00", ",,,", "*"} {
		f.Add(s)
	}
	code := regexp.MustCompile(`^[A-Z]{2}$`)
	f.Fuzz(func(t *testing.T, s string) {
		l, err := ParseCountries(s)
		if err != nil {
			return
		}
		seen := map[string]bool{}
		for _, c := range l {
			if !code.MatchString(c) || seen[c] {
				t.Fatalf("ParseCountries(%q) = %q", s, l)
			}
			seen[c] = true
		}
		if len(l) > 0 {
			again, err := ParseCountries(strings.Join(l, ","))
			if err != nil || strings.Join(again, ",") != strings.Join(l, ",") {
				t.Fatalf("ParseCountries(%q) = %q, then %q, %v", s, l, again, err)
			}
		}
	})
}

// FuzzParseCountryLimits: every limit that parses is a known country or *
// with a count from 0 to a billion.
func FuzzParseCountryLimits(f *testing.F) {
	for _, s := range []string{CountrySegmentsDefault, "none", "GB=0", "US=1,US=2", "=", "*=-1", "us = 7 "} {
		f.Add(s)
	}
	f.Fuzz(func(t *testing.T, s string) {
		m, err := ParseCountryLimits(s)
		if err != nil {
			return
		}
		for k, v := range m {
			if (k != "*" && !regexp.MustCompile(`^[A-Z]{2}$`).MatchString(k)) || v < 0 || v > 1_000_000_000 {
				t.Fatalf("ParseCountryLimits(%q) = %v", s, m)
			}
		}
	})
}
