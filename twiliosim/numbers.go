package twiliosim

import (
	"fmt"
	"net/http"
	"regexp"
	"strings"
)

// e164 is the shape Twilio accepts for a phone number.
var e164 = regexp.MustCompile(`^\+[1-9]\d{6,14}$`)

// Twilio's test-credential magic numbers.
const (
	magicInvalid      = "+15005550001"
	magicUnroutable   = "+15005550002"
	magicNoPermission = "+15005550003"
	magicBlocked      = "+15005550004"
	magicValidFrom    = "+15005550006"
	magicNotOwned     = "+15005550007"
	magicQueueFull    = "+15005550008"
	magicNotMobile    = "+15005550009"
)

// The simulator's own numbers with scripted outcomes (DESIGN.md).
const (
	NumberCallBusy            = "+15005551001"
	NumberCallNoAnswer        = "+15005551002"
	NumberCallFailed          = "+15005551003"
	NumberSMSUndelivered      = "+15005551004"
	NumberSMSUndeliveredFirst = "+15005551005"
	NumberSMSFailed           = "+15005551006"
)

// apiError is an error answered in Twilio's JSON shape.
type apiError struct {
	Status  int
	Code    int
	Message string
}

func (e *apiError) Error() string { return fmt.Sprintf("%d %d: %s", e.Status, e.Code, e.Message) }

func badRequest(code int, format string, args ...any) *apiError {
	return &apiError{Status: http.StatusBadRequest, Code: code, Message: fmt.Sprintf(format, args...)}
}

// messageMagic returns Twilio's answer for a message from or to a magic number.
func messageMagic(from, to string) *apiError {
	switch from {
	case magicInvalid:
		return badRequest(21212, "The 'From' number %s is not a valid phone number, shortcode, or alphanumeric sender ID.", from)
	case magicNotOwned:
		return badRequest(21606, "The From phone number %s is not a valid, SMS-capable inbound phone number or short code for your account.", from)
	case magicQueueFull:
		return badRequest(21611, "This 'From' number has exceeded the maximum number of queued messages")
	}
	switch to {
	case magicInvalid:
		return badRequest(21211, "Invalid 'To' Phone Number: %s", to)
	case magicUnroutable:
		return badRequest(21612, "The 'To' phone number: %s, is not currently reachable using the 'From' phone number: %s via SMS.", to, from)
	case magicNoPermission:
		return badRequest(21408, "Permission to send an SMS has not been enabled for the region indicated by the 'To' number: %s.", to)
	case magicBlocked:
		return badRequest(21610, "Attempt to send to unsubscribed recipient")
	case magicNotMobile:
		return badRequest(21614, "'To' number is not a valid mobile number")
	}
	return nil
}

// callMagic returns Twilio's answer for a call from or to a magic number.
func callMagic(from, to string) *apiError {
	switch from {
	case magicInvalid:
		return badRequest(21212, "Invalid From Number (caller ID): %s", from)
	case magicNotOwned:
		return badRequest(21210, "The source phone number provided, %s, is not yet verified for your account. You may only make calls from phone numbers that you've verified or purchased from Twilio.", from)
	}
	switch to {
	case magicInvalid:
		return badRequest(21217, "Phone number does not appear to be valid")
	case magicUnroutable:
		return badRequest(21214, "'To' phone number cannot be reached")
	case magicNoPermission:
		return badRequest(21215, "Account not authorized to call %s. Perhaps you need to enable some international permissions: https://www.twilio.com/console/voice/calls/geo-permissions/low-risk", to)
	case magicBlocked:
		return badRequest(21216, "Account not allowed to call %s", to)
	}
	return nil
}

// Delivery errors reported on undelivered and failed messages.
const (
	errUnreachable = 30003
	errUnknown     = 30005
)

var deliveryErrorMessages = map[int]string{
	errUnreachable: "Unreachable destination handset",
	errUnknown:     "Unknown destination handset",
}

// callOutcome is the terminal status a call to number reaches.
func callOutcome(to string) string {
	switch to {
	case NumberCallBusy:
		return "busy"
	case NumberCallNoAnswer:
		return "no-answer"
	case NumberCallFailed:
		return "failed"
	}
	return "completed"
}

// validNumber reports whether s, trimmed, is an E.164 number.
func validNumber(s string) bool { return e164.MatchString(strings.TrimSpace(s)) }
