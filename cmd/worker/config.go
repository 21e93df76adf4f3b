package main

import (
	"errors"
	"flag"
	"fmt"
	"io"
	"net"
	"net/url"
	"regexp"
	"strconv"
	"strings"
	"time"

	"github.com/sbagenthub/twilio-worker/commlog"
	"github.com/sbagenthub/twilio-worker/delivery"
	"github.com/sbagenthub/twilio-worker/fraud"
	"github.com/sbagenthub/twilio-worker/httpapi"
	"github.com/sbagenthub/twilio-worker/internal/redisconn"
	"github.com/sbagenthub/twilio-worker/phone"
	"github.com/sbagenthub/twilio-worker/pool"
	"github.com/sbagenthub/twilio-worker/ratelimit"
	"github.com/sbagenthub/twilio-worker/tasks"
	"github.com/sbagenthub/twilio-worker/twilioapi"
	"github.com/sbagenthub/twilio-worker/vapi"
	"github.com/sbagenthub/twilio-worker/wake"
)

// Defaults of the worker's configuration (DESIGN.md).
const (
	RedisURLDefault      = "redis://127.0.0.1:6379/0"
	HTTPAddrDefault      = "127.0.0.1:8080"
	ConcurrencyDefault   = 50
	SenderRateDefault    = "1/s"
	RecipientRateDefault = "10/m"
	CallRateDefault      = "1/s"
	QuietHoursDefault    = "21:00-08:00"
	// TwilioMaxRPSDefault and TwilioMaxConcurrentDefault pace one worker's
	// requests to Twilio (Twilio's default account concurrency is 100).
	TwilioMaxRPSDefault        = 100
	TwilioMaxConcurrentDefault = 100
	// PollIntervalDefault is how often an idle worker asks Redis for work: the
	// floor of a 2FA code's pick-up latency (asynq's own default is 1 s).
	PollIntervalDefault = 20 * time.Millisecond
	// ShutdownTimeoutDefault is how long running tasks get to finish on
	// SIGTERM before they are re-queued.
	ShutdownTimeoutDefault = 10 * time.Second
)

// variable is one setting: an environment variable and its kebab-case flag.
type variable struct {
	name, def, help string
}

