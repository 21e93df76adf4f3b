// Package phone parses, validates and masks telephone numbers and tells which
// time zones a number is in. Every [Number] is in E.164 form (+14155551234);
// the only way to get one from outside input is [Parse].
//
// # What Parse accepts
//
// Parse takes a number written with a leading + (+1 (415) 555-1234,
// +44 20 7123 4567), with the 00 international prefix (0044 20 7123 4567),
// or, when the caller gives a default region such as "US" or "GB", in that
// region's national form ((415) 555-1234, 020 7123 4567; the region's own
// international prefix, like 011 in the US, works too). Between the digits it
// allows spaces, hyphens, dots, slashes and parentheses, nothing else: no
// letters (libphonenumber would turn 1-800-FLOWERS into digits; we refuse
// it), no extensions, no tel: prefix.
//
// # The validation rule
//
// A parsed number is accepted when its length is possible for its country
// (libphonenumber's IsPossibleNumberWithReason, which gives the "too short"
// and "too long" reasons) and it is valid for its region
// (libphonenumber's IsValidNumber, which also checks the leading digits, so
// +1 012 555 1234 or +1 555 555 5555 is refused).
//
// Twilio's test range +1 500 555 XXXX (the magic numbers +15005550001 to
// +15005550009 and the simulator's +15005551001 to +15005551006) is accepted
// explicitly as well. With the metadata of phonenumbers v1.8.1 IsValidNumber
// already accepts those (area code 500 is a personal-communications code)
// and the 555-01XX fictional numbers such as +14155551234 or +12025550123,
// but that is a fact of the metadata, not a promise, and the worker and its
// tests must keep working with the test numbers when the metadata changes.
//
// # Errors
//
// A refused input gives a [*ParseError] whose Reason is one of the Err…
// sentinels, so errors.Is(err, phone.ErrTooShort) works and err.Error()
// reads "phone number is too short". Errors never contain the input: it may
// be somebody's real number. Use [Mask] to log what was refused.
//
// # Logging
//
// [Number.LogValue] makes log/slog print the masked form (+1415***1234); use
// [Number.String] only where the full number is needed, such as the Twilio
// request itself.
package phone

import (
	"errors"
	"log/slog"
	"slices"
	"strconv"
	"strings"
	"unicode"

	"github.com/nyaruka/phonenumbers"
)

// Reasons a number is refused. They are the Reason of a [*ParseError] and
// read as the end of a sentence that starts with "phone number".
var (
	ErrEmpty              = errors.New("is empty")
	ErrLetters            = errors.New("contains letters")
	ErrCharacters         = errors.New("contains characters other than digits, spaces, ( ) - . / and a leading +")
	ErrTooShort           = errors.New("is too short")
	ErrTooLong            = errors.New("is too long")
	ErrUnknownCountryCode = errors.New("has an unknown country code")
	ErrNoRegion           = errors.New("is a national number without a country code; use +CC or configure a default region")
	ErrInvalid            = errors.New("is not a valid number for its region")
)

// ParseError is the error [Parse] returns for input it refuses. Reason is one
// of the Err… variables of this package. The input itself is deliberately
// not kept.
type ParseError struct {
	Reason error
}

func (e *ParseError) Error() string { return "phone number " + e.Reason.Error() }

// Unwrap returns the Reason, for errors.Is.
func (e *ParseError) Unwrap() error { return e.Reason }

// UnknownTimeZone is what [Number.TimeZones] returns when the number's
// country has no time zone, such as the global +800 numbers. It is CLDR's
// name for "unknown" and not an IANA zone: time.LoadLocation refuses it, so
// a caller that needs a location decides what to do without one.
const UnknownTimeZone = phonenumbers.UNKNOWN_TIMEZONE

const (
	// maxInputLen bounds the input before any parsing. A number written
	// with generous spacing is well under it.
	maxInputLen = 64
	// maxDigits is the longest number E.164 allows, country code included.
	maxDigits = 15
	// twilioTestPrefix starts Twilio's test numbers +1 500 555 XXXX.
	twilioTestPrefix = "+1500555"
)

