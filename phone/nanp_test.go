package phone

import (
	"fmt"
	"math/rand/v2"
	"testing"

	"github.com/nyaruka/phonenumbers"
)

// TestParseNANP: parseNANP builds what phonenumbers.Parse returns for every
// input it takes (+1 and ten digits, the first 2-9) and takes no other.
func TestParseNANP(t *testing.T) {
	rng := rand.New(rand.NewPCG(1, 2))
	in := []string{"+12000000000", "+19999999999", "+14155551234", "+15005550006", "+18005550199", "+19002345678"}
	for range 20000 {
		in = append(in, fmt.Sprintf("+1%d%09d", 2+rng.IntN(8), rng.IntN(1e9)))
	}
	for _, s := range in {
		got := parseNANP(s)
		want, err := phonenumbers.Parse(s, "")
		if got == nil || err != nil {
			t.Fatalf("%s: parseNANP %v, phonenumbers.Parse error %v", Mask(s), got, err)
		}
		if got.GetCountryCode() != want.GetCountryCode() || got.GetNationalNumber() != want.GetNationalNumber() ||
			got.GetExtension() != want.GetExtension() || got.GetItalianLeadingZero() != want.GetItalianLeadingZero() ||
			got.GetNumberOfLeadingZeros() != want.GetNumberOfLeadingZeros() || got.GetRawInput() != want.GetRawInput() ||
			got.GetCountryCodeSource() != want.GetCountryCodeSource() ||
			got.GetPreferredDomesticCarrierCode() != want.GetPreferredDomesticCarrierCode() {
			t.Fatalf("%s: parseNANP %v, phonenumbers.Parse %v", Mask(s), got, want)
		}
		if phonenumbers.GetNumberType(got) != phonenumbers.GetNumberType(want) || phonenumbers.Format(got, phonenumbers.E164) != s {
			t.Fatalf("%s: type or E.164 form differ", Mask(s))
		}
	}
	for _, s := range []string{"+1415555123", "+141555512345", "+11415555123", "+10415555123", "+44207123456", "14155551234", "+1415555123x"} {
		if parseNANP(s) != nil {
			t.Errorf("parseNANP(%q) took it", Mask(s))
		}
	}
}
