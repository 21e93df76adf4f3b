package fraud

import (
	"errors"
	"fmt"
	"regexp"
	"slices"
	"strconv"
	"strings"
	"time"

	"github.com/nyaruka/phonenumbers"

	"github.com/sbagenthub/twilio-worker/ratelimit"
)

// PrefixDigitsHidden is how many trailing digits a destination prefix leaves
// out: +14155551234 is in prefix +1415555.
const PrefixDigitsHidden = 4

// Prefix returns the destination prefix of an E.164 number: the number
// without its last four digits (+14155551234 → +1415555). A number too short
// to have one, or not in E.164 form, gives "".
func Prefix(number string) string {
	if !e164Pattern.MatchString(number) {
		return ""
	}
	return number[:len(number)-PrefixDigitsHidden]
}

var (
	e164Pattern    = regexp.MustCompile(`^\+[1-9][0-9]{6,14}$`)
	countryPattern = regexp.MustCompile(`^[A-Z]{2}$`)
)

// ParsePrefix reads a number or a prefix of one, as an operator writes it
// for the safe list or an unblock: "+1 415 555", "+1415555", "+1 (415)
// 555-1234". It returns "+" and the digits. Only spaces, dashes, dots and
// parentheses may separate the digits; the + and the country code are
// required, and there are at most 15 digits (E.164's longest).
func ParsePrefix(s string) (string, error) {
	s = strings.TrimSpace(s)
	if s == "" {
		return "", errors.New("is empty")
	}
	if !strings.HasPrefix(s, "+") {
		return "", errors.New("must start with + and the country code, e.g. +1415555")
	}
	var b strings.Builder
	b.WriteByte('+')
	for _, r := range s[1:] {
		switch {
		case r >= '0' && r <= '9':
			b.WriteRune(r)
		case r == ' ' || r == '-' || r == '.' || r == '(' || r == ')':
		default:
			return "", errors.New("may hold only digits, spaces, dashes, dots and parentheses after the +")
		}
	}
	p := b.String()
	switch {
	case len(p) == 1:
		return "", errors.New("has no digits")
	case p[1] == '0':
		return "", errors.New("country codes do not start with 0")
	case len(p) > 16:
		return "", errors.New("has more than 15 digits")
	}
	return p, nil
}

// CountryOf returns the ISO 3166 region of an E.164 number ("US", "GB"),
// "001" for numbers of no country (+800), or "" when it does not parse.
func CountryOf(number string) string {
	num, err := phonenumbers.Parse(number, "")
	if err != nil {
		return ""
	}
	return regionOf(num)
}

// regionOf is phone.Number.Region for a parsed number: its region, or the
// main region of its country code for a number libphonenumber does not
// know as valid (Twilio's test numbers).
func regionOf(num *phonenumbers.PhoneNumber) string {
	if r := phonenumbers.GetRegionCodeForNumber(num); r != "" && r != phonenumbers.UNKNOWN_REGION {
		return r
	}
	if r := phonenumbers.GetRegionCodeForCountryCode(int(num.GetCountryCode())); r != phonenumbers.UNKNOWN_REGION {
		return r
	}
	return ""
}

// ParseCountries reads a comma-separated list of ISO 3166 codes
// ("US, gb"). "none" (or "-") is the empty list, given on purpose: it is
// not nil. An empty string is nil (unset).
func ParseCountries(s string) ([]string, error) {
	s = strings.TrimSpace(s)
	if s == "" {
		return nil, nil
	}
	if l := strings.ToLower(s); l == "none" || l == "-" {
		return []string{}, nil
	}
	out := []string{}
	for _, item := range strings.Split(s, ",") {
		c := strings.ToUpper(strings.TrimSpace(item))
		if c == "" {
			continue
		}
		if !countryPattern.MatchString(c) || phonenumbers.GetCountryCodeForRegion(c) == 0 {
			return nil, fmt.Errorf("%s is not an ISO 3166 country code with phone numbers, such as US or GB", quote(item))
		}
		if !slices.Contains(out, c) {
			out = append(out, c)
		}
	}
	return out, nil
}

// ParseCountryLimits reads COUNTRY_DAILY_SEGMENTS: "US=100000,GB=5000,*=1000",
// segments per country per UTC day; "*" is every other country, and 0 means
// no limit. "none" is no limit anywhere.
func ParseCountryLimits(s string) (map[string]int, error) {
	s = strings.TrimSpace(s)
	if s == "" {
		return nil, nil
	}
	out := map[string]int{}
	if strings.EqualFold(s, "none") {
		return out, nil
	}
	for _, item := range strings.Split(s, ",") {
		item = strings.TrimSpace(item)
		if item == "" {
			continue
		}
		k, v, ok := strings.Cut(item, "=")
		if !ok {
			return nil, fmt.Errorf("%s: write COUNTRY=SEGMENTS, e.g. GB=5000 (or *=1000 for the rest)", quote(item))
		}
		k = strings.ToUpper(strings.TrimSpace(k))
		if k != "*" && (!countryPattern.MatchString(k) || phonenumbers.GetCountryCodeForRegion(k) == 0) {
			return nil, fmt.Errorf("%s: %s is not an ISO 3166 country code or *", quote(item), quote(k))
		}
		n, err := strconv.Atoi(strings.TrimSpace(v))
		if err != nil || n < 0 || n > 1_000_000_000 {
			return nil, fmt.Errorf("%s: the segments must be a whole number from 0 (no limit) to 1000000000", quote(item))
		}
		out[k] = n
	}
	return out, nil
}

