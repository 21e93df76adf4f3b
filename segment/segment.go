// Package segment counts the SMS segments a message body occupies, with the
// rules carriers and Twilio apply: GSM-7 when every character is in the GSM
// 03.38 alphabet (160 septets in one segment, 153 per part when concatenated,
// extension characters taking two septets), UCS-2 otherwise (70 UTF-16 code
// units in one segment, 67 per part). A part never splits an escape sequence
// or a surrogate pair.
package segment

import "unicode/utf8"

// Encoding names the character encoding a body is sent in.
type Encoding string

const (
	// GSM7 is the GSM 03.38 7-bit default alphabet.
	GSM7 Encoding = "GSM-7"
	// UCS2 is the 16-bit encoding used when any character is outside GSM-7.
	UCS2 Encoding = "UCS-2"
)

// MaxChars is Twilio's limit on a message body, in characters (error 21617).
const MaxChars = 1600

const (
	gsmSingle = 160
	gsmPart   = 153
	ucsSingle = 70
	ucsPart   = 67
)

// gsmBasic is the GSM 03.38 basic character set (without the escape itself).
const gsmBasic = "@£$¥èéùìòÇ\nØø\rÅåΔ_ΦΓΛΩΠΨΣΘΞÆæßÉ !\"#¤%&'()*+,-./0123456789:;<=>?" +
	"¡ABCDEFGHIJKLMNOPQRSTUVWXYZÄÖÑÜ§¿abcdefghijklmnopqrstuvwxyzäöñüà"

// gsmExtension holds the characters sent as an escape plus one septet.
const gsmExtension = "\f^{}\\[~]|€"

var basic, extension = runeSet(gsmBasic), runeSet(gsmExtension)

func runeSet(s string) map[rune]bool {
	m := make(map[rune]bool, utf8.RuneCountInString(s))
	for _, r := range s {
		m[r] = true
	}
	return m
}

// Info describes how a body is sent.
type Info struct {
	Encoding Encoding
	Segments int // 0 for an empty body
	Chars    int // characters (runes), as Twilio's 1600-character limit counts them
}

// Count returns the number of segments body occupies.
func Count(body string) int { return Analyze(body).Segments }

// Analyze returns the encoding, segment count and character count of body.
func Analyze(body string) Info {
	chars := utf8.RuneCountInString(body)
	if body == "" {
		return Info{Encoding: GSM7}
	}
	if isGSM(body) {
		return Info{Encoding: GSM7, Chars: chars, Segments: split(body, gsmSingle, gsmPart, gsmWidth)}
	}
	return Info{Encoding: UCS2, Chars: chars, Segments: split(body, ucsSingle, ucsPart, ucsWidth)}
}

func isGSM(body string) bool {
	for _, r := range body {
		if !basic[r] && !extension[r] {
			return false
		}
	}
	return true
}

func gsmWidth(r rune) int {
	if extension[r] {
		return 2
	}
	return 1
}

func ucsWidth(r rune) int {
	if r > 0xFFFF {
		return 2 // a surrogate pair
	}
	return 1
}

// split counts parts: everything in one part when it fits single, otherwise
// greedy parts of at most part units that never cut a character in two.
func split(body string, single, part int, width func(rune) int) int {
	total := 0
	for _, r := range body {
		total += width(r)
	}
	if total <= single {
		return 1
	}
	parts, used := 1, 0
	for _, r := range body {
		w := width(r)
		if used+w > part {
			parts++
			used = 0
		}
		used += w
	}
	return parts
}
