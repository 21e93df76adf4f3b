package redact

import "testing"

func TestURL(t *testing.T) {
	tests := []struct{ in, want string }{
		{"https://user:s3cret@hub.example.com/twiml?token=abc&to=%2B14155551234", "https://REDACTED@hub.example.com/twiml?REDACTED"},
		{"https://hub.example.com/twiml/welcome", "https://hub.example.com/twiml/welcome"},
		{"https://hub.example.com/x#frag", "https://hub.example.com/x#REDACTED"},
		{"not a url +14155551234", "not a url +14***234"},
	}
	for _, tt := range tests {
		if got := URL(tt.in); got != tt.want {
			t.Errorf("URL(%q) = %q, want %q", tt.in, got, tt.want)
		}
	}
}

func TestText(t *testing.T) {
	tests := []struct{ in, want string }{
		{"task c1:+14155558103 failed", "task c1:+14***103 failed"},
		{`get "https://a:b@h.example/p?k=v": refused`, `get "https://REDACTED@h.example/p?REDACTED": refused`},
		{"code 123456 stays", "code 123456 stays"},
		{"CA0123456789abcdef0123456789abcdef stays", "CA0123456789abcdef0123456789abcdef stays"},
	}
	for _, tt := range tests {
		if got := Text(tt.in); got != tt.want {
			t.Errorf("Text(%q) = %q, want %q", tt.in, got, tt.want)
		}
	}
	if got := Body("Your code is 123456"); got != "[redacted, 19 characters]" {
		t.Errorf("Body = %q", got)
	}
}
