package twiliosim

import (
	"errors"
	"fmt"
	"log/slog"
	"net/url"
	"strings"
	"time"
)

// Defaults applied by New to zero Config fields.
const (
	AccountSIDDefault    = "AC00000000000000000000000000000000"
	AuthTokenDefault     = "00000000000000000000000000000000"
	CallRingDefault      = time.Second
	CallDurationDefault  = 3 * time.Second
	DeliveryDelayDefault = 200 * time.Millisecond
	MaxRecordsDefault    = 100000
	DefaultFromDefault   = "+15005550006"
)

// Limits of the API surface.
const (
	// MaxRequestBytes caps a request body; larger bodies are answered 413.
	MaxRequestBytes = 1 << 20
	// PageSizeDefault and PageSizeMax bound list pages, as on Twilio.
	PageSizeDefault = 50
	PageSizeMax     = 1000
)

// Config configures a Server. The zero value is a working simulator with the
// defaults above and no faults.
type Config struct {
	AccountSID string            // default AccountSIDDefault ("AC" + 32 zeros)
	AuthToken  string            // default AuthTokenDefault (32 zeros); also signs webhooks
	APIKeys    map[string]string // API key SID (SK…) -> secret, accepted as basic-auth user and password

	Latency       Latency       // delay before every Twilio API answer, random in [Min, Max]
	ErrorRate     float64       // share of Twilio API requests answered 503, in [0, 1]
	MaxConcurrent int           // in-flight Twilio API requests above which 429/20429 is answered; 0 = no cap
	DropRate      float64       // share of creates whose connection is dropped after the record is made, in [0, 1]
	InboundURL    string        // where POST /sim/inbound delivers inbound SMS webhooks
	CallRing      time.Duration // ringing time before a call is answered; default CallRingDefault (1s)
	CallDuration  time.Duration // talk time of an answered call; default CallDurationDefault (3s)
	DeliveryDelay time.Duration // time between message status steps; default DeliveryDelayDefault (200ms)

	MaxRecords  int          // messages and calls kept each, oldest evicted; default MaxRecordsDefault (100000)
	DefaultFrom string       // sender for Messaging Service sends; default DefaultFromDefault (+15005550006)
	Logger      *slog.Logger // default discards
}

// WithDefaults returns cfg with every zero field set to its default.
func (cfg Config) WithDefaults() Config {
	if cfg.AccountSID == "" {
		cfg.AccountSID = AccountSIDDefault
	}
	if cfg.AuthToken == "" {
		cfg.AuthToken = AuthTokenDefault
	}
	if cfg.CallRing == 0 {
		cfg.CallRing = CallRingDefault
	}
	if cfg.CallDuration == 0 {
		cfg.CallDuration = CallDurationDefault
	}
	if cfg.DeliveryDelay == 0 {
		cfg.DeliveryDelay = DeliveryDelayDefault
	}
	if cfg.MaxRecords == 0 {
		cfg.MaxRecords = MaxRecordsDefault
	}
	if cfg.DefaultFrom == "" {
		cfg.DefaultFrom = DefaultFromDefault
	}
	if cfg.Logger == nil {
		cfg.Logger = slog.New(slog.DiscardHandler)
	}
	return cfg
}

// Validate reports the first invalid field, by name. It accepts zero fields.
func (cfg Config) Validate() error {
	if cfg.AccountSID != "" && !validSID(cfg.AccountSID, "AC") {
		return fmt.Errorf("AccountSID %q: want AC followed by 32 hex digits", cfg.AccountSID)
	}
	for sid, secret := range cfg.APIKeys {
		if sid == "" || secret == "" {
			return errors.New("APIKeys: empty key SID or secret")
		}
	}
	if cfg.MaxRecords < 0 {
		return fmt.Errorf("MaxRecords %d: must not be negative", cfg.MaxRecords)
	}
	return cfg.knobs().validate()
}

func (cfg Config) knobs() Knobs {
	return Knobs{
		Latency:       cfg.Latency,
		ErrorRate:     cfg.ErrorRate,
		MaxConcurrent: cfg.MaxConcurrent,
		DropRate:      cfg.DropRate,
		InboundURL:    cfg.InboundURL,
		CallRing:      cfg.CallRing,
		CallDuration:  cfg.CallDuration,
		DeliveryDelay: cfg.DeliveryDelay,
	}
}

