package phone

import (
	"regexp"
	"strings"
	"unicode"
	"unicode/utf8"
)

// numberLike matches what may be a phone number in free text: seven or more
// digits, possibly with +, spaces, dashes, dots and parentheses.
var (
	numberLike = regexp.MustCompile(`\+?\d[\d \-().]{5,}\d`)
	isoDate    = regexp.MustCompile(`^\d{4}-\d{2}-\d{2}`)
)

// MaskText hides phone numbers in free text such as a task id
// ("c1:+14155558103" becomes "c1:+141***8103") or an error message: a run of
// at least seven digits (with the usual separators) that is not part of a
// longer word, such as a SID, and is not a date, becomes [Mask] of itself.
// Six-digit verification codes are left alone.
func MaskText(s string) string {
	idx := numberLike.FindAllStringIndex(s, -1)
	if idx == nil {
		return s
	}
	var b strings.Builder
	last := 0
	for _, m := range idx {
		start, end := m[0], m[1]
		match := s[start:end]
		if wordChar(lastRune(s[:start])) || wordChar(firstRune(s[end:])) || isoDate.MatchString(match) || countDigits(match) < 7 {
			continue
		}
		b.WriteString(s[last:start])
		b.WriteString(Mask(match))
		last = end
	}
	b.WriteString(s[last:])
	return b.String()
}

func wordChar(r rune) bool { return r == '_' || unicode.IsLetter(r) || unicode.IsDigit(r) }

func firstRune(s string) rune {
	r, _ := utf8.DecodeRuneInString(s)
	return r
}

func lastRune(s string) rune {
	r, _ := utf8.DecodeLastRuneInString(s)
	return r
}

func countDigits(s string) int {
	n := 0
	for _, r := range s {
		if r >= '0' && r <= '9' {
			n++
		}
	}
	return n
}
