// Command worker delivers the SMS (sms:send) and voice calls (call:make)
// queued in Redis through Twilio (or VAPI for an assistant's calls), follows
// them to their end (sms:track, call:poll) and serves the agent hub's HTTP
// API, Twilio's and VAPI's webhooks, metrics and the dashboard (see
// DESIGN.md). Every task enters the queue through the producer package: the
// API's through a producer.Producer, the handlers' own polls and
// redeliveries through producer.FollowUps. With no Twilio credentials it
// runs in local mode against the built-in simulator; with REDIS_URL unset
// and no Redis answering, it starts an embedded in-memory Redis.
package main

import (
	"context"
	"crypto/rand"
	"encoding/hex"
	"errors"
	"flag"
	"fmt"
	"io"
	"log/slog"
	"net"
	"net/http"
	"net/http/pprof"
	"os"
	"os/signal"
	"slices"
	"syscall"
	"time"

	"github.com/alicebob/miniredis/v2"
	"github.com/hibiken/asynq"
	asynqmetrics "github.com/hibiken/asynq/x/metrics"
	"github.com/prometheus/client_golang/prometheus"
	"github.com/prometheus/client_golang/prometheus/collectors"
	"github.com/redis/go-redis/v9"

	"github.com/sbagenthub/twilio-worker/calls"
	"github.com/sbagenthub/twilio-worker/campaign"
	"github.com/sbagenthub/twilio-worker/commlog"
	"github.com/sbagenthub/twilio-worker/delivery"
	"github.com/sbagenthub/twilio-worker/fraud"
	"github.com/sbagenthub/twilio-worker/httpapi"
	"github.com/sbagenthub/twilio-worker/internal/keymigrate"
	"github.com/sbagenthub/twilio-worker/internal/redisconn"
	"github.com/sbagenthub/twilio-worker/ledger"
	"github.com/sbagenthub/twilio-worker/metrics"
	"github.com/sbagenthub/twilio-worker/optout"
	"github.com/sbagenthub/twilio-worker/pool"
	"github.com/sbagenthub/twilio-worker/producer"
	"github.com/sbagenthub/twilio-worker/ratelimit"
	"github.com/sbagenthub/twilio-worker/tasks"
	"github.com/sbagenthub/twilio-worker/twilioapi"
	"github.com/sbagenthub/twilio-worker/twiliosim"
	"github.com/sbagenthub/twilio-worker/vapi"
	"github.com/sbagenthub/twilio-worker/vapisim"
	"github.com/sbagenthub/twilio-worker/wake"
)

// Local mode's fixed points: where the built-in simulator listens and the
// sender it uses when TWILIO_PHONE_NUMBER is unset.
const (
	LocalSimAddr = "127.0.0.1:8089"
	LocalFrom    = "+15005550006"
	// LocalVAPIAddr is where the built-in VAPI simulator listens in local
	// mode without VAPI_API_KEY; LocalVAPIPhoneNumberID its phone number id.
	LocalVAPIAddr          = "127.0.0.1:8091"
	LocalVAPIPhoneNumberID = "vapisim-phone-number"
)

func main() {
	os.Exit(run(os.Args[1:], os.Getenv, os.Stderr))
}

// run returns the exit code: 0 after a clean shutdown, 2 for bad
// configuration, 1 for anything else.
func run(args []string, getenv func(string) string, stderr io.Writer) int {
	cfg, err := loadConfig(args, getenv, stderr)
	if errors.Is(err, flag.ErrHelp) {
		return 0
	}
	if err != nil {
		fmt.Fprintf(stderr, "worker: configuration:\n%v\n", indent(err))
		return 2
	}
	log := newLogger(cfg, stderr)
	ctx, stop := signal.NotifyContext(context.Background(), syscall.SIGINT, syscall.SIGTERM)
	defer stop()
	if err := serve(ctx, cfg, log); err != nil {
		log.Error("worker stopped", "err", err)
		var ce configError
		if errors.As(err, &ce) {
			return 2
		}
		return 1
	}
	log.Info("worker stopped")
	return 0
}

// configError is a start-up failure the configuration causes (REDIS_URL
// names a deployment it is not): exit status 2.
type configError struct{ error }

func (e configError) Unwrap() error { return e.error }