// NumberType is a kind of number the guard refuses unless allowed.
type NumberType string

// The refusable number types: the callee (or the network) pays the
// operator of the range, the shape toll fraud and SMS pumping take.
const (
	PremiumRate NumberType = "premium-rate"
	SharedCost  NumberType = "shared-cost"
)

// NumberTypes lists the refusable types.
var NumberTypes = []NumberType{PremiumRate, SharedCost}

// ParseNumberTypes reads ALLOW_NUMBER_TYPES: a comma-separated list of
// premium-rate and shared-cost ("none" or empty: refuse both).
func ParseNumberTypes(s string) ([]NumberType, error) {
	s = strings.TrimSpace(s)
	out := []NumberType{}
	if s == "" || strings.EqualFold(s, "none") {
		return out, nil
	}
	for _, item := range strings.Split(s, ",") {
		t := NumberType(strings.ToLower(strings.TrimSpace(item)))
		if t == "" {
			continue
		}
		if !slices.Contains(NumberTypes, t) {
			return nil, fmt.Errorf("%s: the types are premium-rate and shared-cost", quote(item))
		}
		if !slices.Contains(out, t) {
			out = append(out, t)
		}
	}
	return out, nil
}

// TypeOf returns the refusable type of an E.164 number, or "" when it is
// none of them (or does not parse).
func TypeOf(number string) NumberType {
	num, err := phonenumbers.Parse(number, "")
	if err != nil {
		return ""
	}
	return typeOf(num)
}

func typeOf(num *phonenumbers.PhoneNumber) NumberType {
	switch phonenumbers.GetNumberType(num) {
	case phonenumbers.PREMIUM_RATE:
		return PremiumRate
	case phonenumbers.SHARED_COST:
		return SharedCost
	}
	return ""
}

// quote shortens s for an error message and makes control characters
// visible.
func quote(s string) string {
	r := []rune(s)
	if len(r) > 40 {
		s = string(r[:40]) + "…"
	}
	return strconv.Quote(s)
}

// Variables are the guard's settings, with their defaults as the worker's
// --help shows them.
var Variables = [][3]string{
	{"ALLOWED_COUNTRIES", "", "only these countries may be texted and called, ISO codes such as US,GB (unset: all but BLOCKED_COUNTRIES)"},
	{"BLOCKED_COUNTRIES", strings.Join(BlockedDefault, ","), "countries refused (high risk for SMS pumping); none: no country"},
	{"ALLOW_NUMBER_TYPES", "", "number types not refused: premium-rate, shared-cost (unset: both refused)"},
	{"PREFIX_RATE", PrefixRateDefault, "agent messages and calls per destination prefix (the number without its last four digits)"},
	{"COUNTRY_DAILY_SEGMENTS", CountrySegmentsDefault, "agent SMS segments per country per UTC day; * is every other country, 0 or none: no limit"},
	{"FRAUD_BLOCK_FOR", "12h", "how long a prefix over a limit is blocked"},
}

// ParseConfig reads the guard's variables through get (unset is ""), each
// problem naming its variable.
func ParseConfig(get func(string) string) (Config, error) {
	var c Config
	var errs []error
	bad := func(name string, err error) { errs = append(errs, fmt.Errorf("%s: %w", name, err)) }
	var err error
	if c.Allowed, err = ParseCountries(get("ALLOWED_COUNTRIES")); err != nil {
		bad("ALLOWED_COUNTRIES", err)
	}
	if c.Blocked, err = ParseCountries(get("BLOCKED_COUNTRIES")); err != nil {
		bad("BLOCKED_COUNTRIES", err)
	}
	if c.AllowTypes, err = ParseNumberTypes(get("ALLOW_NUMBER_TYPES")); err != nil {
		bad("ALLOW_NUMBER_TYPES", err)
	}
	if v := strings.TrimSpace(get("PREFIX_RATE")); v != "" {
		if c.PrefixRate, err = ratelimit.ParseRate(v); err != nil {
			bad("PREFIX_RATE", err)
		}
	}
	if c.CountrySegments, err = ParseCountryLimits(get("COUNTRY_DAILY_SEGMENTS")); err != nil {
		bad("COUNTRY_DAILY_SEGMENTS", err)
	}
	if v := strings.TrimSpace(get("FRAUD_BLOCK_FOR")); v != "" {
		if c.BlockFor, err = time.ParseDuration(v); err != nil {
			bad("FRAUD_BLOCK_FOR", errors.New("must be a duration such as 12h"))
		}
	}
	if len(errs) == 0 {
		if err := c.WithDefaults().Validate(); err != nil {
			errs = append(errs, err)
		}
	}
	return c, errors.Join(errs...)
}
