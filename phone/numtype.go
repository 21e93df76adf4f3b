package phone

import (
	"regexp"
	"sync"

	"github.com/nyaruka/phonenumbers"
)

// numberType is phonenumbers.GetNumberType(num), the test [ParseInfo]
// validates with, on the same metadata (phonenumbers.MetadataCollection,
// the collection libphonenumber loads) and by the same steps, with two costs
// left out: libphonenumber finds the region of a shared country code (+1)
// by running the type patterns of each candidate region, then runs them
// again for the type, where this keeps the first run's answer; and it
// concatenates and looks up each pattern's regexp at every test, where this
// compiles each once. TestNumberType holds it to GetNumberType.
func numberType(num *phonenumbers.PhoneNumber) phonenumbers.PhoneNumberType {
	cc := int(num.GetCountryCode())
	regions := phonenumbers.GetRegionCodesForCountryCode(cc)
	switch {
	case len(regions) == 0:
		return phonenumbers.UNKNOWN // no metadata: GetNumberType's answer too
	case len(regions) == 1:
		m := metaOf(cc, regions[0])
		if m == nil {
			return phonenumbers.UNKNOWN
		}
		return m.typeOf(phonenumbers.GetNationalSignificantNumber(num))
	}
	nsn := phonenumbers.GetNationalSignificantNumber(num)
	for _, r := range regions {
		m := metaOf(cc, r)
		if m == nil {
			continue // not in libphonenumber's metadata either: it would not pick it
		}
		if m.leading != nil {
			if m.leading.MatchString(nsn) {
				return m.typeOf(nsn)
			}
		} else if t := m.typeOf(nsn); t != phonenumbers.UNKNOWN {
			return t
		}
	}
	return phonenumbers.UNKNOWN // no region: GetNumberType finds no metadata
}

// regionMeta is a region's metadata with its patterns compiled.
type regionMeta struct {
	md                                                                                       *phonenumbers.PhoneMetadata
	leading                                                                                  *regexp.Regexp // leading digits, or nil
	general, premium, tollFree, shared, voip, personal, pager, uan, voicemail, fixed, mobile desc
}

// desc is a number type's description: the lengths and the pattern.
type desc struct {
	lengths []int32
	pattern *regexp.Regexp
}

func newDesc(d *phonenumbers.PhoneNumberDesc) desc {
	return desc{lengths: d.GetPossibleLength(), pattern: regexp.MustCompile("^(?:" + d.GetNationalNumberPattern() + ")$")}
}

// matches is libphonenumber's isNumberMatchingDesc.
func (d desc) matches(nsn string) bool {
	if len(d.lengths) > 0 {
		found := false
		for _, l := range d.lengths {
			if int32(len(nsn)) == l {
				found = true
				break
			}
		}
		if !found {
			return false
		}
	}
	return d.pattern.MatchString(nsn)
}

// typeOf is libphonenumber's getNumberTypeHelper.
func (m *regionMeta) typeOf(nsn string) phonenumbers.PhoneNumberType {
	switch {
	case !m.general.matches(nsn):
		return phonenumbers.UNKNOWN
	case m.premium.matches(nsn):
		return phonenumbers.PREMIUM_RATE
	case m.tollFree.matches(nsn):
		return phonenumbers.TOLL_FREE
	case m.shared.matches(nsn):
		return phonenumbers.SHARED_COST
	case m.voip.matches(nsn):
		return phonenumbers.VOIP
	case m.personal.matches(nsn):
		return phonenumbers.PERSONAL_NUMBER
	case m.pager.matches(nsn):
		return phonenumbers.PAGER
	case m.uan.matches(nsn):
		return phonenumbers.UAN
	case m.voicemail.matches(nsn):
		return phonenumbers.VOICEMAIL
	}
	same := m.md.GetSameMobileAndFixedLinePattern()
	if m.fixed.matches(nsn) {
		if same || m.mobile.matches(nsn) {
			return phonenumbers.FIXED_LINE_OR_MOBILE
		}
		return phonenumbers.FIXED_LINE
	}
	if !same && m.mobile.matches(nsn) {
		return phonenumbers.MOBILE
	}
	return phonenumbers.UNKNOWN
}

var (
	metaOnce  sync.Once
	metaByKey map[metaKey]*phonenumbers.PhoneMetadata
	compiled  sync.Map // metaKey → *regionMeta
)

// metaKey names a metadata entry as libphonenumber does: a region, or the
// country code of a non-geographic one (region "001").
type metaKey struct {
	region string
	cc     int
}

// metaOf is libphonenumber's getMetadataForRegionOrCallingCode, compiled.
func metaOf(cc int, region string) *regionMeta {
	k := metaKey{region: region}
	if region == phonenumbers.REGION_CODE_FOR_NON_GEO_ENTITY {
		k.cc = cc
	}
	if m, ok := compiled.Load(k); ok {
		return m.(*regionMeta)
	}
	metaOnce.Do(func() {
		metaByKey = map[metaKey]*phonenumbers.PhoneMetadata{}
		coll, err := phonenumbers.MetadataCollection()
		if err != nil {
			return // libphonenumber panics at init on the same error: not reached
		}
		for _, md := range coll.GetMetadata() {
			k := metaKey{region: md.GetId()}
			if k.region == phonenumbers.REGION_CODE_FOR_NON_GEO_ENTITY {
				k.cc = int(md.GetCountryCode())
			}
			metaByKey[k] = md
		}
	})
	md := metaByKey[k]
	if md == nil {
		return nil
	}
	m := &regionMeta{md: md,
		general: newDesc(md.GetGeneralDesc()), premium: newDesc(md.GetPremiumRate()), tollFree: newDesc(md.GetTollFree()),
		shared: newDesc(md.GetSharedCost()), voip: newDesc(md.GetVoip()), personal: newDesc(md.GetPersonalNumber()),
		pager: newDesc(md.GetPager()), uan: newDesc(md.GetUan()), voicemail: newDesc(md.GetVoicemail()),
		fixed: newDesc(md.GetFixedLine()), mobile: newDesc(md.GetMobile())}
	if ld := md.GetLeadingDigits(); ld != "" {
		m.leading = regexp.MustCompile("^(?:" + ld + ")")
	}
	got, _ := compiled.LoadOrStore(k, m)
	return got.(*regionMeta)
}
