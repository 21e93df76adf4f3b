package twilioapi

import (
	"errors"
	"fmt"
	"strconv"
	"time"

	"github.com/sbagenthub/twilio-worker/phone"
)

// Class is what a failure means for the task that met it (DESIGN.md's Twilio
// error policy).
type Class int

const (
	// ClassTransient: 5xx, or the connection failed before the request was
	// written. Retry with backoff.
	ClassTransient Class = iota
	// ClassOptedOut: 21610, the recipient replied STOP to this sender.
	ClassOptedOut
	// ClassBadRecipient: the To number cannot receive this message or call.
	ClassBadRecipient
	// ClassConfig: credentials, sender or account settings are wrong; no
	// retry helps until a person fixes them.
	ClassConfig
	// ClassRateLimited: 429/20429 or 21611; wait RetryAfter, not a failure.
	ClassRateLimited
	// ClassAmbiguous: the request was written and then the answer was lost
	// (timeout, reset). Twilio may have acted: reconcile before resending.
	ClassAmbiguous
	// ClassInvalid: Twilio refused the request itself (missing or malformed
	// parameter). Sending it again gives the same answer.
	ClassInvalid
	// ClassNotFound: the resource does not exist (404/20404).
	ClassNotFound
)

var classNames = [...]string{"transient", "opted out", "bad recipient", "sender/config", "rate limited", "ambiguous", "invalid request", "not found"}

func (c Class) String() string {
	if int(c) < len(classNames) {
		return classNames[c]
	}
	return "class(" + strconv.Itoa(int(c)) + ")"
}

// Permanent reports whether retrying can never help.
func (c Class) Permanent() bool {
	switch c {
	case ClassOptedOut, ClassBadRecipient, ClassConfig, ClassInvalid, ClassNotFound:
		return true
	}
	return false
}

var codeClass = map[int]Class{
	21610: ClassOptedOut,
	21211: ClassBadRecipient, 21612: ClassBadRecipient, 21614: ClassBadRecipient,
	21217: ClassBadRecipient, 21214: ClassBadRecipient, 21215: ClassBadRecipient,
	21216: ClassBadRecipient, 21617: ClassInvalid,
	20003: ClassConfig, 21212: ClassConfig, 21210: ClassConfig, 21606: ClassConfig,
	21659: ClassConfig, 21661: ClassConfig, 21408: ClassConfig, 30034: ClassConfig,
	20429: ClassRateLimited, 21611: ClassRateLimited,
	20404: ClassNotFound,
	// Message scheduling: SendAt missing (35111) or out of range (35114,
	// 35115), no Messaging Service (35118), ScheduleType not fixed (35126),
	// a message no longer scheduled cannot be canceled (30409).
	35111: ClassInvalid, 35114: ClassInvalid, 35115: ClassInvalid,
	35118: ClassInvalid, 35126: ClassInvalid, 30409: ClassInvalid,
}

// CodeNotCancelable is Twilio's answer to canceling a message that is no
// longer scheduled.
const CodeNotCancelable = 30409

// ClassifyCode returns the class of a Twilio error code and HTTP status.
func ClassifyCode(status, code int) Class {
	if c, ok := codeClass[code]; ok {
		return c
	}
	switch {
	case status == 429:
		return ClassRateLimited
	case status == 401 || status == 403:
		return ClassConfig
	case status == 404:
		return ClassNotFound
	case status >= 500 || status == 0:
		return ClassTransient
	case status >= 400:
		return ClassInvalid
	}
	return ClassTransient
}

// Error is a failed Twilio request, classified.
type Error struct {
	Op      string // "send sms", "create call", "fetch call", …
	Class   Class
	Status  int    // HTTP status; 0 when no response arrived
	Code    int    // Twilio error code; 0 when none
	Message string // Twilio's message with phone numbers masked
	// RetryAfter is Twilio's Retry-After, when it sent one.
	RetryAfter time.Duration
	// ConcurrentRequests is Twilio-Concurrent-Requests, when sent.
	ConcurrentRequests int
	// RequestID is Twilio-Request-Id, for support tickets.
	RequestID string
	Err       error // the underlying transport error, if any
}

func (e *Error) Error() string {
	msg := "twilio " + e.Op + ": " + e.Class.String()
	if e.Code != 0 {
		msg += " " + strconv.Itoa(e.Code)
	} else if e.Status != 0 {
		msg += " (HTTP " + strconv.Itoa(e.Status) + ")"
	}
	if e.Message != "" {
		msg += ": " + e.Message
	}
	if e.RetryAfter > 0 {
		msg += fmt.Sprintf(" (retry after %s)", e.RetryAfter)
	}
	return msg
}

func (e *Error) Unwrap() error { return e.Err }

// ClassOf returns the class of err: the Class of a *Error in its chain, or
// ClassTransient for anything else.
func ClassOf(err error) Class {
	var te *Error
	if errors.As(err, &te) {
		return te.Class
	}
	return ClassTransient
}

// CodeOf returns the Twilio error code in err's chain, or 0.
func CodeOf(err error) int {
	var te *Error
	if errors.As(err, &te) {
		return te.Code
	}
	return 0
}

// scrub masks phone numbers in a message from Twilio ("Invalid 'To' Phone
// Number: +1415***1234") so that none reaches a log or a task's error.
func scrub(msg string) string {
	if len(msg) > 300 {
		msg = msg[:300] + "…"
	}
	return phone.MaskText(msg)
}
