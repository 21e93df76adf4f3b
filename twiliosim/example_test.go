package twiliosim_test

import (
	"fmt"
	"net/url"

	"github.com/sbagenthub/twilio-worker/twiliosim"
)

func ExampleParseLatency() {
	l, err := twiliosim.ParseLatency("50ms-150ms")
	fmt.Println(l.Min, l.Max, err)
	// Output: 50ms 150ms <nil>
}

func ExampleSign() {
	params := url.Values{"CallSid": {"CA1234567890ABCDE"}, "Caller": {"+14158675309"}, "Digits": {"1234"},
		"From": {"+14158675309"}, "To": {"+18005551212"}, "ReasonConferenceEnded": {"test"}, "Reason": {"Participant"}}
	fmt.Println(twiliosim.Sign("12345", "https://mycompany.com/myapp.php?foo=1&bar=2", params))
	// Output: vOEb5UThFn24KEfnOFLQY2AE5FY=
}

func ExampleOptOutType() {
	fmt.Println(twiliosim.OptOutType(" stop "), twiliosim.OptOutType("unstop"), twiliosim.OptOutType("stop it") == "")
	// Output: STOP START true
}
