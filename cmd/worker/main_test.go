package main

import (
	"bytes"
	"context"
	"log/slog"
	"net"
	"strings"
	"testing"
	"time"

	"github.com/hibiken/asynq"

	"github.com/sbagenthub/twilio-worker/internal/redisconn"
	"github.com/sbagenthub/twilio-worker/internal/redistest"
)

func TestEmbeddedRedisWhenNothingAnswers(t *testing.T) {
	ln, err := net.Listen("tcp", "127.0.0.1:0")
	if err != nil {
		t.Fatal(err)
	}
	addr := ln.Addr().String()
	ln.Close()
	var logs bytes.Buffer
	log := slog.New(slog.NewTextHandler(&logs, nil))
	cfg := Config{RedisURL: "redis://" + addr + "/0", Redis: mustParse(t, "redis://"+addr+"/0")}
	rdb, _, closeFn, err := connectRedis(context.Background(), cfg, log)
	if err != nil {
		t.Fatal(err)
	}
	defer closeFn()
	if !strings.Contains(logs.String(), "embedded in-memory Redis") || !strings.Contains(logs.String(), "lost") {
		t.Fatalf("no loud warning: %s", logs.String())
	}
	// asynq works on it, and TTLs run down with real time (results expire).
	client := asynq.NewClientFromRedisClient(rdb)
	if _, err := client.Enqueue(asynq.NewTask("t", nil)); err != nil {
		t.Fatal(err)
	}
	if err := rdb.Set(context.Background(), "k", "v", 300*time.Millisecond).Err(); err != nil {
		t.Fatal(err)
	}
	deadline := time.Now().Add(30 * time.Second) // a backstop
	for rdb.Exists(context.Background(), "k").Val() == 1 {
		if time.Now().After(deadline) {
			t.Fatal("a TTL never ran down in the embedded Redis")
		}
		time.Sleep(50 * time.Millisecond)
	}
}

func TestNoEmbeddedRedisWhenURLGiven(t *testing.T) {
	ln, err := net.Listen("tcp", "127.0.0.1:0")
	if err != nil {
		t.Fatal(err)
	}
	addr := ln.Addr().String()
	ln.Close()
	cfg := Config{RedisURL: "redis://" + addr + "/0", RedisURLSet: true, Redis: mustParse(t, "redis://"+addr+"/0")}
	_, _, _, err = connectRedis(context.Background(), cfg, slog.New(slog.DiscardHandler))
	if err == nil || !strings.Contains(err.Error(), "REDIS_URL") {
		t.Fatalf("err = %v; an explicit REDIS_URL that does not answer is an error", err)
	}
}

func TestLoadConfig(t *testing.T) {
	env := map[string]string{"CONCURRENCY": "7", "SENDER_RATE": "3/s", "SENDER_RATES": "+18005550100=100/s"}
	var stderr bytes.Buffer
	cfg, err := loadConfig([]string{"--sender-rate", "5/s:2", "--log-level", "debug"}, func(k string) string { return env[k] }, &stderr)
	if err != nil {
		t.Fatal(err)
	}
	if cfg.Concurrency != 7 || cfg.SenderRate.N != 5 || cfg.SenderRate.Burst != 2 || cfg.LogLevel != "debug" {
		t.Fatalf("config %+v: a flag must win over its variable", cfg)
	}
	if r := cfg.SenderRates["+18005550100"]; r.N != 100 {
		t.Fatalf("sender overrides %+v", cfg.SenderRates)
	}
	if cfg.RedisURLSet || cfg.RedisURL != RedisURLDefault || cfg.HTTPAddr != HTTPAddrDefault {
		t.Fatalf("defaults %+v", cfg)
	}

	if cfg.TwilioMaxRPS != TwilioMaxRPSDefault || cfg.TwilioMaxConc != TwilioMaxConcurrentDefault {
		t.Fatalf("Twilio pacing defaults %d, %d", cfg.TwilioMaxRPS, cfg.TwilioMaxConc)
	}

	env = map[string]string{"CONCURRENCY": "many", "MAX_SEGMENTS": "0", "POLL_INTERVAL": "1h", "TWILIO_AUTH_TOKEN": "s3cr3t$$",
		"SENDER_RATE": "fast", "RECIPIENT_RATE": "10/d", "SENDER_RATES": "+18005550100", "CALL_RATE": "0/s",
		"TWILIO_MAX_RPS": "0", "TWILIO_MAX_CONCURRENT": "lots", "REDIS_WAIT_REPLICAS": "-1",
		"REDIS_URL": "redis-cluster://:pw0rd@a:1,,b:2"}
	_, err = loadConfig(nil, func(k string) string { return env[k] }, &stderr)
	for _, name := range []string{"CONCURRENCY", "MAX_SEGMENTS", "POLL_INTERVAL", "TWILIO_ACCOUNT_SID",
		"SENDER_RATE", "RECIPIENT_RATE", "SENDER_RATES", "CALL_RATE", "TWILIO_MAX_RPS", "TWILIO_MAX_CONCURRENT",
		"REDIS_WAIT_REPLICAS", "REDIS_URL"} {
		if err == nil || !strings.Contains(err.Error(), name) {
			t.Errorf("error %v does not name %s", err, name)
		}
	}
	if strings.Contains(err.Error(), "s3cr3t") || strings.Contains(err.Error(), "pw0rd") {
		t.Fatal("the error shows a secret")
	}
}

