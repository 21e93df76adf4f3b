package twilioapi

import (
	"fmt"
	"regexp"
)

// SID patterns: two letters naming the kind and 32 lowercase hexadecimal
// digits. Every SID that arrives from outside (a task payload, a webhook, an
// API argument, a command line) is checked against them before it goes into
// a Redis key or a Twilio URL path.
var (
	callSIDPattern    = regexp.MustCompile(`^CA[0-9a-f]{32}$`)
	messageSIDPattern = regexp.MustCompile(`^(SM|MM)[0-9a-f]{32}$`)
)

// ValidCallSID reports whether s is a Twilio call SID (CA…).
func ValidCallSID(s string) bool { return callSIDPattern.MatchString(s) }

// ValidMessageSID reports whether s is a Twilio message SID: SM… for SMS,
// MM… for MMS.
func ValidMessageSID(s string) bool { return messageSIDPattern.MatchString(s) }

// CheckCallSID returns nil for a valid call SID, else an error that names
// field and says what is expected (never echoing the value, which may be
// anything).
func CheckCallSID(field, s string) error {
	if ValidCallSID(s) {
		return nil
	}
	return fmt.Errorf("%s: must be a call SID: CA followed by 32 lowercase hexadecimal digits", field)
}

// CheckMessageSID is CheckCallSID for message SIDs (SM… or MM…).
func CheckMessageSID(field, s string) error {
	if ValidMessageSID(s) {
		return nil
	}
	return fmt.Errorf("%s: must be a message SID: SM or MM followed by 32 lowercase hexadecimal digits", field)
}