func serve(ctx context.Context, cfg Config, log *slog.Logger) error {
	rdb, embedded, closeRedis, err := connectRedis(ctx, cfg, log)
	if err != nil {
		return err
	}
	defer closeRedis()
	legacyLedger := false
	if !embedded {
		rep, err := keymigrate.Run(ctx, rdb)
		if err != nil {
			return fmt.Errorf("move keys to the tagged layout: %w", err)
		}
		if rep.Moved+rep.Merged > 0 || rep.LegacyLedger > 0 {
			log.Info("moved keys to the hash-tagged layout (docs/keys.md)", "moved", rep.Moved, "merged", rep.Merged,
				"legacyLedger", rep.LegacyLedger)
		}
		legacyLedger = rep.LegacyLedger > 0
	}

	reg := prometheus.NewRegistry()
	reg.MustRegister(collectors.NewGoCollector(), collectors.NewProcessCollector(collectors.ProcessCollectorOpts{}))
	m := metrics.New(reg)

	twCfg := cfg.Twilio
	if !twCfg.HasCredentials() {
		sim, simURL, err := startLocalSimulator(log)
		if err != nil {
			return err
		}
		defer sim.Close()
		twCfg.AccountSID, twCfg.AuthToken = twiliosim.AccountSIDDefault, twilioapi.Secret(twiliosim.AuthTokenDefault)
		twCfg.BaseURL = simURL
		if twCfg.PhoneNumber == "" && twCfg.MessagingServiceSID == "" {
			twCfg.PhoneNumber = LocalFrom
		}
	}
	twCfg.Observe = m.ObserveTwilio
	twCfg.Pace = ratelimit.NewPacer(cfg.TwilioMaxRPS, cfg.TwilioMaxConc).Acquire
	tw, err := twilioapi.New(twCfg)
	if err != nil {
		return err
	}
	var statusCallback string
	if cfg.PublicURL != "" {
		statusCallback = cfg.PublicURL + "/twilio/status"
	}

	limiter, err := newLimiter(ctx, rdb, cfg, twCfg, log)
	if err != nil {
		return err
	}

	senders, err := newPool(ctx, rdb, cfg, limiter, log)
	if err != nil {
		return err
	}

	agents, vapiAuth, closeVAPI, err := connectVAPI(cfg, !cfg.Twilio.HasCredentials(), log)
	if err != nil {
		return err
	}
	defer closeVAPI()

	commLog := commlog.New(rdb, commlog.Config{Retention: cfg.LogRetention, MaxEntries: cfg.LogMaxEntries, KeepBodies: cfg.LogBodies})
	metrics.ObserveLogEntries(reg, func() (int64, error) {
		lctx, cancel := context.WithTimeout(context.Background(), 2*time.Second)
		defer cancel()
		return commLog.Len(lctx)
	})
	optouts := optout.NewStore(rdb).WithLog(commLog)
	records := calls.NewStore(rdb)
	records.Comms = commLog // placed, each status, ended
	sends := ledger.New(rdb).WithDurability(cfg.Durability).ReadLegacy(legacyLedger)
	fraudCfg := cfg.Fraud
	fraudCfg.Comms, fraudCfg.Metrics, fraudCfg.Logger = commLog, m, log
	guard := fraud.New(rdb, fraudCfg)
	// Every task enters the queue through the producer package: the API's
	// through a Producer, the handlers' own follow-ups through FollowUps.
	enqueuer := asynq.NewClientFromRedisClient(rdb)
	followUps := &producer.FollowUps{Redis: rdb, Client: enqueuer}
	tracker := &tasks.Tracker{
		Store: delivery.NewStore(rdb), Fetcher: tw, FollowUps: followUps, Rules: cfg.Rules, Polling: cfg.Polling,
		RedeliverMax: cfg.RedeliverMax, RedeliverBackoff: cfg.RedeliverBackoff, Comms: commLog, Logger: log, Metrics: m,
		Guard: guard,
	}
	if cfg.PublicURL != "" {
		tracker.FirstPoll = time.Minute // status callbacks are expected; polling is the safety net
	}
	mux := tasks.NewMux() // exact types: asynq's ServeMux would run look-alikes such as sms:sendx
	mux.Logger = log
	mux.Handle(tasks.TypeTrackSMS, tracker)
	mux.Handle(tasks.TypeMakeCall, &tasks.CallHandler{
		Caller: tw, OptOuts: optouts, Records: records, Ledger: sends, Limiter: limiter, FollowUps: followUps, Rules: cfg.Rules,
		Polling: cfg.Polling, StatusCallback: statusCallback, Logger: log, Metrics: m, Guard: guard, Agents: agentCaller(agents),
	})
	mux.Handle(tasks.TypePollCall, &tasks.PollHandler{
		Caller: tw, Records: records, Polling: cfg.Polling, Logger: log, Metrics: m, Agents: agentCaller(agents), Comms: commLog,
	})
	smsHandler := &tasks.SMSHandler{
		Messenger: tw, OptOuts: optouts, Ledger: sends, Tracker: tracker, Comms: commLog, Rules: cfg.Rules,
		StatusCallback: statusCallback, Logger: log, Metrics: m,
		Marketing: cfg.Compliance.Marketing(),
		Limiter:   limiter,
		Campaigns: campaign.NewStore(rdb),
		Guard:     guard,
		Redis:     rdb, // one round trip before the request, one after (tasks/roundtrips.go)

		ScheduleMin: cfg.ScheduleMin,
	}
	if err := producer.PublishScheduling(ctx, rdb, cfg.ScheduleMin); err != nil {
		return err
	}
	if senders != nil {
		smsHandler.Pool, smsHandler.PoolBooker = senders, pool.WithPool(limiter, senders)
	}
	mux.Handle(tasks.TypeSendSMS, smsHandler)

	delayedCheck := 100 * time.Millisecond
	if cfg.IdlePoll > 0 {
		// An idle worker polls each queue every IDLE_POLL_INTERVAL and moves
		// due tasks once a second, until a producer announces work.
		gate := &wake.Gate{Idle: cfg.IdlePoll, OnMoved: func() { wake.Announce(ctx, rdb) }}
		rdb.AddHook(gate)
		go wake.Listen(ctx, rdb, gate)
		delayedCheck = min(cfg.PollInterval, delayedCheck) // the gate skips all but the rounds that can find work
	}
	srv := asynq.NewServerFromRedisClient(rdb, asynq.Config{
		Concurrency:              cfg.Concurrency,
		Queues:                   tasks.Queues,
		TaskCheckInterval:        cfg.PollInterval,
		DelayedTaskCheckInterval: delayedCheck,
		RetryDelayFunc:           tasks.RetryDelay,
		IsFailure:                tasks.IsFailure,
		ShutdownTimeout:          cfg.ShutdownTimeout,
		Logger:                   asynqLogger{log.With("component", "asynq")},
		LogLevel:                 asynqLevel(cfg.LogLevel),
		HealthCheckFunc: func(err error) {
			if err != nil {
				log.Warn("redis health check failed", "err", err)
			}
		},
	})
	if err := srv.Start(mux); err != nil {
		return fmt.Errorf("start task server: %w", err)
	}
	api := &httpapi.Server{
		Redis: rdb, Inspector: asynq.NewInspectorFromRedisClient(rdb),
		OptOuts: optouts, Calls: records, Ledger: sends, Tracker: tracker, Pool: senders, Twilio: tw, Rules: cfg.Rules, Registry: reg, Metrics: m, Logger: log,
		Producer: &producer.Producer{Redis: rdb, Client: enqueuer, Booker: pool.WithPool(limiter, senders), Releaser: limiter, Comms: commLog,
			Calls: records, Fetcher: tw, Rules: cfg.Rules, Source: "HTTP API", Logger: log, Durability: cfg.Durability, Guard: guard.CheckEnqueue,
			GuardNumber: guard.CheckNumber, ScheduleMin: cfg.ScheduleMin, Canceler: tw},
		AuthToken: twCfg.AuthToken, PublicURL: cfg.PublicURL,
		APIToken: cfg.APIToken, Dashboard: cfg.Dashboard,
		HelpText: cfg.Compliance.HelpText,
		Guard:    guard,
		VAPI: &vapi.Handler{Auth: vapiAuth, Calls: records, Comms: commLog, ToolWait: cfg.VAPI.ToolWait,
			AssistantID: cfg.VAPI.AssistantID, Logger: log.With("component", "vapi"), Observe: m.VAPIToolCall,
			Ours: func(n string) bool {
				return n != "" && (n == twCfg.PhoneNumber || slices.Contains(cfg.Pool.Numbers, n))
			}},
		Agents: agentCaller(agents),
	}
	reg.MustRegister(asynqmetrics.NewQueueMetricsCollector(api.Inspector)) // asynq_* queue metrics
	if cfg.Dashboard.Disabled {
		log.Warn("dashboard off: set DASHBOARD_USER and DASHBOARD_PASSWORD to serve /monitoring/ on a non-loopback HTTP_ADDR", "http", cfg.HTTPAddr)
	}
	if cfg.PprofAddr != "" {
		pp, err := startHTTP(cfg.PprofAddr, pprofHandler(), log)
		if err != nil {
			return err
		}
		defer pp.Close()
		log.Info("profiling at http://"+cfg.PprofAddr+"/debug/pprof/", "addr", cfg.PprofAddr)
	}
	httpSrv, err := startHTTP(cfg.HTTPAddr, api.Handler(), log)
	if err != nil {
		srv.Shutdown()
		return err
	}
	log.Info("worker started", "concurrency", cfg.Concurrency, "queues", tasks.Queues,
		"http", "http://"+cfg.HTTPAddr, "twilio", tw.String())

	<-ctx.Done()
	log.Info("shutting down: finishing running tasks, re-queueing the rest", "grace", cfg.ShutdownTimeout)
	shutdownCtx, cancel := context.WithTimeout(context.Background(), 5*time.Second)
	defer cancel()
	_ = httpSrv.Shutdown(shutdownCtx)
	srv.Shutdown()
	return nil
}

