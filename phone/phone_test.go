package phone_test

import (
	"errors"
	"slices"
	"strings"
	"testing"

	"github.com/sbagenthub/twilio-worker/phone"
)

// testNumbers are Twilio's magic numbers, the simulator's and the seed's
// examples: the worker must accept every one.
var testNumbers = []string{
	"+15005550001", "+15005550002", "+15005550003", "+15005550004", "+15005550005",
	"+15005550006", "+15005550007", "+15005550008", "+15005550009",
	"+15005551001", "+15005551002", "+15005551003", "+15005551004", "+15005551005", "+15005551006",
	"+14155551234", "+12025550123", "+18005550100", "+442071234567", "+493012345678",
}

func TestParseTestNumbers(t *testing.T) {
	for _, in := range testNumbers {
		t.Run(in, func(t *testing.T) {
			n, err := phone.Parse(in, "")
			if err != nil {
				t.Fatalf("Parse(%q) = %v, want it accepted", in, err)
			}
			if string(n) != in {
				t.Errorf("Parse(%q) = %q, want it unchanged", in, n)
			}
		})
	}
}

func TestParse(t *testing.T) {
	tests := []struct {
		name   string
		in     string
		region string
		want   phone.Number
	}{
		{"e164", "+14155551234", "", "+14155551234"},
		{"punctuated", "+1 (415) 555-1234", "", "+14155551234"},
		{"gb spaced", "+44 20 7123 4567", "", "+442071234567"},
		{"de spaced", "+49 30 12345678", "", "+493012345678"},
		{"surrounding space", "  +14155551234\t\n", "", "+14155551234"},
		{"dots and slash", "+1.415.555/1234", "", "+14155551234"},
		{"en dash", "+1 415–555–1234", "", "+14155551234"},
		{"no-break space", "+44\u00a020\u00a07123\u00a04567", "", "+442071234567"},
		{"00 prefix", "0044 20 7123 4567", "", "+442071234567"},
		{"00 prefix ignores region", "0044 20 7123 4567", "US", "+442071234567"},
		{"00 prefix nanp", "001 415 555 1234", "", "+14155551234"},
		{"us national", "(415) 555-1234", "US", "+14155551234"},
		{"us national with trunk 1", "1 415 555 1234", "US", "+14155551234"},
		{"us idd 011", "011 44 20 7123 4567", "US", "+442071234567"},
		{"gb national", "020 7123 4567", "GB", "+442071234567"},
		{"region lower case", "020 7123 4567", "gb", "+442071234567"},
		{"plus wins over region", "+49 30 12345678", "GB", "+493012345678"},
		{"twilio test via national", "(500) 555-0006", "US", "+15005550006"},
		{"toll free", "+1 800 555 0100", "", "+18005550100"},
		{"global +800", "+800 1234 5678", "", "+80012345678"},
		{"italy keeps leading zero", "+39 06 1234 5678", "", "+390612345678"},
	}
	for _, tt := range tests {
		t.Run(tt.name, func(t *testing.T) {
			got, err := phone.Parse(tt.in, tt.region)
			if err != nil {
				t.Fatalf("Parse(%q, %q) error: %v", tt.in, tt.region, err)
			}
			if got != tt.want {
				t.Errorf("Parse(%q, %q) = %q, want %q", tt.in, tt.region, got, tt.want)
			}
		})
	}
}

