package fraud_test

import (
	"context"
	"fmt"

	"github.com/sbagenthub/twilio-worker/fraud"
)

func ExamplePrefix() {
	fmt.Println(fraud.Prefix("+14155551234"))
	fmt.Println(fraud.Prefix("+442071838750"))
	// Output:
	// +1415555
	// +44207183
}

func ExampleParsePrefix() {
	p, _ := fraud.ParsePrefix("+1 (415) 555")
	fmt.Println(p)
	_, err := fraud.ParsePrefix("415555")
	fmt.Println(err)
	// Output:
	// +1415555
	// must start with + and the country code, e.g. +1415555
}

func ExampleGuard_CheckEnqueue() {
	g := fraud.New(nil, fraud.Config{Allowed: []string{"US", "GB"}}) // the static checks need no Redis
	ctx := context.Background()
	fmt.Println(g.CheckEnqueue(ctx, "+14155551234", fraud.SourceAgent))
	fmt.Println(g.CheckEnqueue(ctx, "+4915123456789", fraud.SourceAgent))
	fmt.Println(g.CheckEnqueue(ctx, "+19002345678", fraud.SourceOperator))
	// Output:
	// <nil>
	// to: country DE is not in ALLOWED_COUNTRIES (US,GB)
	// to: premium-rate number in US refused (ALLOW_NUMBER_TYPES=premium-rate allows it)
}