// Number is a telephone number in E.164 form: a + and up to 15 digits,
// country code first. Get one from [Parse]; a Number converted from an
// unchecked string may not be valid.
type Number string

// Parse reads s as a telephone number and returns it in E.164 form. s may
// start with + or 00 and a country code; otherwise it is read as a national
// number of defaultRegion (an ISO 3166 code such as "US" or "GB"), and
// refused with [ErrNoRegion] when defaultRegion is empty. Surrounding spaces
// are ignored. See the package documentation for the rule that decides
// validity.
//
// A refused input gives a [*ParseError]; an unknown defaultRegion gives a
// plain error naming it, because that is the caller's configuration, not the
// input, at fault.
func Parse(s string, defaultRegion string) (Number, error) {
	in, err := ParseInfo(s, defaultRegion)
	return in.number, err
}

// Info is what [ParseInfo] learned about a valid number on the way: its
// E.164 form, its number type and its region. A caller that checks the
// country or the type after parsing (the fraud guard) asks Info instead of
// parsing the number again; libphonenumber's parsing and validation are
// most of the cost of a bulk submission. The zero Info is no number.
type Info struct {
	number Number
	typ    Type
	num    *phonenumbers.PhoneNumber
}

// Number returns the number in E.164 form, as [Parse] does.
func (in Info) Number() Number { return in.number }

// Type returns the number's type by libphonenumber's metadata
// (TypeUnknown for a Twilio test number the metadata does not know).
func (in Info) Type() Type { return in.typ }

// CountryCode returns the number's country calling code (1 for +1…), 0 for
// the zero Info.
func (in Info) CountryCode() int { return int(in.num.GetCountryCode()) }

// Region is [Number.Region] without parsing the number again. Where
// several regions share the country code (+1) it runs libphonenumber's
// validation per region: call it only when the region matters.
func (in Info) Region() string {
	if in.num == nil {
		return ""
	}
	return regionOf(in.num)
}

// Type is a number's type, libphonenumber's PhoneNumberType by name.
type Type string

// The number types.
const (
	TypeUnknown           Type = ""
	TypeFixedLine         Type = "fixed-line"
	TypeMobile            Type = "mobile"
	TypeFixedLineOrMobile Type = "fixed-line-or-mobile"
	TypeTollFree          Type = "toll-free"
	TypePremiumRate       Type = "premium-rate"
	TypeSharedCost        Type = "shared-cost"
	TypeVoIP              Type = "voip"
	TypePersonal          Type = "personal"
	TypePager             Type = "pager"
	TypeUAN               Type = "uan"
	TypeVoicemail         Type = "voicemail"
)

var typeNames = map[phonenumbers.PhoneNumberType]Type{
	phonenumbers.FIXED_LINE:           TypeFixedLine,
	phonenumbers.MOBILE:               TypeMobile,
	phonenumbers.FIXED_LINE_OR_MOBILE: TypeFixedLineOrMobile,
	phonenumbers.TOLL_FREE:            TypeTollFree,
	phonenumbers.PREMIUM_RATE:         TypePremiumRate,
	phonenumbers.SHARED_COST:          TypeSharedCost,
	phonenumbers.VOIP:                 TypeVoIP,
	phonenumbers.PERSONAL_NUMBER:      TypePersonal,
	phonenumbers.PAGER:                TypePager,
	phonenumbers.UAN:                  TypeUAN,
	phonenumbers.VOICEMAIL:            TypeVoicemail,
}