func startHTTP(addr string, h http.Handler, log *slog.Logger) (*http.Server, error) {
	ln, err := net.Listen("tcp", addr)
	if err != nil {
		return nil, fmt.Errorf("HTTP_ADDR %s: %w", addr, err)
	}
	srv := &http.Server{Handler: h, ReadHeaderTimeout: 10 * time.Second}
	go func() {
		if err := srv.Serve(ln); err != nil && !errors.Is(err, http.ErrServerClosed) {
			log.Error("http server", "err", err)
		}
	}()
	return srv, nil
}

// connectRedis connects to REDIS_URL and checks that the deployment is what
// the URL says (redisconn.Check): a mismatch is a configError. When
// REDIS_URL is unset and nothing answers at the default address, it starts an
// embedded in-memory Redis there (embedded is then true).
func connectRedis(ctx context.Context, cfg Config, log *slog.Logger) (rdb redis.UniversalClient, embedded bool, closeFn func(), err error) {
	rdb = cfg.Redis.Client()
	err = redisconn.Check(ctx, cfg.Redis, rdb)
	if err == nil {
		log.Info("redis connected", "kind", cfg.Redis.Kind, "url", cfg.Redis.Redacted(), "waitReplicas", cfg.Durability.Replicas)
		return rdb, false, func() { _ = rdb.Close() }, nil
	}
	_ = rdb.Close()
	if !errors.Is(err, redisconn.ErrUnreachable) {
		return nil, false, nil, configError{fmt.Errorf("REDIS_URL %s: %w", cfg.Redis.Redacted(), err)}
	}
	if cfg.RedisURLSet {
		return nil, false, nil, fmt.Errorf("REDIS_URL %s: %w", cfg.Redis.Redacted(), err)
	}
	addr, stopRedis, err := startEmbeddedRedis(cfg.Redis.Opt)
	if err != nil {
		return nil, false, nil, fmt.Errorf("no Redis at %s and the embedded one could not start: %w", RedisURLDefault, err)
	}
	log.Warn("LOCAL MODE: no Redis answered, so an embedded in-memory Redis is running at "+addr+
		"; its data is lost when the worker exits. Set REDIS_URL for a real one.", "addr", addr)
	rdb = cfg.Redis.Client()
	return rdb, true, func() { _ = rdb.Close(); stopRedis() }, nil
}