var variables = []variable{
	{"REDIS_URL", "", "Redis: " + redisconn.Schemes + " URL (default " + RedisURLDefault + "; when unset and nothing answers there, an embedded in-memory Redis is started)"},
	{"REDIS_WAIT_REPLICAS", "0", "replicas (Redis WAIT) that must confirm the ledger's claim before each Twilio request and every enqueue before it is acknowledged; 0: none"},
	{twilioapi.EnvAccountSID, "", "Twilio account SID (unset: the built-in simulator is used and nothing real is sent)"},
	{twilioapi.EnvAuthToken, "", "Twilio auth token"},
	{twilioapi.EnvAPIKey, "", "Twilio API key SID (SK…), instead of the auth token"},
	{twilioapi.EnvAPISecret, "", "Twilio API key secret"},
	{twilioapi.EnvPhoneNumber, "", "default sender, E.164"},
	{twilioapi.EnvMessagingServiceSID, "", "send through this Messaging Service (MG…) instead of one From"},
	{twilioapi.EnvConfigFile, "", "path to the agent hub's {\"apiKeys\":{…}} JSON file"},
	{twilioapi.EnvAPIURL, "", "Twilio base URL override, e.g. http://127.0.0.1:8089 for twiliosim"},
	{"HTTP_ADDR", HTTPAddrDefault, "address of the worker's HTTP server"},
	{"API_TOKEN", "", "bearer token for /v1/* (required when HTTP_ADDR is not loopback)"},
	{"DASHBOARD_READONLY", "true", "the /monitoring/ dashboard only shows (false: it may also delete, run and pause)"},
	{"DASHBOARD_USER", "", "basic-auth user for /monitoring/ (required, with DASHBOARD_PASSWORD, to serve it on a non-loopback HTTP_ADDR)"},
	{"DASHBOARD_PASSWORD", "", "basic-auth password for /monitoring/"},
	{"DASHBOARD_HOSTS", "", "host names /monitoring/ answers to besides loopback ones, comma-separated (others get 421)"},
	{"PUBLIC_URL", "", "base URL Twilio can reach; enables status callbacks and signature checks"},
	{"CONCURRENCY", strconv.Itoa(ConcurrencyDefault), "handler slots per worker"},
	{"SENDER_RATE", SenderRateDefault, "segments per second per sender, e.g. 1/s or 30/m:5"},
	{"SENDER_RATES", "", "per-sender overrides: +18005550100=3/s,+12025550123=100/s"},
	{"SENDER_POOL", "", "sender numbers that act as one (E.164, comma-separated): messages without a from go from one of them"},
	{"STICKY_FOR", pool.StickyForDefault.String(), "how long a recipient keeps the pool number it got (renewed on each send)"},
	{"POOL_COOLDOWN", pool.CooldownDefault.String(), "how long a pool number whose queue is full (21611) stays out of rotation"},
	{"SERVICE_RATE", "", "aggregate rate of the Messaging Service (TWILIO_MESSAGING_SERVICE_SID), e.g. 30/s (unset: SENDER_RATE)"},
	{"TWILIO_SCHEDULE_MIN", tasks.ScheduleMinDefault.String(), "with TWILIO_MESSAGING_SERVICE_SID: a sendSMS whose sendAt is at least this far ahead (15m to 840h) is scheduled at Twilio at once instead of waiting in the queue (0: never)"},
	{"RECIPIENT_RATE", RecipientRateDefault, "messages per recipient"},
	{"CALL_RATE", CallRateDefault, "outbound calls per account"},
	{"TWILIO_MAX_RPS", strconv.Itoa(TwilioMaxRPSDefault), "requests per second to Twilio from this worker"},
	{"TWILIO_MAX_CONCURRENT", strconv.Itoa(TwilioMaxConcurrentDefault), "requests to Twilio in flight at once from this worker"},
	{"MAX_SEGMENTS", strconv.Itoa(tasks.MaxSegmentsDefault), "longer bodies are refused"},
	{"QUIET_HOURS", QuietHoursDefault, "recipient-local window in which marketing is deferred (HH:MM-HH:MM; 00:00-00:00: off)"},
	{"MARKETING_REQUIRES_CONSENT", "false", "send marketing only to numbers with recorded consent (tw:{optout}:consent:sms)"},
	{"HELP_TEXT", "", "reply to HELP/INFO on /twilio/inbound (default: a short notice with STOP/START instructions)"},
	{"RESULT_TTL", tasks.ResultTTLDefault.String(), "how long task results are kept"},
	{"DEFAULT_REGION", "", "ISO region for national numbers without +CC, e.g. US (unset: refused)"},
	{"POLL_INTERVAL", PollIntervalDefault.String(), "how often a busy worker checks for new tasks"},
	{"IDLE_POLL_INTERVAL", wake.IdleDefault.String(), "how often an idle worker checks each queue when no producer announces a task (tw:wake); 0: always POLL_INTERVAL"},
	{"CALL_POLL_FIRST", tasks.PollFirstDefault.String(), "first wait before a call's status is fetched; doubled after each fetch"},
	{"CALL_POLL_MAX", tasks.PollMaxDefault.String(), "longest wait between fetches of a call's status"},
	{"CALL_FOLLOW_MAX", tasks.FollowMaxDefault.String(), "a call not ended after this long is recorded as unknown"},
	{"SHUTDOWN_TIMEOUT", ShutdownTimeoutDefault.String(), "grace period for running tasks on SIGTERM"},
	{"REDELIVER_MAX", strconv.Itoa(delivery.RedeliverMaxDefault), "resends after a transient carrier failure (30001, 30003, 30008)"},
	{"REDELIVER_BACKOFF", tasks.RedeliverBackoffDefault.String(), "wait before the first resend; doubled for each next one"},
	{"LOG_RETENTION", "720h", "how long the communications log (tw:log) keeps entries"},
	{"LOG_MAX_ENTRIES", strconv.Itoa(commlog.MaxEntriesDefault), "the communications log keeps about this many entries at most (the oldest go first)"},
	{"LOG_BODIES", "redact", "keep or redact message bodies in the communications log"},
	{"VAPI_SERVER_TOKEN", "", "secret VAPI sends to /vapi/server as Bearer or X-Vapi-Secret (unset, and no VAPI_HMAC_SECRET: /vapi/server answers 403)"},
	{"VAPI_HMAC_SECRET", "", "secret of VAPI's HMAC credential: x-signature of \"{x-timestamp}.{body}\" on /vapi/server"},
	{"VAPI_TOOL_WAIT", vapi.ToolWaitDefault.String(), "how long a VAPI tool call waits for Twilio's acceptance before it answers queued"},
	{"VAPI_API_KEY", "", "VAPI private key, for calls an assistant conducts (unset in local mode: the built-in VAPI simulator)"},
	{"VAPI_API_URL", vapi.APIURLDefault, "VAPI's API base URL, e.g. http://127.0.0.1:8091 for vapisim"},
	{"VAPI_PHONE_NUMBER_ID", "", "VAPI phone number id the assistant's calls are placed from"},
	{"VAPI_ASSISTANT_ID", "", "assistant of a makeCall with \"agent\": true (and of inbound calls VAPI asks about)"},
	{"PPROF_ADDR", "", "serve Go's /debug/pprof/ on this address (loopback only), for profiling; unset: off"},
	{"ALLOWED_COUNTRIES", fraud.Variables[0][1], fraud.Variables[0][2]},
	{"BLOCKED_COUNTRIES", fraud.Variables[1][1], fraud.Variables[1][2]},
	{"ALLOW_NUMBER_TYPES", fraud.Variables[2][1], fraud.Variables[2][2]},
	{"PREFIX_RATE", fraud.Variables[3][1], fraud.Variables[3][2]},
	{"COUNTRY_DAILY_SEGMENTS", fraud.Variables[4][1], fraud.Variables[4][2]},
	{"FRAUD_BLOCK_FOR", fraud.Variables[5][1], fraud.Variables[5][2]},
	{"LOG_LEVEL", "info", "debug, info, warn or error"},
	{"LOG_FORMAT", "text", "text or json"},
}