func TestPublicURLNeedsTheAuthToken(t *testing.T) {
	env := map[string]string{"PUBLIC_URL": "https://worker.example.com",
		"TWILIO_ACCOUNT_SID": "AC00000000000000000000000000000000",
		"TWILIO_API_KEY":     "SK00000000000000000000000000000000", "TWILIO_API_SECRET": "secret1"}
	_, err := loadConfig(nil, func(k string) string { return env[k] }, &bytes.Buffer{})
	if err == nil || !strings.Contains(err.Error(), "TWILIO_AUTH_TOKEN is required with PUBLIC_URL") {
		t.Fatalf("err = %v", err)
	}
	env["TWILIO_AUTH_TOKEN"] = "0123456789abcdef0123456789abcdef"
	if _, err := loadConfig(nil, func(k string) string { return env[k] }, &bytes.Buffer{}); err != nil {
		t.Fatal(err)
	}
}

func mustParse(t *testing.T, u string) redisconn.Conn {
	t.Helper()
	c, err := redisconn.Parse(u)
	if err != nil {
		t.Fatal(err)
	}
	return c
}

// A REDIS_URL that names the wrong kind of deployment stops start-up with
// exit 2 and says what is wrong, before anything is served.
func TestRedisDeploymentMismatch(t *testing.T) {
	t.Parallel()
	node := redistest.Start(t)
	if node.Kind() != redistest.KindRedisServer {
		t.Skip("needs a redis-server") // miniredis has no cluster mode to tell apart
	}
	cluster := redistest.StartCluster(t)
	for _, tc := range []struct {
		name, url, want string
	}{
		{"cluster URL, single node", "redis-cluster://" + node.Addr, "not a Redis Cluster node"},
		{"node URL, cluster node", "redis://" + cluster.Nodes[0].Addr + "/0", "use redis-cluster://"},
		{"bad scheme", "redis-cluser://" + node.Addr, "unsupported scheme"},
		{"sentinel without master", "redis-sentinel://" + node.Addr, "?master="},
	} {
		t.Run(tc.name, func(t *testing.T) {
			var stderr bytes.Buffer
			env := map[string]string{"REDIS_URL": tc.url, "HTTP_ADDR": "127.0.0.1:0"}
			code := run(nil, func(k string) string { return env[k] }, &stderr)
			if code != 2 || !strings.Contains(stderr.String(), tc.want) || !strings.Contains(stderr.String(), "REDIS_URL") {
				t.Fatalf("exit %d, stderr %s; want 2 and REDIS_URL … %q", code, stderr.String(), tc.want)
			}
			if strings.Contains(stderr.String(), "unreachable") {
				t.Errorf("a misconfiguration reported as unreachable: %s", stderr.String())
			}
		})
	}
}
