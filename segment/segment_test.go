package segment

import (
	"strings"
	"testing"
)

func TestAnalyze(t *testing.T) {
	tests := []struct {
		name     string
		body     string
		encoding Encoding
		segments int
	}{
		{"empty", "", GSM7, 0},
		{"short gsm", "Your verification code is 123456", GSM7, 1},
		{"160 gsm fits one", strings.Repeat("a", 160), GSM7, 1},
		{"161 gsm needs two", strings.Repeat("a", 161), GSM7, 2},
		{"306 gsm is two parts of 153", strings.Repeat("a", 306), GSM7, 2},
		{"307 gsm is three", strings.Repeat("a", 307), GSM7, 3},
		{"extension chars count twice", strings.Repeat("€", 80), GSM7, 1},
		{"81 euros overflow", strings.Repeat("€", 81), GSM7, 2},
		{"escape not split across parts", strings.Repeat("a", 152) + "€" + strings.Repeat("a", 10), GSM7, 2},
		{"gsm accents", "Grüße aus Köln, ça va? ñ", UCS2, 1},
		{"70 ucs2 fits one", strings.Repeat("ж", 70), UCS2, 1},
		{"71 ucs2 needs two", strings.Repeat("ж", 71), UCS2, 2},
		{"134 ucs2 is two parts", strings.Repeat("ж", 134), UCS2, 2},
		{"135 ucs2 is three", strings.Repeat("ж", 135), UCS2, 3},
		{"emoji is a surrogate pair", strings.Repeat("😀", 35), UCS2, 1},
		{"36 emoji overflow", strings.Repeat("😀", 36), UCS2, 2},
		{"pair not split", strings.Repeat("ж", 66) + "😀" + strings.Repeat("ж", 66), UCS2, 3},
	}
	for _, tt := range tests {
		t.Run(tt.name, func(t *testing.T) {
			got := Analyze(tt.body)
			if got.Encoding != tt.encoding || got.Segments != tt.segments {
				t.Fatalf("Analyze(%q) = %+v, want %s with %d segments", tt.body, got, tt.encoding, tt.segments)
			}
		})
	}
}

func TestGSMCharacters(t *testing.T) {
	// "ç" lower-case is not in GSM-7 (only "Ç"), so it forces UCS-2.
	if got := Analyze("ç").Encoding; got != UCS2 {
		t.Fatalf("ç: %s, want UCS-2", got)
	}
	if got := Analyze("Ç").Encoding; got != GSM7 {
		t.Fatalf("Ç: %s, want GSM-7", got)
	}
	if got := Analyze("naïve").Chars; got != 5 {
		t.Fatalf("chars of naïve = %d, want 5", got)
	}
}

func FuzzAnalyze(f *testing.F) {
	for _, s := range []string{"", "hi", "€€€", "😀x", strings.Repeat("a", 200)} {
		f.Add(s)
	}
	f.Fuzz(func(t *testing.T, body string) {
		info := Analyze(body)
		if body != "" && info.Segments < 1 {
			t.Fatalf("non-empty body %q has %d segments", body, info.Segments)
		}
		if info.Segments > info.Chars*2+1 {
			t.Fatalf("%q: %d segments for %d chars", body, info.Segments, info.Chars)
		}
	})
}