// Knobs are the settings that can change while the server runs (UpdateKnobs,
// POST /sim/config). Unlike Config, zero durations are taken literally.
type Knobs struct {
	Latency       Latency
	ErrorRate     float64
	MaxConcurrent int
	DropRate      float64
	InboundURL    string
	CallRing      time.Duration
	CallDuration  time.Duration
	DeliveryDelay time.Duration
}

func (k Knobs) validate() error {
	if err := k.Latency.validate(); err != nil {
		return fmt.Errorf("Latency: %w", err)
	}
	if !(k.ErrorRate >= 0 && k.ErrorRate <= 1) {
		return fmt.Errorf("ErrorRate %v: want a share between 0 and 1", k.ErrorRate)
	}
	if !(k.DropRate >= 0 && k.DropRate <= 1) {
		return fmt.Errorf("DropRate %v: want a share between 0 and 1", k.DropRate)
	}
	if k.MaxConcurrent < 0 {
		return fmt.Errorf("MaxConcurrent %d: must not be negative", k.MaxConcurrent)
	}
	if k.InboundURL != "" {
		if err := checkHTTPURL(k.InboundURL); err != nil {
			return fmt.Errorf("InboundURL: %w", err)
		}
	}
	for _, d := range []struct {
		name string
		v    time.Duration
	}{{"CallRing", k.CallRing}, {"CallDuration", k.CallDuration}, {"DeliveryDelay", k.DeliveryDelay}} {
		if d.v < 0 {
			return fmt.Errorf("%s %v: must not be negative", d.name, d.v)
		}
	}
	return nil
}

func checkHTTPURL(s string) error {
	u, err := url.Parse(s)
	if err != nil {
		return fmt.Errorf("%q is not a URL", s)
	}
	if (u.Scheme != "http" && u.Scheme != "https") || u.Host == "" {
		return fmt.Errorf("%q: want an absolute http or https URL", s)
	}
	return nil
}

// Latency is a range of delays; each request waits a random time within it.
type Latency struct {
	Min, Max time.Duration
}

// ParseLatency parses "0", a duration ("100ms", fixed) or a range
// ("50ms-150ms").
func ParseLatency(s string) (Latency, error) {
	s = strings.TrimSpace(s)
	if s == "" || s == "0" {
		return Latency{}, nil
	}
	lo, hi, isRange := strings.Cut(s, "-")
	minD, err := time.ParseDuration(strings.TrimSpace(lo))
	if err != nil {
		return Latency{}, fmt.Errorf("latency %q: want 0, a duration like 100ms or a range like 50ms-150ms", s)
	}
	maxD := minD
	if isRange {
		if maxD, err = time.ParseDuration(strings.TrimSpace(hi)); err != nil {
			return Latency{}, fmt.Errorf("latency %q: want 0, a duration like 100ms or a range like 50ms-150ms", s)
		}
	}
	l := Latency{Min: minD, Max: maxD}
	if err := l.validate(); err != nil {
		return Latency{}, fmt.Errorf("latency %q: %w", s, err)
	}
	return l, nil
}

func (l Latency) validate() error {
	if l.Min < 0 || l.Max < 0 {
		return errors.New("must not be negative")
	}
	if l.Max < l.Min {
		return errors.New("range ends before it starts")
	}
	return nil
}

// String formats l the way ParseLatency reads it.
func (l Latency) String() string {
	switch {
	case l.Min == 0 && l.Max == 0:
		return "0"
	case l.Min == l.Max:
		return l.Min.String()
	default:
		return l.Min.String() + "-" + l.Max.String()
	}
}

// MarshalText implements encoding.TextMarshaler.
func (l Latency) MarshalText() ([]byte, error) { return []byte(l.String()), nil }

// UnmarshalText implements encoding.TextUnmarshaler with ParseLatency.
func (l *Latency) UnmarshalText(b []byte) error {
	v, err := ParseLatency(string(b))
	if err != nil {
		return err
	}
	*l = v
	return nil
}