// startEmbeddedRedis starts miniredis at the address REDIS_URL defaults to,
// and lets its clock follow real time (miniredis TTLs only move on
// FastForward; asynq's leases and results depend on them). stop closes it.
func startEmbeddedRedis(opt asynq.RedisConnOpt) (addr string, stop func(), err error) {
	addr = "127.0.0.1:6379"
	if o, ok := opt.(asynq.RedisClientOpt); ok {
		addr = o.Addr
	}
	mr := miniredis.NewMiniRedis()
	if err := mr.StartAddr(addr); err != nil {
		return "", nil, err
	}
	done, ticked := make(chan struct{}), make(chan struct{})
	go func() {
		defer close(ticked)
		const tick = 100 * time.Millisecond
		t := time.NewTicker(tick)
		defer t.Stop()
		last := time.Now()
		for {
			select {
			case <-done:
				return
			case now := <-t.C:
				mr.SetTime(now)
				mr.FastForward(now.Sub(last))
				last = now
			}
		}
	}()
	return mr.Addr(), func() { close(done); <-ticked; mr.Close() }, nil
}

// startLocalSimulator serves the built-in Twilio simulator on LocalSimAddr
// (or a free port when that is taken).
func startLocalSimulator(log *slog.Logger) (*localSim, string, error) {
	ln, err := net.Listen("tcp", LocalSimAddr)
	if err != nil {
		ln, err = net.Listen("tcp", "127.0.0.1:0")
		if err != nil {
			return nil, "", fmt.Errorf("start the built-in simulator: %w", err)
		}
	}
	sim := twiliosim.New(twiliosim.Config{Logger: log.With("component", "twiliosim")})
	hs := &http.Server{Handler: sim, ReadHeaderTimeout: 10 * time.Second}
	go func() { _ = hs.Serve(ln) }()
	url := "http://" + ln.Addr().String()
	log.Warn("LOCAL MODE: no Twilio credentials, so the built-in simulator at "+url+
		" answers instead of Twilio. NOTHING REAL IS SENT. See "+url+"/sim/messages; set "+
		twilioapi.EnvAccountSID+" and "+twilioapi.EnvAuthToken+" to send for real.", "simulator", url)
	return &localSim{sim: sim, http: hs}, url, nil
}