func TestParseRefuses(t *testing.T) {
	tests := []struct {
		name   string
		in     string
		region string
		want   error
	}{
		{"empty", "", "US", phone.ErrEmpty},
		{"spaces only", "   ", "US", phone.ErrEmpty},
		{"vanity letters", "1-800-FLOWERS", "US", phone.ErrLetters},
		{"vanity with plus", "+1 800 FLOWERS", "", phone.ErrLetters},
		{"extension", "+1 415 555 1234 ext 5", "", phone.ErrLetters},
		{"x extension", "+1 415 555 1234 x5", "", phone.ErrLetters},
		{"tel uri", "tel:+14155551234", "", phone.ErrLetters},
		{"words", "call me", "US", phone.ErrLetters},
		{"hash", "+1 415 555 1234#", "", phone.ErrCharacters},
		{"star", "*67 415 555 1234", "US", phone.ErrCharacters},
		{"comma", "+1,415,555,1234", "", phone.ErrCharacters},
		{"second plus", "++14155551234", "", phone.ErrCharacters},
		{"plus in the middle", "1+4155551234", "US", phone.ErrCharacters},
		{"no digits", "+", "", phone.ErrTooShort},
		{"punctuation only", "( ) -", "US", phone.ErrTooShort},
		{"country code only", "+1", "", phone.ErrTooShort},
		{"nanp too short", "+1 415 555", "", phone.ErrTooShort},
		{"gb too short", "+44 12", "", phone.ErrTooShort},
		{"de local only", "+49 30 1", "", phone.ErrTooShort},
		{"national too short", "555 12", "US", phone.ErrTooShort},
		{"nanp too long", "+1415555123456", "", phone.ErrTooLong},
		{"gb too long", "+4420712345678901", "", phone.ErrTooLong},
		{"more than 15 digits", "+1234567890123456", "", phone.ErrTooLong},
		{"huge input", "+1 " + strings.Repeat("5", 100), "", phone.ErrTooLong},
		{"unknown cc 999", "+999 1234567", "", phone.ErrUnknownCountryCode},
		{"unknown cc 80", "+80 12345", "", phone.ErrUnknownCountryCode},
		{"unknown cc after 00", "00999 1234567", "", phone.ErrUnknownCountryCode},
		{"national without region", "(415) 555-1234", "", phone.ErrNoRegion},
		{"gb national without region", "020 7123 4567", "", phone.ErrNoRegion},
		{"nanp area code 0", "+1 012 555 1234", "", phone.ErrInvalid},
		{"nanp area code 1", "+1 111 111 1111", "", phone.ErrInvalid},
		{"nanp area code 555", "+1 555 555 5555", "", phone.ErrInvalid},
		{"nanp area code 999", "+1 999 555 1234", "", phone.ErrInvalid},
		{"nanp exchange 0", "+1 415 055 1234", "", phone.ErrInvalid},
		{"italy wrong prefix", "+3912345678", "", phone.ErrInvalid},
		{"twilio range too long", "+1500555000612", "", phone.ErrTooLong},
	}
	for _, tt := range tests {
		t.Run(tt.name, func(t *testing.T) {
			got, err := phone.Parse(tt.in, tt.region)
			if err == nil {
				t.Fatalf("Parse(%q, %q) = %q, want error %q", tt.in, tt.region, got, tt.want)
			}
			if !errors.Is(err, tt.want) {
				t.Errorf("Parse(%q, %q) error = %q, want %q", tt.in, tt.region, err, tt.want)
			}
			var pe *phone.ParseError
			if !errors.As(err, &pe) {
				t.Errorf("Parse(%q, %q) error is %T, want *phone.ParseError", tt.in, tt.region, err)
			}
			if want := "phone number " + tt.want.Error(); err.Error() != want {
				t.Errorf("Parse(%q, %q) error reads %q, want %q", tt.in, tt.region, err, want)
			}
		})
	}
}

func TestParseUnknownRegion(t *testing.T) {
	_, err := phone.Parse("(415) 555-1234", "XX")
	if err == nil {
		t.Fatal("Parse with region XX succeeded, want an error")
	}
	var pe *phone.ParseError
	if errors.As(err, &pe) {
		t.Errorf("error %q is a *ParseError; an unknown region is the caller's fault, not the input's", err)
	}
	if !strings.Contains(err.Error(), `"XX"`) {
		t.Errorf("error %q does not name the region", err)
	}
	// A pasted phone number as the region is not logged whole.
	_, err = phone.Parse("(415) 555-1234", "+14155559876")
	if err == nil || strings.Contains(err.Error(), "14155559876") {
		t.Errorf("error %v, want one that hides the region", err)
	}
}

// TestParseErrorHidesInput makes sure no error contains the digits it was
// given: they may be somebody's phone number.
func TestParseErrorHidesInput(t *testing.T) {
	for _, in := range []string{
		"+1 415 555 1234 ext 5", "+1415555123456", "+99912345678", "4155551234", "+15555555555", "+1 415 555#",
	} {
		t.Run(in, func(t *testing.T) {
			_, err := phone.Parse(in, "")
			if err == nil {
				t.Fatalf("Parse(%q) succeeded, want an error", in)
			}
			if strings.Contains(err.Error(), "555") {
				t.Errorf("Parse(%q) error %q contains the input's digits", in, err)
			}
		})
	}
}