// secretVariables are shown by --help only as set or not, never their value
// (flag defaults come from the environment). Besides these, every variable
// whose name ends in _TOKEN, _SECRET, _PASSWORD or _API_KEY is secret, and a
// URL's password is never shown (REDIS_URL's redis://:password@host).
var secretVariables = map[string]bool{
	"API_TOKEN": true, twilioapi.EnvAuthToken: true, twilioapi.EnvAPISecret: true, "DASHBOARD_PASSWORD": true,
}

// secretVariable reports whether the variable name holds a secret (see
// secretVariables).
func secretVariable(name string) bool {
	if secretVariables[name] {
		return true
	}
	for _, suffix := range []string{"_TOKEN", "_SECRET", "_PASSWORD", "_API_KEY", "_HMAC_KEY"} {
		if strings.HasSuffix(name, suffix) {
			return true
		}
	}
	return false
}

// shownValue is what --help may show of a variable's value: nothing for a
// secret, a URL without its password, else the value.
func shownValue(name, val string) string {
	if val == "" {
		return ""
	}
	if secretVariable(name) {
		return ""
	}
	if u, err := url.Parse(val); err == nil && u.User != nil {
		if _, has := u.User.Password(); has {
			return u.Redacted()
		}
	}
	return val
}

// printSettings lists the flags for --help: each with its variable and the
// value it has now (from the environment or the default), secrets only as
// set or not.
func printSettings(w io.Writer, getenv func(string) string) {
	for _, v := range variables {
		val := v.def
		if env := getenv(v.name); env != "" {
			val = env
		}
		fmt.Fprintf(w, "  --%s string\n    \t%s ($%s)", flagName(v.name), v.help, v.name)
		switch shown := shownValue(v.name, val); {
		case val == "":
		case shown == "":
			fmt.Fprint(w, " (set in the environment; value not shown)")
		case shown != val:
			fmt.Fprintf(w, " (set in the environment, password not shown: %q)", shown)
		case val == v.def:
			fmt.Fprintf(w, " (default %q)", val)
		default:
			fmt.Fprintf(w, " (from the environment: %q)", val)
		}
		fmt.Fprintln(w)
	}
}

// setting is one variable's value as a flag.Value: String (what --help prints
// as the default) gives only shownValue of it.
type setting struct {
	val, shown string
}

func (s *setting) String() string {
	if s == nil {
		return ""
	}
	return s.shown
}

func (s *setting) Set(v string) error {
	s.val, s.shown = v, ""
	return nil
}

// VAPIConfig is the VAPI part of the configuration (VAPI_*).
type VAPIConfig struct {
	ServerToken   twilioapi.Secret
	HMACSecret    twilioapi.Secret
	ToolWait      time.Duration
	APIKey        twilioapi.Secret
	APIURL        string
	PhoneNumberID string
	AssistantID   string
}

