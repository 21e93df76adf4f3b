package phone_test

import (
	"testing"

	"github.com/nyaruka/phonenumbers"

	"github.com/sbagenthub/twilio-worker/phone"
)

// TestValidityIsTypeKnown: ParseInfo decides validity by asking
// libphonenumber for the number's type (UNKNOWN: invalid) instead of calling
// IsValidNumber as well. The two agree on the example numbers of every type
// of every region in the metadata and on variants of them one digit shorter,
// longer or changed, valid or not.
func TestValidityIsTypeKnown(t *testing.T) {
	types := []phonenumbers.PhoneNumberType{phonenumbers.FIXED_LINE, phonenumbers.MOBILE, phonenumbers.TOLL_FREE,
		phonenumbers.PREMIUM_RATE, phonenumbers.SHARED_COST, phonenumbers.VOIP, phonenumbers.PERSONAL_NUMBER,
		phonenumbers.PAGER, phonenumbers.UAN, phonenumbers.VOICEMAIL}
	seen, valid, invalid := 0, 0, 0
	check := func(e164 string) {
		num, err := phonenumbers.Parse(e164, "")
		if err != nil {
			return
		}
		seen++
		isValid := phonenumbers.IsValidNumber(num)
		if isValid {
			valid++
		} else {
			invalid++
		}
		if known := phonenumbers.GetNumberType(num) != phonenumbers.UNKNOWN; known != isValid {
			t.Errorf("%s: IsValidNumber %v, GetNumberType known %v", phone.Mask(e164), isValid, known)
		}
	}
	for region := range phonenumbers.GetSupportedRegions() {
		for _, typ := range types {
			ex := phonenumbers.GetExampleNumberForType(region, typ)
			if ex == nil {
				continue
			}
			e164 := phonenumbers.Format(ex, phonenumbers.E164)
			check(e164)
			check(e164[:len(e164)-1])
			check(e164 + "5")
			last := e164[len(e164)-1]
			check(e164[:len(e164)-1] + string('0'+(last-'0'+1)%10))
			if len(e164) > 4 {
				check(e164[:3] + "0" + e164[4:])
			}
		}
	}
	if seen < 1000 || valid == 0 || invalid == 0 {
		t.Fatalf("checked %d numbers (%d valid, %d invalid): the metadata gave too few", seen, valid, invalid)
	}
}

// TestParseInfo: ParseInfo returns Parse's number and error, the type
// libphonenumber gives the number and Number.Region's region.
func TestParseInfo(t *testing.T) {
	inputs := append([]string{
		"+1 (415) 555-1234", "+44 20 7123 4567", "+44 909 876 5432", "+44 845 464 0000", "+1 800 555 0199",
		"+15005550006", "+447700900123", "+49 30 12345678", "+800 1234 5678", "(415) 555-1234", "+1 555 555 5555",
	}, testNumbers...)
	for _, in := range inputs {
		info, err := phone.ParseInfo(in, "US")
		n, perr := phone.Parse(in, "US")
		if info.Number() != n || (err == nil) != (perr == nil) || (err != nil && err.Error() != perr.Error()) {
			t.Errorf("ParseInfo(%q) = %q, %v; Parse = %q, %v", phone.Mask(in), info.Number(), err, n, perr)
			continue
		}
		if err != nil {
			if info != (phone.Info{}) {
				t.Errorf("ParseInfo(%q) refused it but returned a number", phone.Mask(in))
			}
			continue
		}
		num, err := phonenumbers.Parse(n.String(), "")
		if err != nil {
			t.Fatalf("phonenumbers.Parse(%q): %v", n.Masked(), err)
		}
		want := map[phonenumbers.PhoneNumberType]phone.Type{
			phonenumbers.PREMIUM_RATE: phone.TypePremiumRate, phonenumbers.SHARED_COST: phone.TypeSharedCost,
			phonenumbers.TOLL_FREE: phone.TypeTollFree, phonenumbers.MOBILE: phone.TypeMobile,
			phonenumbers.FIXED_LINE: phone.TypeFixedLine, phonenumbers.FIXED_LINE_OR_MOBILE: phone.TypeFixedLineOrMobile,
			phonenumbers.VOIP: phone.TypeVoIP, phonenumbers.PERSONAL_NUMBER: phone.TypePersonal,
			phonenumbers.PAGER: phone.TypePager, phonenumbers.UAN: phone.TypeUAN, phonenumbers.VOICEMAIL: phone.TypeVoicemail,
		}[phonenumbers.GetNumberType(num)]
		if info.Type() != want {
			t.Errorf("ParseInfo(%q).Type() = %q, want %q", n.Masked(), info.Type(), want)
		}
		if info.Region() != n.Region() || info.CountryCode() != int(num.GetCountryCode()) {
			t.Errorf("ParseInfo(%q): region %q, country code %d; want %q, %d", n.Masked(), info.Region(), info.CountryCode(), n.Region(), num.GetCountryCode())
		}
	}
	if got := (phone.Info{}); got.Region() != "" || got.CountryCode() != 0 || got.Number() != "" {
		t.Errorf("zero Info: %q, %q, %d", got.Number(), got.Region(), got.CountryCode())
	}
}