func TestMasked(t *testing.T) {
	tests := []struct {
		in   phone.Number
		want string
	}{
		{"+14155551234", "+1415***1234"},
		{"+15005550006", "+1500***0006"},
		{"+442071234567", "+4420***4567"},
		{"+493012345678", "+4930***5678"},
		{"+390612345678", "+3906***5678"},
		{"+80012345678", "+8001***5678"},
		{"+49301234", "+49***234"}, // short: hide at least three digits
		{"+2904123", "+290***3"},   // Saint Helena, 4-digit numbers
		{"", "***"},
		{"4155551234", "41***234"}, // not E.164: masked like Mask
		{"garbage-in", "ga***-in"},
	}
	for _, tt := range tests {
		t.Run(string(tt.in), func(t *testing.T) {
			if got := tt.in.Masked(); got != tt.want {
				t.Errorf("Number(%q).Masked() = %q, want %q", tt.in, got, tt.want)
			}
			if got := tt.in.LogValue().String(); got != tt.want {
				t.Errorf("Number(%q).LogValue() = %q, want %q", tt.in, got, tt.want)
			}
		})
	}
}

func TestMask(t *testing.T) {
	tests := []struct {
		in, want string
	}{
		{"", "***"},
		{"12345", "***"},
		{"123456", "1***56"},
		{"4155551234", "41***234"},
		{"+14155551234", "+14***234"},
		{"+44 20 7123 4567", "+44 ***4567"},
		{"  +14155551234  ", "+14***234"},
		{"+1415\n5551234", "+1***1234"},
		{"12\x01456789012", "12?***012"},
		{"+1 415 555 1234 ext 5", "+1 4***xt 5"},
		{strings.Repeat("9", 100), "9999***9999"},
	}
	for _, tt := range tests {
		t.Run(tt.in, func(t *testing.T) {
			if got := phone.Mask(tt.in); got != tt.want {
				t.Errorf("Mask(%q) = %q, want %q", tt.in, got, tt.want)
			}
		})
	}
}

func TestRegionAndTimeZones(t *testing.T) {
	tests := []struct {
		in        phone.Number
		region    string
		zones     []string
		zonesHave string // for long lists: one zone that must be among them
	}{
		{in: "+14155551234", region: "US", zones: []string{"America/Los_Angeles"}},
		{in: "+12025550123", region: "US", zones: []string{"America/New_York"}},
		{in: "+442071234567", region: "GB", zones: []string{"Europe/London"}},
		{in: "+493012345678", region: "DE", zones: []string{"Europe/Berlin"}},
		{in: "+14165551234", region: "CA", zones: []string{"America/Toronto"}},
		{in: "+18005550100", region: "US", zonesHave: "America/Chicago"},
		{in: "+15005550006", region: "US", zonesHave: "America/New_York"},
		{in: "+80012345678", region: "001", zones: []string{phone.UnknownTimeZone}},
		{in: "", region: "", zones: []string{phone.UnknownTimeZone}},
		{in: "nonsense", region: "", zones: []string{phone.UnknownTimeZone}},
	}
	for _, tt := range tests {
		t.Run(string(tt.in), func(t *testing.T) {
			if got := tt.in.Region(); got != tt.region {
				t.Errorf("Number(%q).Region() = %q, want %q", tt.in, got, tt.region)
			}
			got := tt.in.TimeZones()
			if len(got) == 0 {
				t.Fatalf("Number(%q).TimeZones() is empty", tt.in)
			}
			if tt.zones != nil && !slices.Equal(got, tt.zones) {
				t.Errorf("Number(%q).TimeZones() = %v, want %v", tt.in, got, tt.zones)
			}
			if tt.zonesHave != "" && !slices.Contains(got, tt.zonesHave) {
				t.Errorf("Number(%q).TimeZones() = %v, want it to include %q", tt.in, got, tt.zonesHave)
			}
		})
	}
}

// TestTimeZonesCopy: the slice returned belongs to the caller; changing it
// must not change what the next call returns.
func TestTimeZonesCopy(t *testing.T) {
	n := phone.Number("+14155551234")
	n.TimeZones()[0] = "Mars/Olympus_Mons"
	if got := n.TimeZones(); got[0] != "America/Los_Angeles" {
		t.Errorf("TimeZones() after changing an earlier result = %v", got)
	}
}