// ParseInfo is [Parse] that also returns what parsing learned about the
// number (its type, its region). It accepts and refuses exactly what Parse
// does, with the same errors, at the same cost.
func ParseInfo(s string, defaultRegion string) (Info, error) {
	s = strings.TrimSpace(s)
	if s == "" {
		return Info{}, &ParseError{ErrEmpty}
	}
	if len(s) > maxInputLen {
		return Info{}, &ParseError{ErrTooLong}
	}
	digits, plus, err := scan(s)
	if err != nil {
		return Info{}, err
	}
	switch {
	case plus:
	case strings.HasPrefix(digits, "00"):
		digits, plus = digits[2:], true
	case defaultRegion == "":
		return Info{}, &ParseError{ErrNoRegion}
	}
	if len(digits) > maxDigits {
		return Info{}, &ParseError{ErrTooLong}
	}

	var (
		in     = digits
		region = ""
	)
	if plus {
		in = "+" + digits
	} else {
		region = strings.ToUpper(defaultRegion)
		if phonenumbers.GetCountryCodeForRegion(region) == 0 {
			return Info{}, errors.New("phone: unknown default region " + quote(defaultRegion))
		}
	}
	num, err := phonenumbers.Parse(in, region)
	if err != nil {
		return Info{}, &ParseError{parseReason(err)}
	}
	switch phonenumbers.IsPossibleNumberWithReason(num) {
	case phonenumbers.IS_POSSIBLE:
	case phonenumbers.INVALID_COUNTRY_CODE:
		return Info{}, &ParseError{ErrUnknownCountryCode}
	case phonenumbers.TOO_SHORT, phonenumbers.IS_POSSIBLE_LOCAL_ONLY:
		// Local only: a subscriber number without its area code.
		return Info{}, &ParseError{ErrTooShort}
	case phonenumbers.TOO_LONG:
		return Info{}, &ParseError{ErrTooLong}
	default: // INVALID_LENGTH: between the possible lengths, matching none.
		return Info{}, &ParseError{ErrInvalid}
	}
	e164 := phonenumbers.Format(num, phonenumbers.E164)
	// A number is valid (IsValidNumber) when its region's metadata gives
	// it a type: asking for the type is the same check, and keeps its
	// answer for the caller.
	typ := phonenumbers.GetNumberType(num)
	if typ == phonenumbers.UNKNOWN && !isTwilioTest(e164) {
		return Info{}, &ParseError{ErrInvalid}
	}
	return Info{number: Number(e164), typ: typeNames[typ], num: num}, nil
}

// scan checks the characters of s and returns its digits and whether it
// starts with +.
func scan(s string) (digits string, plus bool, err error) {
	var b strings.Builder
	b.Grow(len(s))
	var bad error
	for i, r := range s {
		switch {
		case r >= '0' && r <= '9':
			b.WriteRune(r)
		case r == '+' && i == 0:
			plus = true
		case unicode.IsSpace(r), unicode.Is(unicode.Pd, r), r == '(', r == ')', r == '.', r == '/':
		case unicode.IsLetter(r):
			// Letters win over other characters: "tel:+1…" or "ext. 5"
			// is better explained by the letters than by the colon.
			return "", false, &ParseError{ErrLetters}
		default:
			bad = ErrCharacters
		}
	}
	if bad != nil {
		return "", false, &ParseError{bad}
	}
	if b.Len() == 0 {
		return "", false, &ParseError{ErrTooShort}
	}
	return b.String(), plus, nil
}

// parseReason translates an error of phonenumbers.Parse.
func parseReason(err error) error {
	switch {
	case errors.Is(err, phonenumbers.ErrInvalidCountryCode):
		return ErrUnknownCountryCode
	case errors.Is(err, phonenumbers.ErrNotANumber),
		errors.Is(err, phonenumbers.ErrTooShortNSN),
		errors.Is(err, phonenumbers.ErrTooShortAfterIDD):
		// Not a number: after scan only too few digits are left to say so.
		return ErrTooShort
	case errors.Is(err, phonenumbers.ErrNumTooLong):
		return ErrTooLong
	default:
		return ErrInvalid
	}
}

func isTwilioTest(e164 string) bool {
	return len(e164) == 12 && strings.HasPrefix(e164, twilioTestPrefix)
}

// String returns the number in E.164 form: the full number.
func (n Number) String() string { return string(n) }

