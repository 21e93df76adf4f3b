// Command twiliosim serves the Twilio REST API simulator (package twiliosim)
// on its own, for local runs, integration tests and benchmarks of the worker:
//
//	twiliosim --addr 127.0.0.1:8089 --latency 50ms-150ms --error-rate 0.05
//
// Point the worker at it with TWILIO_API_URL=http://127.0.0.1:8089 and the
// simulator's credentials (account SID AC + 32 zeros, auth token 32 zeros,
// unless --account-sid and --auth-token say otherwise). Bad flag values exit
// with status 2 and a message naming the flag.
package main

import (
	"context"
	"errors"
	"flag"
	"fmt"
	"io"
	"log/slog"
	"net"
	"net/http"
	"os"
	"os/signal"
	"strings"
	"syscall"
	"time"

	"github.com/sbagenthub/twilio-worker/twiliosim"
)

// AddrDefault is where the simulator listens unless --addr says otherwise.
const AddrDefault = "127.0.0.1:8089"

// shutdownTimeout bounds the wait for requests in flight on SIGINT/SIGTERM.
const shutdownTimeout = 5 * time.Second

func main() {
	ctx, stop := signal.NotifyContext(context.Background(), os.Interrupt, syscall.SIGTERM)
	defer stop()
	os.Exit(run(ctx, os.Args[1:], os.Stderr, nil))
}

// usageError is a bad command line: exit status 2.
type usageError struct{ msg string }

func (e *usageError) Error() string { return e.msg }

// parseFlags turns the command line into a listen address and a Config.
func parseFlags(args []string, stderr io.Writer) (string, twiliosim.Config, error) {
	fs := flag.NewFlagSet("twiliosim", flag.ContinueOnError)
	fs.SetOutput(stderr)
	var (
		cfg     twiliosim.Config
		latency string
	)
	addr := fs.String("addr", AddrDefault, "listen address")
	fs.StringVar(&cfg.AccountSID, "account-sid", twiliosim.AccountSIDDefault, "account SID clients authenticate with")
	fs.StringVar(&cfg.AuthToken, "auth-token", twiliosim.AuthTokenDefault, "auth token clients authenticate with; also signs webhooks")
	fs.StringVar(&latency, "latency", "0", "delay before each API answer: 0, a duration (100ms) or a range (50ms-150ms)")
	fs.Float64Var(&cfg.ErrorRate, "error-rate", 0, "share of API requests answered 503, 0 to 1")
	fs.IntVar(&cfg.MaxConcurrent, "max-concurrent", 0, "in-flight API requests above which 429/20429 is answered; 0 = no cap")
	fs.Float64Var(&cfg.DropRate, "drop-rate", 0, "share of creates whose connection is dropped after the record is made, 0 to 1")
	fs.StringVar(&cfg.InboundURL, "inbound-url", "", "where POST /sim/inbound delivers inbound SMS webhooks")
	fs.DurationVar(&cfg.CallRing, "call-ring", twiliosim.CallRingDefault, "ringing time before a call is answered")
	fs.DurationVar(&cfg.CallDuration, "call-duration", twiliosim.CallDurationDefault, "talk time of an answered call")
	fs.DurationVar(&cfg.DeliveryDelay, "delivery-delay", twiliosim.DeliveryDelayDefault, "time between message status steps")
	if err := fs.Parse(args); err != nil {
		return "", cfg, &usageError{err.Error()}
	}
	if fs.NArg() > 0 {
		return "", cfg, &usageError{fmt.Sprintf("unexpected argument %q", fs.Arg(0))}
	}
	l, err := twiliosim.ParseLatency(latency)
	if err != nil {
		return "", cfg, &usageError{"--latency: " + err.Error()}
	}
	cfg.Latency = l
	checks := []struct {
		flag string
		bad  bool
		want string
	}{
		{"--addr", *addr == "", "a host:port"},
		{"--error-rate", !(cfg.ErrorRate >= 0 && cfg.ErrorRate <= 1), "a share between 0 and 1"},
		{"--drop-rate", !(cfg.DropRate >= 0 && cfg.DropRate <= 1), "a share between 0 and 1"},
		{"--max-concurrent", cfg.MaxConcurrent < 0, "0 or more"},
		{"--call-ring", cfg.CallRing <= 0, "a positive duration"},
		{"--call-duration", cfg.CallDuration <= 0, "a positive duration"},
		{"--delivery-delay", cfg.DeliveryDelay <= 0, "a positive duration"},
		{"--auth-token", cfg.AuthToken == "", "a token"},
	}
	for _, c := range checks {
		if c.bad {
			return "", cfg, &usageError{fmt.Sprintf("%s: want %s", c.flag, c.want)}
		}
	}
	if err := cfg.Validate(); err != nil {
		flagFor := map[string]string{"AccountSID": "--account-sid", "InboundURL": "--inbound-url"}
		for field, name := range flagFor {
			if strings.HasPrefix(err.Error(), field) {
				return "", cfg, &usageError{name + ": " + err.Error()}
			}
		}
		return "", cfg, &usageError{err.Error()}
	}
	return *addr, cfg, nil
}

// run serves until ctx ends and returns the exit status. ready, if not nil,
// learns the address listened on.
func run(ctx context.Context, args []string, stderr io.Writer, ready func(net.Addr)) int {
	addr, cfg, err := parseFlags(args, stderr)
	if err != nil {
		if errors.Is(err, flag.ErrHelp) {
			return 0
		}
		fmt.Fprintln(stderr, "twiliosim:", err)
		return 2
	}
	log := slog.New(slog.NewTextHandler(stderr, nil))
	cfg.Logger = log
	sim := twiliosim.New(cfg)
	defer sim.Close()

	ln, err := net.Listen("tcp", addr)
	if err != nil {
		log.Error("listen", "addr", addr, "err", err)
		return 1
	}
	srv := &http.Server{Handler: sim, ReadHeaderTimeout: 10 * time.Second}
	knobs := sim.Knobs()
	log.Info("twiliosim listening",
		"addr", ln.Addr().String(),
		"url", "http://"+ln.Addr().String(),
		"accountSid", sim.AccountSID(),
		"latency", knobs.Latency.String(),
		"errorRate", knobs.ErrorRate,
		"maxConcurrent", knobs.MaxConcurrent,
		"dropRate", knobs.DropRate,
		"callRing", knobs.CallRing,
		"callDuration", knobs.CallDuration,
		"deliveryDelay", knobs.DeliveryDelay,
	)
	if ready != nil {
		ready(ln.Addr())
	}

	errc := make(chan error, 1)
	go func() { errc <- srv.Serve(ln) }()
	select {
	case err := <-errc:
		log.Error("serve", "err", err)
		return 1
	case <-ctx.Done():
	}
	log.Info("twiliosim shutting down")
	shutCtx, cancel := context.WithTimeout(context.Background(), shutdownTimeout)
	defer cancel()
	if err := srv.Shutdown(shutCtx); err != nil {
		log.Warn("shutdown", "err", err)
	}
	<-errc
	return 0
}