// Config is the worker's validated configuration.
type Config struct {
	RedisURL         string
	RedisURLSet      bool // REDIS_URL given: never fall back to an embedded Redis
	Redis            redisconn.Conn
	Durability       redisconn.Durability // REDIS_WAIT_REPLICAS
	Twilio           twilioapi.Config
	HTTPAddr         string
	APIToken         twilioapi.Secret
	Dashboard        httpapi.Dashboard
	PublicURL        string
	Concurrency      int
	SenderRate       ratelimit.Rate
	SenderRates      map[string]ratelimit.Rate
	Pool             pool.Config // SENDER_POOL, STICKY_FOR, POOL_COOLDOWN; no Numbers: no pool
	ServiceRate      ratelimit.Rate
	ScheduleMin      time.Duration // TWILIO_SCHEDULE_MIN; 0 also without a Messaging Service or with SENDER_POOL
	RecipientRate    ratelimit.Rate
	CallRate         ratelimit.Rate
	TwilioMaxRPS     int
	TwilioMaxConc    int
	QuietHours       string
	Compliance       Compliance // compliance.go
	Fraud            fraud.Config
	Rules            tasks.Rules
	Polling          tasks.Polling
	RedeliverMax     int
	RedeliverBackoff time.Duration
	LogRetention     time.Duration
	LogMaxEntries    int64
	LogBodies        bool
	PollInterval     time.Duration
	IdlePoll         time.Duration // 0: no wake.Gate, asynq polls every PollInterval
	ShutdownTimeout  time.Duration
	PprofAddr        string
	VAPI             VAPIConfig
	LogLevel         string
	LogFormat        string
}

// flagName turns REDIS_URL into redis-url.
func flagName(v string) string { return strings.ToLower(strings.ReplaceAll(v, "_", "-")) }

