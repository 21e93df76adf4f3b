package calls

import (
	"fmt"
	"regexp"

	"github.com/sbagenthub/twilio-worker/twilioapi"
)

// Kind is which provider's form a call id has.
type Kind int

// Kinds of call ids.
const (
	KindInvalid Kind = iota
	KindTwilio       // a Twilio CallSid: CA followed by 32 lowercase hexadecimal digits (twilioapi.ValidCallSID)
	KindVAPI         // a VAPI call id: a UUID
)

var vapiID = regexp.MustCompile(`^[0-9a-fA-F]{8}-[0-9a-fA-F]{4}-[0-9a-fA-F]{4}-[0-9a-fA-F]{4}-[0-9a-fA-F]{12}$`)

// KindOf tells which provider's form id has; KindInvalid when neither.
// It is the one place call ids are checked: a Twilio CallSid and a VAPI
// call id are each valid for their own kind only.
func KindOf(id string) Kind {
	switch {
	case twilioapi.ValidCallSID(id):
		return KindTwilio
	case vapiID.MatchString(id):
		return KindVAPI
	}
	return KindInvalid
}

// CheckID returns id's kind, or an error saying what a call id looks like.
func CheckID(id string) (Kind, error) {
	if k := KindOf(id); k != KindInvalid {
		return k, nil
	}
	return KindInvalid, fmt.Errorf("must be a call SID (CA followed by 32 lowercase hexadecimal digits) or a VAPI call id (a UUID)")
}
