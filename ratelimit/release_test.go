package ratelimit_test

import (
	"testing"
	"time"

	"github.com/sbagenthub/twilio-worker/ratelimit"
)

// A booked slot whose message does not go (deferred by quiet hours,
// skipped, canceled) is given back: the next booking takes it instead of
// waiting behind it.
func TestReleaseGivesTheBookedSlotBack(t *testing.T) {
	t.Parallel()
	f := newFixture(t, ratelimit.Config{Recipient: rate(t, "1/m"), MaxSleep: 100 * time.Millisecond})
	if d := f.book(t, sms("marketing")); f.offset(d) != 0 {
		t.Fatalf("first booking at +%v", f.offset(d))
	}
	if err := f.lim.Release(bg, sms("marketing")); err != nil {
		t.Fatal(err)
	}
	if d := f.book(t, sms("code")); f.offset(d) != 0 {
		t.Fatalf("after the release the next message books +%v, want at once", f.offset(d))
	}
	// Releasing what holds nothing changes nothing.
	if err := f.lim.Release(bg, sms("nothing")); err != nil {
		t.Fatal(err)
	}
	if d := f.book(t, sms("third")); f.offset(d) != time.Minute {
		t.Fatalf("third at +%v, want +1m0s", f.offset(d))
	}
}

// A message admitted (its gate charged) that then does not go (opted out
// meanwhile, refused by Twilio for good) is refunded.
func TestRefundGivesTheAdmissionBack(t *testing.T) {
	t.Parallel()
	f := newFixture(t, ratelimit.Config{Recipient: rate(t, "1/m"), MaxSleep: 100 * time.Millisecond})
	if d := f.admit(t, sms("a")); !d.Go {
		t.Fatalf("first: %+v", d)
	}
	if err := f.lim.Refund(bg, sms("a")); err != nil {
		t.Fatal(err)
	}
	if d := f.admit(t, sms("b")); !d.Go || f.offset(d) != 0 {
		t.Fatalf("after the refund: %+v at +%v, want go at once", d, f.offset(d))
	}
	if d := f.admit(t, sms("c")); d.Go || f.offset(d) != time.Minute {
		t.Fatalf("the limit still holds for the next: %+v at +%v", d, f.offset(d))
	}
}
