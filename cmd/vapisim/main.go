// Command vapisim serves the VAPI simulator (package vapisim) on its own,
// for local runs and integration tests of the worker:
//
//	vapisim --addr 127.0.0.1:8091 --server-url http://127.0.0.1:8080/vapi/server --server-token s3cret
//
// Point the worker at it with VAPI_API_URL=http://127.0.0.1:8091 and
// VAPI_API_KEY set to --api-key. Bad flag values exit with status 2 and a
// message naming the flag.
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
	"net/url"
	"os"
	"os/signal"
	"syscall"
	"time"

	"github.com/sbagenthub/twilio-worker/twiliosim"
	"github.com/sbagenthub/twilio-worker/vapisim"
)

const shutdownTimeout = 5 * time.Second

func main() {
	ctx, stop := signal.NotifyContext(context.Background(), os.Interrupt, syscall.SIGTERM)
	defer stop()
	os.Exit(run(ctx, os.Args[1:], os.Stderr))
}

type usageError struct{ msg string }

func (e *usageError) Error() string { return e.msg }

func parseFlags(args []string, stderr io.Writer) (string, vapisim.Config, error) {
	fs := flag.NewFlagSet("vapisim", flag.ContinueOnError)
	fs.SetOutput(stderr)
	var cfg vapisim.Config
	var latency string
	addr := fs.String("addr", vapisim.AddrDefault, "listen address")
	fs.StringVar(&cfg.APIKey, "api-key", vapisim.APIKeyDefault, "the private key clients send as Bearer")
	fs.StringVar(&cfg.ServerURL, "server-url", "", "the Server URL server messages go to (the worker's /vapi/server)")
	fs.StringVar(&cfg.ServerToken, "server-token", "", "sent as Authorization: Bearer with every server message")
	fs.StringVar(&cfg.HMACSecret, "hmac-secret", "", "signs every server message (x-signature of \"{x-timestamp}.{body}\")")
	fs.StringVar(&latency, "latency", "0", "delay before each API answer: 0, a duration (100ms) or a range (50ms-150ms)")
	fs.Float64Var(&cfg.ErrorRate, "error-rate", 0, "share of API requests answered 500, 0 to 1")
	fs.Float64Var(&cfg.DropRate, "drop-rate", 0, "share of call creates whose connection is dropped after the call is made, 0 to 1")
	fs.DurationVar(&cfg.CallRing, "call-ring", vapisim.CallRingDefault, "ringing time before a call is answered")
	fs.DurationVar(&cfg.CallDuration, "call-duration", vapisim.CallDurationDefault, "talk time of an answered call")
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
	if cfg.ServerURL != "" {
		if u, err := url.Parse(cfg.ServerURL); err != nil || (u.Scheme != "http" && u.Scheme != "https") || u.Host == "" {
			return "", cfg, &usageError{"--server-url: want an http or https URL"}
		}
	}
	checks := []struct {
		flag string
		bad  bool
		want string
	}{
		{"--addr", *addr == "", "a host:port"},
		{"--api-key", cfg.APIKey == "", "a key"},
		{"--error-rate", !(cfg.ErrorRate >= 0 && cfg.ErrorRate <= 1), "a share between 0 and 1"},
		{"--drop-rate", !(cfg.DropRate >= 0 && cfg.DropRate <= 1), "a share between 0 and 1"},
		{"--call-ring", cfg.CallRing <= 0, "a positive duration"},
		{"--call-duration", cfg.CallDuration <= 0, "a positive duration"},
	}
	for _, c := range checks {
		if c.bad {
			return "", cfg, &usageError{fmt.Sprintf("%s: want %s", c.flag, c.want)}
		}
	}
	return *addr, cfg, nil
}

func run(ctx context.Context, args []string, stderr io.Writer) int {
	addr, cfg, err := parseFlags(args, stderr)
	if err != nil {
		if errors.Is(err, flag.ErrHelp) {
			return 0
		}
		fmt.Fprintln(stderr, "vapisim:", err)
		return 2
	}
	log := slog.New(slog.NewTextHandler(stderr, nil))
	cfg.Logger = log
	ln, err := net.Listen("tcp", addr)
	if err != nil {
		log.Error("listen", "addr", addr, "err", err)
		return 1
	}
	sim := vapisim.New(cfg)
	defer sim.Close()
	sim.SetBaseURL("http://" + ln.Addr().String())
	srv := &http.Server{Handler: sim, ReadHeaderTimeout: 10 * time.Second}
	log.Info("vapisim listening", "url", "http://"+ln.Addr().String(), "serverUrl", cfg.ServerURL,
		"auth", authMode(cfg), "callRing", cfg.CallRing, "callDuration", cfg.CallDuration,
		"latency", cfg.Latency.String(), "errorRate", cfg.ErrorRate, "dropRate", cfg.DropRate)
	errc := make(chan error, 1)
	go func() { errc <- srv.Serve(ln) }()
	select {
	case err := <-errc:
		log.Error("serve", "err", err)
		return 1
	case <-ctx.Done():
	}
	log.Info("vapisim shutting down")
	shutCtx, cancel := context.WithTimeout(context.Background(), shutdownTimeout)
	defer cancel()
	_ = srv.Shutdown(shutCtx)
	<-errc
	return 0
}

func authMode(cfg vapisim.Config) string {
	switch {
	case cfg.ServerToken != "" && cfg.HMACSecret != "":
		return "bearer+hmac"
	case cfg.ServerToken != "":
		return "bearer"
	case cfg.HMACSecret != "":
		return "hmac"
	}
	return "none"
}
