package phone

import "testing"

func TestMaskText(t *testing.T) {
	tests := []struct{ in, want string }{
		{"call +14155551234 now", "call +14***234 now"},
		{"(415) 555-1234", "(41***1234"},
		{"Your verification code is 123456", "Your verification code is 123456"},
		{"SM0123456789abcdef0123456789abcdef", "SM0123456789abcdef0123456789abcdef"},
		{"2025-01-15T10:30:00Z", "2025-01-15T10:30:00Z"},
		{"due 2025-01-15 10:30", "due 2025-01-15 10:30"},
		{"no digits", "no digits"},
		{"+1 415 555 1234 and +44 20 7123 4567", "+1 ***1234 and +44 ***4567"},
		{"The 'To' number +15005550001 is not a valid phone number.", "The 'To' number +15***001 is not a valid phone number."},
	}
	for _, tt := range tests {
		if got := MaskText(tt.in); got != tt.want {
			t.Errorf("MaskText(%q) = %q, want %q", tt.in, got, tt.want)
		}
	}
}