// LogValue implements slog.LogValuer: logs show [Number.Masked], never the
// full number.
func (n Number) LogValue() slog.Value { return slog.StringValue(n.Masked()) }

// Masked returns the number for logs: the country code, up to three digits
// of the area code and the last four digits, with *** for the rest, such as
// +1415***1234 or +4420***4567. At least three digits are always hidden, so
// short numbers show less. A Number that does not parse is masked like
// [Mask] does.
func (n Number) Masked() string {
	num, err := phonenumbers.Parse(string(n), "")
	if err != nil {
		return Mask(string(n))
	}
	cc := "+" + strconv.Itoa(int(num.GetCountryCode()))
	nsn := phonenumbers.GetNationalSignificantNumber(num)
	if cc+nsn != string(n) {
		return Mask(string(n))
	}
	head := min(phonenumbers.GetLengthOfNationalDestinationCode(num), 3)
	tail := 4
	const hidden = 3
	for len(nsn)-head-tail < hidden && head > 0 {
		head--
	}
	for len(nsn)-head-tail < hidden && tail > 0 {
		tail--
	}
	return cc + nsn[:head] + "***" + nsn[len(nsn)-tail:]
}

// Region returns the ISO 3166 region of the number, such as "US" or "GB";
// "001" for global numbers that belong to no country (+800, +882), and ""
// when n does not parse.
func (n Number) Region() string {
	num, err := phonenumbers.Parse(string(n), "")
	if err != nil {
		return ""
	}
	return regionOf(num)
}

func regionOf(num *phonenumbers.PhoneNumber) string {
	if r := phonenumbers.GetRegionCodeForNumber(num); r != "" && r != phonenumbers.UNKNOWN_REGION {
		return r
	}
	// A test number libphonenumber does not know as valid: the main region
	// of its country code.
	if r := phonenumbers.GetRegionCodeForCountryCode(int(num.GetCountryCode())); r != phonenumbers.UNKNOWN_REGION {
		return r
	}
	return ""
}

// TimeZones returns the IANA time zones the number may be in, from the most
// specific prefix libphonenumber knows: one zone for +14155551234
// (America/Los_Angeles), every zone of the country when the prefix tells no
// more (+1 800 numbers get all the NANP zones). It is never empty: a number
// whose country has no zone, or a Number that does not parse, gives
// [UnknownTimeZone] alone. The slice is the caller's to keep or change.
func (n Number) TimeZones() []string {
	num, err := phonenumbers.Parse(string(n), "")
	if err != nil {
		return []string{UnknownTimeZone}
	}
	zones, err := phonenumbers.GetTimezonesForNumber(num)
	if err != nil || len(zones) == 0 {
		return []string{UnknownTimeZone}
	}
	return slices.Clone(zones)
}

// Mask returns s shortened for a log line, for input that may not be a valid
// number, such as what [Parse] refused. At least half of s is hidden: it
// keeps at most the first four and the last two to four characters
// (depending on the length) around ***, and gives just *** for input shorter
// than six characters. Control characters are shown as ?.
func Mask(s string) string {
	r := []rune(strings.TrimSpace(s))
	n := len(r)
	if n < 6 {
		return "***"
	}
	tail := 2
	switch {
	case n >= 13:
		tail = 4
	case n >= 10:
		tail = 3
	}
	head := min(4, n-tail-(n+1)/2)
	var b strings.Builder
	b.WriteString(printable(r[:head]))
	b.WriteString("***")
	b.WriteString(printable(r[n-tail:]))
	return b.String()
}

func printable(r []rune) string {
	out := make([]rune, len(r))
	for i, c := range r {
		if !unicode.IsPrint(c) {
			c = '?'
		}
		out[i] = c
	}
	return string(out)
}

// quote is strconv.Quote for short strings and a masked form of long ones,
// so that a phone number pasted as the region does not end up in a log.
func quote(s string) string {
	if len(s) > 8 {
		return strconv.Quote(Mask(s))
	}
	return strconv.Quote(s)
}