// loadConfig reads the environment (through getenv) and the flags in args;
// a flag wins over its variable. Every problem is reported, each naming its
// variable.
func loadConfig(args []string, getenv func(string) string, stderr io.Writer) (Config, error) {
	fs := flag.NewFlagSet("worker", flag.ContinueOnError)
	fs.SetOutput(stderr)
	fs.Usage = func() {
		fmt.Fprintf(stderr, "worker: delivers sms:send and call:make tasks from Redis through Twilio.\n\n"+
			"Every setting is an environment variable and a flag of the same name in kebab-case\n"+
			"(REDIS_URL is --redis-url); a flag wins. With no Twilio credentials the worker runs\n"+
			"in local mode against its built-in simulator.\n\n")
		printSettings(stderr, getenv)
	}
	values := map[string]*setting{}
	for _, v := range variables {
		s := &setting{val: v.def}
		if env := getenv(v.name); env != "" {
			s.val = env
		}
		s.shown = shownValue(v.name, s.val)
		fs.Var(s, flagName(v.name), v.help+" ($"+v.name+")")
		values[v.name] = s
	}
	if err := fs.Parse(args); err != nil {
		return Config{}, err
	}
	if fs.NArg() > 0 {
		return Config{}, fmt.Errorf("unexpected argument %q; settings are flags such as --redis-url", fs.Arg(0))
	}
	get := func(name string) string { return strings.TrimSpace(values[name].val) }
	env := func(name string) string { return get(name) }

	var errs []error
	bad := func(name, format string, args ...any) {
		errs = append(errs, fmt.Errorf("%s: "+format, append([]any{name}, args...)...))
	}
	c := Config{RedisURL: get("REDIS_URL"), HTTPAddr: get("HTTP_ADDR"), APIToken: twilioapi.Secret(get("API_TOKEN")),
		PublicURL: strings.TrimRight(get("PUBLIC_URL"), "/"), QuietHours: get("QUIET_HOURS"),
		LogLevel: strings.ToLower(get("LOG_LEVEL")), LogFormat: strings.ToLower(get("LOG_FORMAT"))}

	c.RedisURLSet = c.RedisURL != ""
	if !c.RedisURLSet {
		c.RedisURL = RedisURLDefault
	}
	var perr error
	if c.Redis, perr = redisconn.Parse(c.RedisURL); perr != nil {
		bad("REDIS_URL", "%v", perr)
	}
	if c.Durability.Replicas, perr = strconv.Atoi(get("REDIS_WAIT_REPLICAS")); perr != nil || c.Durability.Replicas < 0 || c.Durability.Replicas > 100 {
		bad("REDIS_WAIT_REPLICAS", "must be a whole number from 0 to 100")
	}

	tw, err := twilioapi.ConfigFromEnv(env)
	if err != nil {
		errs = append(errs, err)
	}
	c.Twilio = tw
	if tw.HasCredentials() {
		if err := tw.WithDefaults().Validate(); err != nil {
			errs = append(errs, err)
		}
		if c.PublicURL != "" && tw.AuthToken == "" {
			// Twilio signs webhooks with the auth token, even under API-key
			// auth: without it every callback and STOP would get 403.
			errs = append(errs, fmt.Errorf("%s is required with PUBLIC_URL: Twilio signs its webhooks with it", twilioapi.EnvAuthToken))
		}
	}
	if tw.PhoneNumber != "" {
		n, err := phone.Parse(tw.PhoneNumber, get("DEFAULT_REGION"))
		if err != nil {
			bad(twilioapi.EnvPhoneNumber, "%v", err)
		}
		c.Twilio.PhoneNumber = n.String()
	}

	if _, _, err := net.SplitHostPort(c.HTTPAddr); err != nil {
		bad("HTTP_ADDR", "must be host:port, e.g. 127.0.0.1:8080")
	}
	c.Dashboard, err = dashboardConfig(get, c.HTTPAddr)
	if err != nil {
		errs = append(errs, err)
	}
	if c.APIToken == "" && !loopback(c.HTTPAddr) {
		bad("API_TOKEN", "is required when HTTP_ADDR (%s) is not a loopback address: /v1/* would be open to the network", c.HTTPAddr)
	}
	if c.PublicURL != "" {
		if u, err := url.Parse(c.PublicURL); err != nil || (u.Scheme != "http" && u.Scheme != "https") || u.Host == "" {
			bad("PUBLIC_URL", "must be an http or https URL")
		}
	}
	if c.Concurrency, err = strconv.Atoi(get("CONCURRENCY")); err != nil || c.Concurrency < 1 || c.Concurrency > 10000 {
		bad("CONCURRENCY", "must be a whole number from 1 to 10000")
	}
	rate := func(name string) ratelimit.Rate {
		r, err := ratelimit.ParseRate(get(name))
		if err != nil {
			bad(name, "%v", err)
		}
		return r
	}
	c.SenderRate, c.RecipientRate, c.CallRate = rate("SENDER_RATE"), rate("RECIPIENT_RATE"), rate("CALL_RATE")
	c.SenderRates, err = ratelimit.ParseRates(get("SENDER_RATES"), func(s string) (string, error) {
		n, err := phone.Parse(s, get("DEFAULT_REGION"))
		return n.String(), err
	})
	if err != nil {
		bad("SENDER_RATES", "%v", err)
	}
	if s := get("SENDER_POOL"); s != "" {
		if c.Pool.Numbers, err = pool.Parse(s, get("DEFAULT_REGION")); err != nil {
			bad("SENDER_POOL", "%v", err)
		}
	}
	for _, d := range []struct {
		name string
		dst  *time.Duration
	}{{"STICKY_FOR", &c.Pool.StickyFor}, {"POOL_COOLDOWN", &c.Pool.Cooldown}} {
		if *d.dst, err = time.ParseDuration(get(d.name)); err != nil || *d.dst < time.Second || *d.dst > 10*365*24*time.Hour {
			bad(d.name, "must be a duration from 1s to 87600h, such as 720h or 10m")
		}
	}
	if s := get("SERVICE_RATE"); s != "" {
		if c.ServiceRate, err = ratelimit.ParseRate(s); err != nil {
			bad("SERVICE_RATE", "%v", err)
		} else if tw.MessagingServiceSID == "" {
			bad("SERVICE_RATE", "needs %s: it is the Messaging Service's rate", twilioapi.EnvMessagingServiceSID)
		}
	}
	if s := strings.TrimSpace(get("TWILIO_SCHEDULE_MIN")); s == "0" {
		c.ScheduleMin = 0
	} else if c.ScheduleMin, err = time.ParseDuration(s); err != nil || c.ScheduleMin < tasks.ScheduleMinDefault || c.ScheduleMin > tasks.ScheduleMaxAhead {
		bad("TWILIO_SCHEDULE_MIN", "must be 0 (off) or a duration from 15m (Twilio's shortest) to 840h (its longest), such as 30m")
	}
	if tw.MessagingServiceSID == "" || len(c.Pool.Numbers) > 0 {
		c.ScheduleMin = 0 // Twilio schedules only through a Messaging Service; pooled messages go from a pool number
	}
	if c.TwilioMaxRPS, err = strconv.Atoi(get("TWILIO_MAX_RPS")); err != nil || c.TwilioMaxRPS < 1 || c.TwilioMaxRPS > 10000 {
		bad("TWILIO_MAX_RPS", "must be a whole number from 1 to 10000")
	}
	if c.TwilioMaxConc, err = strconv.Atoi(get("TWILIO_MAX_CONCURRENT")); err != nil || c.TwilioMaxConc < 1 || c.TwilioMaxConc > 10000 {
		bad("TWILIO_MAX_CONCURRENT", "must be a whole number from 1 to 10000")
	}
	maxSeg, err := strconv.Atoi(get("MAX_SEGMENTS"))
	if err != nil || maxSeg < 1 || maxSeg > 100 {
		bad("MAX_SEGMENTS", "must be a whole number from 1 to 100")
	}
	if c.Compliance, err = parseCompliance(get); err != nil {
		errs = append(errs, err)
	}
	if c.Fraud, err = fraud.ParseConfig(get); err != nil {
		errs = append(errs, err)
	}
	ttl, err := time.ParseDuration(get("RESULT_TTL"))
	if err != nil || ttl <= 0 {
		bad("RESULT_TTL", "must be a positive duration such as 24h")
	}
	region := strings.ToUpper(get("DEFAULT_REGION"))
	if region != "" && !regexp.MustCompile(`^[A-Z]{2}$`).MatchString(region) {
		bad("DEFAULT_REGION", "must be a two-letter ISO region such as US")
	}
	c.Rules = tasks.Rules{MaxSegments: maxSeg, DefaultRegion: region, ResultTTL: ttl}
	if c.PollInterval, err = time.ParseDuration(get("POLL_INTERVAL")); err != nil || c.PollInterval < time.Millisecond || c.PollInterval > 10*time.Second {
		bad("POLL_INTERVAL", "must be a duration from 1ms to 10s")
	}
	if c.IdlePoll, err = time.ParseDuration(get("IDLE_POLL_INTERVAL")); err != nil || c.IdlePoll < 0 || c.IdlePoll > time.Minute ||
		(c.IdlePoll > 0 && c.IdlePoll < c.PollInterval) {
		bad("IDLE_POLL_INTERVAL", "must be 0 or a duration from POLL_INTERVAL to 1m")
	}
	if c.ShutdownTimeout, err = time.ParseDuration(get("SHUTDOWN_TIMEOUT")); err != nil || c.ShutdownTimeout <= 0 {
		bad("SHUTDOWN_TIMEOUT", "must be a positive duration such as 10s")
	}
	dur := func(name string, lo, hi time.Duration) time.Duration {
		d, err := time.ParseDuration(get(name))
		if err != nil || d < lo || d > hi {
			bad(name, "must be a duration from %s to %s", lo, hi)
		}
		return d
	}
	c.Polling = tasks.Polling{
		First:     dur("CALL_POLL_FIRST", time.Second, time.Hour),
		Max:       dur("CALL_POLL_MAX", time.Second, time.Hour),
		FollowMax: dur("CALL_FOLLOW_MAX", time.Minute, 7*24*time.Hour),
	}
	if c.RedeliverMax, err = strconv.Atoi(get("REDELIVER_MAX")); err != nil || c.RedeliverMax < 0 || c.RedeliverMax > 10 {
		bad("REDELIVER_MAX", "must be a whole number from 0 to 10")
	}
	c.RedeliverBackoff = dur("REDELIVER_BACKOFF", time.Second, 24*time.Hour)
	c.LogRetention = dur("LOG_RETENTION", time.Hour, 10*365*24*time.Hour)
	if c.LogMaxEntries, err = strconv.ParseInt(strings.ReplaceAll(get("LOG_MAX_ENTRIES"), "_", ""), 10, 64); err != nil || c.LogMaxEntries < 1000 || c.LogMaxEntries > 1_000_000_000 {
		bad("LOG_MAX_ENTRIES", "must be a whole number from 1000 to 1000000000")
	}
	if c.LogBodies, err = commlog.ParseBodies(get("LOG_BODIES")); err != nil {
		bad("LOG_BODIES", "%v", err)
	}
	if c.PprofAddr = get("PPROF_ADDR"); c.PprofAddr != "" && !loopback(c.PprofAddr) {
		bad("PPROF_ADDR", "must be a loopback address such as 127.0.0.1:6060 (profiles show internals)")
	}
	c.VAPI = VAPIConfig{ServerToken: twilioapi.Secret(get("VAPI_SERVER_TOKEN")), HMACSecret: twilioapi.Secret(get("VAPI_HMAC_SECRET")),
		APIKey: twilioapi.Secret(get("VAPI_API_KEY")), APIURL: strings.TrimRight(get("VAPI_API_URL"), "/"),
		PhoneNumberID: get("VAPI_PHONE_NUMBER_ID"), AssistantID: get("VAPI_ASSISTANT_ID")}
	c.VAPI.ToolWait = dur("VAPI_TOOL_WAIT", 0, time.Minute)
	if u, err := url.Parse(c.VAPI.APIURL); err != nil || (u.Scheme != "http" && u.Scheme != "https") || u.Host == "" {
		bad("VAPI_API_URL", "must be an http or https URL")
	}
	if c.VAPI.APIKey != "" && c.VAPI.PhoneNumberID == "" {
		bad("VAPI_PHONE_NUMBER_ID", "is required with VAPI_API_KEY: VAPI places an assistant's calls from it")
	}
	if c.VAPI.AssistantID != "" && !regexp.MustCompile(`^[A-Za-z0-9_-]{1,64}$`).MatchString(c.VAPI.AssistantID) {
		bad("VAPI_ASSISTANT_ID", "must be a VAPI assistant id (letters, digits, '-' and '_')")
	}
	c.Rules.AssistantID = c.VAPI.AssistantID
	switch c.LogLevel {
	case "debug", "info", "warn", "error":
	default:
		bad("LOG_LEVEL", "must be debug, info, warn or error")
	}
	if c.LogFormat != "text" && c.LogFormat != "json" {
		bad("LOG_FORMAT", "must be text or json")
	}
	return c, errors.Join(errs...)
}

