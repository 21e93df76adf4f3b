package phone

import (
	"fmt"
	"math/rand/v2"
	"testing"

	"github.com/nyaruka/phonenumbers"
)

// TestNumberType: numberType answers what phonenumbers.GetNumberType does on
// the example numbers of every type of every region and non-geographic
// code, on variants of them (a digit fewer, more or changed), and on random
// numbers of every country code, NANP ones most.
func TestNumberType(t *testing.T) {
	types := []phonenumbers.PhoneNumberType{phonenumbers.FIXED_LINE, phonenumbers.MOBILE, phonenumbers.TOLL_FREE,
		phonenumbers.PREMIUM_RATE, phonenumbers.SHARED_COST, phonenumbers.VOIP, phonenumbers.PERSONAL_NUMBER,
		phonenumbers.PAGER, phonenumbers.UAN, phonenumbers.VOICEMAIL}
	var in []string
	add := func(ex *phonenumbers.PhoneNumber) {
		if ex == nil {
			return
		}
		e := phonenumbers.Format(ex, phonenumbers.E164)
		last := e[len(e)-1]
		in = append(in, e, e[:len(e)-1], e+"5", e[:len(e)-1]+string('0'+(last-'0'+1)%10))
	}
	for region := range phonenumbers.GetSupportedRegions() {
		for _, typ := range types {
			add(phonenumbers.GetExampleNumberForType(region, typ))
		}
	}
	for cc := range phonenumbers.GetSupportedGlobalNetworkCallingCodes() {
		add(phonenumbers.GetExampleNumberForNonGeoEntity(cc))
	}
	rng := rand.New(rand.NewPCG(3, 4))
	for range 30000 {
		in = append(in, fmt.Sprintf("+1%d%09d", 2+rng.IntN(8), rng.IntN(1e9)))
	}
	for cc := range phonenumbers.GetSupportedCallingCodes() {
		for range 50 {
			in = append(in, fmt.Sprintf("+%d%d", cc, rng.IntN(1e9)+rng.IntN(10)*1e9))
		}
	}
	counts := map[phonenumbers.PhoneNumberType]int{}
	for _, s := range in {
		num, err := phonenumbers.Parse(s, "")
		if err != nil {
			continue
		}
		want := phonenumbers.GetNumberType(num)
		counts[want]++
		if got := numberType(num); got != want {
			t.Errorf("%s: numberType %v, GetNumberType %v", Mask(s), got, want)
		}
	}
	for _, typ := range append(types, phonenumbers.UNKNOWN, phonenumbers.FIXED_LINE_OR_MOBILE) {
		if counts[typ] == 0 {
			t.Errorf("no number of type %v checked", typ)
		}
	}
}
