package twilioapi

import (
	"context"
	"encoding/json"
	"errors"
	"fmt"
	"log/slog"
	"net/url"
	"os"
	"regexp"
	"strings"
	"time"
)

// TimeoutDefault bounds one request to Twilio, connection to last byte.
const TimeoutDefault = 15 * time.Second

// DefaultBaseURL is Twilio's REST API.
const DefaultBaseURL = "https://api.twilio.com"

// Secret is a credential. It prints as REDACTED in every format and in slog.
type Secret string

func (Secret) String() string                 { return "REDACTED" }
func (Secret) GoString() string               { return "REDACTED" }
func (Secret) LogValue() slog.Value           { return slog.StringValue("REDACTED") }
func (s Secret) MarshalText() ([]byte, error) { return []byte("REDACTED"), nil }

// Reveal returns the secret's value, for the one place that must send it.
func (s Secret) Reveal() string { return string(s) }

// Config is what a Client needs. Zero values mean defaults.
type Config struct {
	AccountSID string // TWILIO_ACCOUNT_SID
	AuthToken  Secret // TWILIO_AUTH_TOKEN
	APIKey     string // TWILIO_API_KEY: an SK… key used instead of the auth token
	APISecret  Secret // TWILIO_API_SECRET

	PhoneNumber         string // TWILIO_PHONE_NUMBER: default sender
	MessagingServiceSID string // TWILIO_MESSAGING_SERVICE_SID

	// BaseURL redirects every request (TWILIO_API_URL), e.g. to twiliosim.
	BaseURL string
	// Timeout bounds each request; TimeoutDefault when zero.
	Timeout time.Duration
	// Observe, when set, is called after every request with the operation,
	// the outcome ("201", "21211", "timeout", …) and how long it took.
	Observe func(op, outcome string, took time.Duration)
	// Pace, when set, is called before every request and returns the
	// function that ends it (ratelimit.Pacer's Acquire: TWILIO_MAX_RPS,
	// TWILIO_MAX_CONCURRENT); an error fails the request unsent.
	Pace func(ctx context.Context) (release func(), err error)
}

// Environment variables read by ConfigFromEnv.
const (
	EnvAccountSID          = "TWILIO_ACCOUNT_SID"
	EnvAuthToken           = "TWILIO_AUTH_TOKEN"
	EnvAPIKey              = "TWILIO_API_KEY"
	EnvAPISecret           = "TWILIO_API_SECRET"
	EnvPhoneNumber         = "TWILIO_PHONE_NUMBER"
	EnvMessagingServiceSID = "TWILIO_MESSAGING_SERVICE_SID"
	EnvConfigFile          = "TWILIO_CONFIG"
	EnvAPIURL              = "TWILIO_API_URL"
)

// hubFile is the agent hub's credentials document.
type hubFile struct {
	APIKeys *struct {
		AccountSID  string `json:"twilio_account_sid"`
		AuthToken   string `json:"twilio_auth_token"`
		PhoneNumber string `json:"twilio_phone_number"`
	} `json:"apiKeys"`
}

// ConfigFromEnv reads the TWILIO_* variables through getenv. When
// TWILIO_CONFIG names the agent hub's JSON file, its apiKeys fill whatever the
// variables leave empty.
func ConfigFromEnv(getenv func(string) string) (Config, error) {
	cfg := Config{
		AccountSID:          strings.TrimSpace(getenv(EnvAccountSID)),
		AuthToken:           Secret(strings.TrimSpace(getenv(EnvAuthToken))),
		APIKey:              strings.TrimSpace(getenv(EnvAPIKey)),
		APISecret:           Secret(strings.TrimSpace(getenv(EnvAPISecret))),
		PhoneNumber:         strings.TrimSpace(getenv(EnvPhoneNumber)),
		MessagingServiceSID: strings.TrimSpace(getenv(EnvMessagingServiceSID)),
		BaseURL:             strings.TrimSpace(getenv(EnvAPIURL)),
	}
	if path := strings.TrimSpace(getenv(EnvConfigFile)); path != "" {
		file, err := LoadHubFile(path)
		if err != nil {
			return cfg, err
		}
		if cfg.AccountSID == "" {
			cfg.AccountSID = file.AccountSID
		}
		if cfg.AuthToken == "" {
			cfg.AuthToken = file.AuthToken
		}
		if cfg.PhoneNumber == "" {
			cfg.PhoneNumber = file.PhoneNumber
		}
	}
	return cfg, nil
}