// loopback reports whether addr (host:port) listens on loopback only.
func loopback(addr string) bool {
	host, _, err := net.SplitHostPort(addr)
	if err != nil {
		return false
	}
	if host == "localhost" {
		return true
	}
	ip := net.ParseIP(host)
	return ip != nil && ip.IsLoopback()
}

// hostName is a DNS name or an IPv4 address (DASHBOARD_HOSTS).
var hostName = regexp.MustCompile(`^[A-Za-z0-9]([A-Za-z0-9-]*[A-Za-z0-9])?(\.[A-Za-z0-9]([A-Za-z0-9-]*[A-Za-z0-9])?)*$`)

// dashboardConfig reads DASHBOARD_*. On a non-loopback address without a
// user and password the dashboard is switched off (it shows message bodies,
// 2FA codes among them); serve reports that at start-up.
func dashboardConfig(get func(string) string, httpAddr string) (httpapi.Dashboard, error) {
	var errs []error
	readOnly, err := strconv.ParseBool(get("DASHBOARD_READONLY"))
	if err != nil {
		errs = append(errs, errors.New("DASHBOARD_READONLY: must be true or false"))
	}
	d := httpapi.Dashboard{Writable: err == nil && !readOnly, User: get("DASHBOARD_USER"),
		Password: twilioapi.Secret(get("DASHBOARD_PASSWORD"))}
	for _, h := range strings.Split(get("DASHBOARD_HOSTS"), ",") {
		if h = strings.TrimSpace(h); h == "" {
			continue
		}
		if !hostName.MatchString(h) {
			errs = append(errs, errors.New("DASHBOARD_HOSTS: each entry must be a host name or address without scheme or port, e.g. ops.example.com"))
			break
		}
		d.Hosts = append(d.Hosts, h)
	}
	switch {
	case d.User != "" && d.Password == "":
		errs = append(errs, errors.New("DASHBOARD_PASSWORD: is required when DASHBOARD_USER is set"))
	case d.User == "" && d.Password != "":
		errs = append(errs, errors.New("DASHBOARD_USER: is required when DASHBOARD_PASSWORD is set"))
	case d.User == "" && !loopback(httpAddr):
		d.Disabled = true
	}
	return d, errors.Join(errs...)
}