type localSim struct {
	sim  *twiliosim.Server
	http *http.Server
}

func (l *localSim) Close() {
	ctx, cancel := context.WithTimeout(context.Background(), 2*time.Second)
	defer cancel()
	_ = l.http.Shutdown(ctx)
	l.sim.Close()
}

// pprofHandler serves Go's profiles (PPROF_ADDR).
func pprofHandler() http.Handler {
	mux := http.NewServeMux()
	mux.HandleFunc("/debug/pprof/", pprof.Index)
	mux.HandleFunc("/debug/pprof/profile", pprof.Profile)
	mux.HandleFunc("/debug/pprof/trace", pprof.Trace)
	mux.HandleFunc("/debug/pprof/symbol", pprof.Symbol)
	mux.HandleFunc("/debug/pprof/cmdline", pprof.Cmdline)
	return mux
}

// connectVAPI returns the VAPI client for calls an assistant conducts and
// the Server URL's authentication. With VAPI_API_KEY it is VAPI at
// VAPI_API_URL; in local mode without it, the built-in simulator, which
// reports its calls to this worker's /vapi/server (with a token made up
// for the run when neither VAPI_SERVER_TOKEN nor VAPI_HMAC_SECRET is set);
// otherwise nil: no assistant calls.
func connectVAPI(cfg Config, local bool, log *slog.Logger) (*vapi.Client, vapi.Auth, func(), error) {
	auth := vapi.Auth{Token: cfg.VAPI.ServerToken, HMACSecret: cfg.VAPI.HMACSecret}
	if cfg.VAPI.ToolWait >= 20*time.Second {
		log.Warn("VAPI_TOOL_WAIT is at or above VAPI's default tool timeout (20 s): raise the tools' timeoutSeconds, or VAPI gives up first", "wait", cfg.VAPI.ToolWait)
	}
	if cfg.VAPI.APIKey != "" {
		return &vapi.Client{BaseURL: cfg.VAPI.APIURL, APIKey: cfg.VAPI.APIKey, PhoneNumberID: cfg.VAPI.PhoneNumberID}, auth, func() {}, nil
	}
	if !local {
		return nil, auth, func() {}, nil
	}
	if !auth.Enabled() {
		var b [16]byte
		_, _ = rand.Read(b[:])
		auth.Token = twilioapi.Secret(hex.EncodeToString(b[:]))
	}
	ln, err := net.Listen("tcp", LocalVAPIAddr)
	if err != nil {
		if ln, err = net.Listen("tcp", "127.0.0.1:0"); err != nil {
			return nil, auth, nil, fmt.Errorf("start the built-in VAPI simulator: %w", err)
		}
	}
	sim := vapisim.New(vapisim.Config{ServerURL: "http://" + cfg.HTTPAddr + "/vapi/server",
		ServerToken: auth.Token.Reveal(), HMACSecret: auth.HMACSecret.Reveal(), Logger: log.With("component", "vapisim")})
	url := "http://" + ln.Addr().String()
	sim.SetBaseURL(url)
	hs := &http.Server{Handler: sim, ReadHeaderTimeout: 10 * time.Second}
	go func() { _ = hs.Serve(ln) }()
	log.Warn("LOCAL MODE: no VAPI_API_KEY, so the built-in VAPI simulator at "+url+
		" places the calls assistants conduct and sends tool calls (POST "+url+"/sim/tool-call) to /vapi/server. "+
		"NOTHING REAL IS CALLED. Set VAPI_API_KEY and VAPI_PHONE_NUMBER_ID for VAPI.", "simulator", url)
	closeFn := func() {
		ctx, cancel := context.WithTimeout(context.Background(), 2*time.Second)
		defer cancel()
		_ = hs.Shutdown(ctx)
		sim.Close()
	}
	return &vapi.Client{BaseURL: url, APIKey: twilioapi.Secret(vapisim.APIKeyDefault), PhoneNumberID: LocalVAPIPhoneNumberID}, auth, closeFn, nil
}

// agentCaller keeps a nil client a nil interface.
func agentCaller(c *vapi.Client) tasks.AgentCaller {
	if c == nil {
		return nil
	}
	return c
}
