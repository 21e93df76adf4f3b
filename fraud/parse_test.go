package fraud

import (
	"strings"
	"testing"

	"github.com/sbagenthub/twilio-worker/phone"
)

func TestPrefix(t *testing.T) {
	for _, c := range []struct{ in, want string }{
		{"+14155551234", "+1415555"},
		{"+442071838750", "+44207183"},
		{"+4930123456", "+493012"},
		{"+1415", ""},
		{"14155551234", ""},
		{"+1415555123a", ""},
	} {
		if got := Prefix(c.in); got != c.want {
			t.Errorf("Prefix(%q) = %q, want %q", c.in, got, c.want)
		}
	}
}

func TestParsePrefix(t *testing.T) {
	for _, c := range []struct{ in, want string }{
		{"+1415555", "+1415555"},
		{" +1 (415) 555-1234 ", "+14155551234"},
		{"+44.20", "+4420"},
		{"1415555", ""},
		{"+", ""},
		{"+0123", ""},
		{"+1415x", ""},
		{"+1234567890123456", ""},
	} {
		got, err := ParsePrefix(c.in)
		if (err != nil) != (c.want == "") || got != c.want {
			t.Errorf("ParsePrefix(%q) = %q, %v; want %q", c.in, got, err, c.want)
		}
	}
}

func TestCountryAndType(t *testing.T) {
	for _, c := range []struct {
		in      string
		country string
		typ     NumberType
	}{
		{"+14155551234", "US", ""},
		{"+447400123456", "GB", ""},
		{"+4915112345678", "DE", ""},
		{"+19002345678", "US", PremiumRate},
		{"+449012345678", "GB", PremiumRate},
		{"+33884012345", "FR", SharedCost},
		{"+2348031234567", "NG", ""},
	} {
		n, err := phone.Parse(c.in, "")
		if err != nil {
			t.Fatalf("%s: %v", c.in, err)
		}
		if got := CountryOf(n.String()); got != c.country {
			t.Errorf("CountryOf(%s) = %q, want %q", c.in, got, c.country)
		}
		if got := TypeOf(n.String()); got != c.typ {
			t.Errorf("TypeOf(%s) = %q, want %q", c.in, got, c.typ)
		}
	}
}

func TestParseCountries(t *testing.T) {
	got, err := ParseCountries(" us, GB ,us")
	if err != nil || len(got) != 2 || got[0] != "US" || got[1] != "GB" {
		t.Fatalf("ParseCountries = %v, %v", got, err)
	}
	if got, err := ParseCountries("none"); err != nil || got == nil || len(got) != 0 {
		t.Fatalf("none = %#v, %v; want an empty, non-nil list", got, err)
	}
	if got, err := ParseCountries(""); err != nil || got != nil {
		t.Fatalf("unset = %#v, %v; want nil", got, err)
	}
	for _, bad := range []string{"USA", "XX", "U1", "US;GB"} {
		if _, err := ParseCountries(bad); err == nil {
			t.Errorf("ParseCountries(%q): no error", bad)
		}
	}
}

func TestParseCountryLimits(t *testing.T) {
	got, err := ParseCountryLimits(CountrySegmentsDefault)
	if err != nil || got["US"] != 100000 || got["GB"] != 5000 || got["*"] != 1000 {
		t.Fatalf("default = %v, %v", got, err)
	}
	for _, bad := range []string{"US", "US=x", "US=-1", "ZZ=5", "=5"} {
		if _, err := ParseCountryLimits(bad); err == nil {
			t.Errorf("ParseCountryLimits(%q): no error", bad)
		}
	}
}

func TestParseConfigNamesTheVariable(t *testing.T) {
	for name, val := range map[string]string{
		"ALLOWED_COUNTRIES": "USA", "BLOCKED_COUNTRIES": "1", "ALLOW_NUMBER_TYPES": "mobile",
		"PREFIX_RATE": "20", "COUNTRY_DAILY_SEGMENTS": "US", "FRAUD_BLOCK_FOR": "soon",
	} {
		_, err := ParseConfig(func(k string) string {
			if k == name {
				return val
			}
			return ""
		})
		if err == nil || !strings.Contains(err.Error(), name) {
			t.Errorf("%s=%s: error %v does not name it", name, val, err)
		}
	}
	_, err := ParseConfig(func(k string) string {
		if k == "ALLOWED_COUNTRIES" {
			return "NG"
		}
		return ""
	})
	if err == nil || !strings.Contains(err.Error(), "BLOCKED_COUNTRIES") {
		t.Errorf("ALLOWED_COUNTRIES=NG with the default block list: %v", err)
	}
}
