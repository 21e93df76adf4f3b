package phone_test

import (
	"errors"
	"slices"
	"strings"
	"testing"
	"unicode/utf8"

	"github.com/sbagenthub/twilio-worker/phone"
)

var reasons = []error{
	phone.ErrEmpty, phone.ErrLetters, phone.ErrCharacters, phone.ErrTooShort, phone.ErrTooLong,
	phone.ErrUnknownCountryCode, phone.ErrNoRegion, phone.ErrInvalid,
}

func FuzzParse(f *testing.F) {
	for _, s := range testNumbers {
		f.Add(s, "")
	}
	for _, s := range []string{
		"+1 (415) 555-1234", "+44 20 7123 4567", "+49 30 12345678", "0044 20 7123 4567",
		"(415) 555-1234", "020 7123 4567", "1-800-FLOWERS", "+999 1234567", "+80 12345",
		"+1 415 555", "", "+", "00", "+390612345678", "+80012345678", "011 44 20 7123 4567",
	} {
		f.Add(s, "US")
		f.Add(s, "GB")
	}
	f.Fuzz(func(t *testing.T, in, region string) {
		n, err := phone.Parse(in, region)
		if err != nil {
			// The error is one of the fixed sentences, so it cannot
			// contain the input; or it is about the region.
			var pe *phone.ParseError
			switch {
			case errors.As(err, &pe):
				if !slices.Contains(reasons, pe.Reason) || err.Error() != "phone number "+pe.Reason.Error() {
					t.Errorf("Parse(%q, %q) error %q, want one of the package's reasons", in, region, err)
				}
			case !strings.HasPrefix(err.Error(), "phone: unknown default region "):
				t.Errorf("Parse(%q, %q) error %q is neither a *ParseError nor about the region", in, region, err)
			}
			return
		}
		s := string(n)
		if len(s) < 2 || s[0] != '+' || onlyDigits(s[1:]) != s[1:] || len(s) > 16 {
			t.Fatalf("Parse(%q, %q) = %q, not E.164", in, region, n)
		}
		again, err := phone.Parse(s, "")
		if err != nil || again != n {
			t.Errorf("Parse(%q) = %q, %v; want the number back (from Parse(%q, %q))", s, again, err, in, region)
		}
		m := n.Masked()
		if strings.Contains(m, s[1:]) || !strings.Contains(m, "***") {
			t.Errorf("Number(%q).Masked() = %q shows the whole number", n, m)
		}
		if got := n.LogValue().String(); got != m {
			t.Errorf("Number(%q).LogValue() = %q, want %q", n, got, m)
		}
		if len(n.TimeZones()) == 0 {
			t.Errorf("Number(%q).TimeZones() is empty", n)
		}
		if n.Region() == "" {
			t.Errorf("Number(%q).Region() is empty", n)
		}
	})
}

func FuzzMask(f *testing.F) {
	for _, s := range []string{"", "12345", "+14155551234", "+44 20 7123 4567", "garbage-in"} {
		f.Add(s)
	}
	f.Fuzz(func(t *testing.T, in string) {
		m := phone.Mask(in)
		if !strings.Contains(m, "***") {
			t.Fatalf("Mask(%q) = %q, no ***", in, m)
		}
		n := utf8.RuneCountInString(strings.TrimSpace(in))
		shown := utf8.RuneCountInString(m) - len("***")
		if n >= 6 && shown > n/2 {
			t.Errorf("Mask(%q) = %q shows %d of %d characters, want at most half", in, m, shown, n)
		}
	})
}

func onlyDigits(s string) string {
	var b strings.Builder
	for _, r := range s {
		if r >= '0' && r <= '9' {
			b.WriteRune(r)
		}
	}
	return b.String()
}
