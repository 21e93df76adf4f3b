package phone_test

import (
	"errors"
	"fmt"
	"log/slog"
	"os"

	"github.com/sbagenthub/twilio-worker/phone"
)

func ExampleParse() {
	for _, in := range []string{"+1 (415) 555-1234", "0044 20 7123 4567", "020 7123 4567"} {
		n, err := phone.Parse(in, "GB")
		fmt.Println(n, err)
	}
	// Output:
	// +14155551234 <nil>
	// +442071234567 <nil>
	// +442071234567 <nil>
}

func ExampleParse_errors() {
	_, err := phone.Parse("(415) 555-1234", "")
	fmt.Println("to:", err)
	fmt.Println(errors.Is(err, phone.ErrNoRegion))

	_, err = phone.Parse("1-800-FLOWERS", "US")
	fmt.Println("to:", err)

	_, err = phone.Parse("+1 415 555", "")
	fmt.Println("to:", err)
	// Output:
	// to: phone number is a national number without a country code; use +CC or configure a default region
	// true
	// to: phone number contains letters
	// to: phone number is too short
}

func ExampleNumber_Masked() {
	for _, in := range []string{"+14155551234", "+442071234567", "+493012345678"} {
		n, _ := phone.Parse(in, "")
		fmt.Println(n.Masked())
	}
	// Output:
	// +1415***1234
	// +4420***4567
	// +4930***5678
}

func ExampleNumber_LogValue() {
	n, _ := phone.Parse("+14155551234", "")
	log := slog.New(slog.NewTextHandler(os.Stdout, &slog.HandlerOptions{
		ReplaceAttr: func(_ []string, a slog.Attr) slog.Attr {
			if a.Key == slog.TimeKey {
				return slog.Attr{}
			}
			return a
		},
	}))
	log.Info("sms sent", "to", n)
	// Output:
	// level=INFO msg="sms sent" to=+1415***1234
}

func ExampleNumber_TimeZones() {
	n, _ := phone.Parse("+14155551234", "")
	fmt.Println(n.Region(), n.TimeZones())
	// Output:
	// US [America/Los_Angeles]
}

func ExampleMask() {
	fmt.Println(phone.Mask("+1 415 555 1234 ext 9"))
	fmt.Println(phone.Mask("12345"))
	// Output:
	// +1 4***xt 9
	// ***
}