// LoadHubFile reads the agent hub's `{"apiKeys":{…}}` credentials file.
// Errors name the file and the problem, never a value from it.
func LoadHubFile(path string) (Config, error) {
	data, err := os.ReadFile(path)
	if err != nil {
		return Config{}, fmt.Errorf("%s: %w", EnvConfigFile, err)
	}
	var f hubFile
	if err := json.Unmarshal(data, &f); err != nil {
		return Config{}, fmt.Errorf("%s: %s is not valid JSON", EnvConfigFile, path)
	}
	if f.APIKeys == nil {
		return Config{}, fmt.Errorf("%s: %s has no \"apiKeys\" object", EnvConfigFile, path)
	}
	return Config{
		AccountSID:  strings.TrimSpace(f.APIKeys.AccountSID),
		AuthToken:   Secret(strings.TrimSpace(f.APIKeys.AuthToken)),
		PhoneNumber: strings.TrimSpace(f.APIKeys.PhoneNumber),
	}, nil
}

// HasCredentials reports whether any credential is configured. A worker
// without credentials runs against the built-in simulator.
func (c Config) HasCredentials() bool {
	return c.AccountSID != "" || c.AuthToken != "" || c.APIKey != "" || c.APISecret != ""
}

// WithDefaults fills zero fields.
func (c Config) WithDefaults() Config {
	if c.BaseURL == "" {
		c.BaseURL = DefaultBaseURL
	}
	if c.Timeout <= 0 {
		c.Timeout = TimeoutDefault
	}
	return c
}

var (
	accountSIDPattern = regexp.MustCompile(`^AC[0-9a-fA-F]{32}$`)
	apiKeyPattern     = regexp.MustCompile(`^SK[0-9a-fA-F]{32}$`)
	serviceSIDPattern = regexp.MustCompile(`^MG[0-9a-fA-F]{32}$`)
	alphanumeric      = regexp.MustCompile(`^[a-zA-Z0-9]+$`)
)

// Validate reports the first problem, naming the variable. Values of secrets
// are never part of the message.
func (c Config) Validate() error {
	var errs []error
	if !accountSIDPattern.MatchString(c.AccountSID) {
		if c.AccountSID == "" {
			errs = append(errs, fmt.Errorf("%s is required", EnvAccountSID))
		} else {
			errs = append(errs, fmt.Errorf("%s must be AC followed by 32 hex digits", EnvAccountSID))
		}
	}
	switch {
	case c.APIKey != "" || c.APISecret != "":
		if !apiKeyPattern.MatchString(c.APIKey) {
			errs = append(errs, fmt.Errorf("%s must be SK followed by 32 hex digits", EnvAPIKey))
		}
		if !alphanumeric.MatchString(string(c.APISecret)) {
			errs = append(errs, fmt.Errorf("%s is required with %s and must be letters and digits only", EnvAPISecret, EnvAPIKey))
		}
	case c.AuthToken == "":
		errs = append(errs, fmt.Errorf("%s (or %s and %s) is required", EnvAuthToken, EnvAPIKey, EnvAPISecret))
	case !alphanumeric.MatchString(string(c.AuthToken)):
		errs = append(errs, fmt.Errorf("%s must be letters and digits only", EnvAuthToken))
	}
	if c.MessagingServiceSID != "" && !serviceSIDPattern.MatchString(c.MessagingServiceSID) {
		errs = append(errs, fmt.Errorf("%s must be MG followed by 32 hex digits", EnvMessagingServiceSID))
	}
	if c.BaseURL != "" {
		u, err := url.Parse(c.BaseURL)
		if err != nil || (u.Scheme != "http" && u.Scheme != "https") || u.Host == "" {
			errs = append(errs, fmt.Errorf("%s must be an http or https URL such as http://127.0.0.1:8089", EnvAPIURL))
		}
	}
	return errors.Join(errs...)
}
