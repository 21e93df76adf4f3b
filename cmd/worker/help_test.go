package main

import (
	"bytes"
	"strings"
	"testing"
)

// TestHelpHidesSecrets: flag defaults come from the environment, so --help
// must say that a secret is set without printing it.
func TestHelpHidesSecrets(t *testing.T) {
	env := map[string]string{
		"API_TOKEN":          "s3cret-token-123",
		"TWILIO_AUTH_TOKEN":  "authtoken-abcdef0123456789",
		"TWILIO_API_SECRET":  "apisecret-9876543210",
		"DASHBOARD_PASSWORD": "dash-pass-42",
		"REDIS_URL":          "redis://worker:redis-pass-77@10.0.0.5:6379/0",
		"HTTP_ADDR":          "127.0.0.1:9999",
	}
	var out bytes.Buffer
	if code := run([]string{"--help"}, func(k string) string { return env[k] }, &out); code != 0 {
		t.Fatalf("--help: exit %d", code)
	}
	help := out.String()
	for _, secret := range []string{"s3cret-token-123", "authtoken-abcdef0123456789", "apisecret-9876543210", "dash-pass-42", "redis-pass-77"} {
		if strings.Contains(help, secret) {
			t.Errorf("--help shows the secret %q", secret)
		}
	}
	for _, flag := range []string{"--api-token", "--twilio-auth-token", "--twilio-api-secret", "--dashboard-password"} {
		line := lineAfter(help, flag)
		if !strings.Contains(line, "set in the environment; value not shown") {
			t.Errorf("%s: %q does not say the secret is set", flag, line)
		}
	}
	if line := lineAfter(help, "--redis-url"); !strings.Contains(line, "10.0.0.5:6379") || !strings.Contains(line, "password not shown") {
		t.Errorf("--redis-url: %q should show the address without the password", line)
	}
	if line := lineAfter(help, "--http-addr"); !strings.Contains(line, "127.0.0.1:9999") {
		t.Errorf("--http-addr: %q should show the value from the environment", line)
	}
}

// TestSecretVariables: the rule marks the VAPI branch's secrets too, so they
// need no code of their own.
func TestSecretVariables(t *testing.T) {
	for _, name := range []string{"API_TOKEN", "TWILIO_AUTH_TOKEN", "TWILIO_API_SECRET", "DASHBOARD_PASSWORD",
		"VAPI_API_KEY", "VAPI_SERVER_TOKEN", "VAPI_HMAC_SECRET"} {
		if !secretVariable(name) || shownValue(name, "x") != "" {
			t.Errorf("%s is not secret", name)
		}
	}
	for _, name := range []string{"HTTP_ADDR", "TWILIO_ACCOUNT_SID", "PUBLIC_URL", "VAPI_API_URL"} {
		if secretVariable(name) {
			t.Errorf("%s is secret", name)
		}
	}
}

// TestFlagStillWins: the setting type keeps flags working.
func TestFlagStillWins(t *testing.T) {
	env := map[string]string{"API_TOKEN": "from-env"}
	var out bytes.Buffer
	c, err := loadConfig([]string{"--api-token", "from-flag", "--concurrency", "7"}, func(k string) string { return env[k] }, &out)
	if err != nil {
		t.Fatal(err)
	}
	if c.APIToken.Reveal() != "from-flag" || c.Concurrency != 7 {
		t.Errorf("token %q concurrency %d; want the flags' values", c.APIToken.Reveal(), c.Concurrency)
	}
}

// lineAfter returns the help line that follows the one naming flag.
func lineAfter(help, flag string) string {
	lines := strings.Split(help, "\n")
	for i, l := range lines {
		if strings.TrimSpace(l) == flag+" string" && i+1 < len(lines) {
			return lines[i+1]
		}
	}
	return ""
}

func TestLogMaxEntriesAndDashboardHosts(t *testing.T) {
	load := func(env map[string]string) (Config, error) {
		var out bytes.Buffer
		return loadConfig(nil, func(k string) string { return env[k] }, &out)
	}
	c, err := load(map[string]string{"LOG_MAX_ENTRIES": "2_000_000", "DASHBOARD_HOSTS": "ops.example.com, 10.0.0.5"})
	if err != nil || c.LogMaxEntries != 2_000_000 || len(c.Dashboard.Hosts) != 2 || c.Dashboard.Hosts[1] != "10.0.0.5" {
		t.Fatalf("config %d %v, %v", c.LogMaxEntries, c.Dashboard.Hosts, err)
	}
	if c, err := load(nil); err != nil || c.LogMaxEntries != 1_000_000 {
		t.Fatalf("default LOG_MAX_ENTRIES %d, %v", c.LogMaxEntries, err)
	}
	for env, name := range map[string]string{"LOG_MAX_ENTRIES": "lots", "DASHBOARD_HOSTS": "http://ops.example.com:8080"} {
		if _, err := load(map[string]string{env: name}); err == nil || !strings.Contains(err.Error(), env+":") {
			t.Errorf("%s=%s: %v; want an error naming %s", env, name, err, env)
		}
	}
	if _, err := load(map[string]string{"LOG_MAX_ENTRIES": "10"}); err == nil {
		t.Error("LOG_MAX_ENTRIES=10 accepted")
	}
}
