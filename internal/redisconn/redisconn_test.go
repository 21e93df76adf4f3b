package redisconn_test

import (
	"context"
	"errors"
	"net"
	"strings"
	"testing"
	"time"

	"github.com/hibiken/asynq"
	"github.com/redis/go-redis/v9"

	"github.com/sbagenthub/twilio-worker/internal/redisconn"
	"github.com/sbagenthub/twilio-worker/internal/redistest"
)

func TestParse(t *testing.T) {
	t.Parallel()
	tests := []struct {
		url, kind string
		check     func(t *testing.T, c redisconn.Conn)
	}{
		{"redis://127.0.0.1:6379/2", redisconn.KindNode, func(t *testing.T, c redisconn.Conn) {
			if o := c.Opt.(asynq.RedisClientOpt); o.Addr != "127.0.0.1:6379" || o.DB != 2 {
				t.Errorf("opt %+v", o)
			}
		}},
		{"rediss://u:secret@h:6380/0", redisconn.KindNode, func(t *testing.T, c redisconn.Conn) {
			if o := c.Opt.(asynq.RedisClientOpt); o.TLSConfig == nil || o.Password != "secret" {
				t.Errorf("opt %+v", o)
			}
		}},
		{"redis-sentinel://:spw@s1:26379,s2:26379?master=mymaster&password=mpw", redisconn.KindSentinel, func(t *testing.T, c redisconn.Conn) {
			o := c.Opt.(asynq.RedisFailoverClientOpt)
			if o.MasterName != "mymaster" || len(o.SentinelAddrs) != 2 || o.SentinelPassword != "spw" || o.Password != "mpw" {
				t.Errorf("opt %+v", o)
			}
		}},
		{"redis-cluster://u:pw@n1:7000,n2:7001,n3", redisconn.KindCluster, func(t *testing.T, c redisconn.Conn) {
			o := c.Opt.(asynq.RedisClusterClientOpt)
			if strings.Join(o.Addrs, ",") != "n1:7000,n2:7001,n3:6379" || o.Username != "u" || o.Password != "pw" || o.TLSConfig != nil {
				t.Errorf("opt %+v", o)
			}
			if _, ok := c.Client().(*redis.ClusterClient); !ok {
				t.Errorf("client %T", c.Client())
			}
		}},
		{"rediss-cluster://n1:7000", redisconn.KindCluster, func(t *testing.T, c redisconn.Conn) {
			if o := c.Opt.(asynq.RedisClusterClientOpt); o.TLSConfig == nil || o.TLSConfig.ServerName != "n1" {
				t.Errorf("opt %+v", o)
			}
		}},
	}
	for _, tt := range tests {
		t.Run(tt.url, func(t *testing.T) {
			c, err := redisconn.Parse(tt.url)
			if err != nil {
				t.Fatal(err)
			}
			if c.Kind != tt.kind {
				t.Fatalf("kind %s, want %s", c.Kind, tt.kind)
			}
			tt.check(t, c)
			if strings.Contains(c.Redacted(), "secret") || strings.Contains(c.Redacted(), "pw@") || strings.Contains(c.Redacted(), "mpw") {
				t.Errorf("Redacted() = %s shows a password", c.Redacted())
			}
		})
	}
	for _, bad := range []struct{ url, want string }{
		{"http://h:1", "unsupported scheme"},
		{"redis://a:1,b:2/0", "one host:port"},
		{"redis://h:1/x", "database number"},
		{"redis-sentinel://h:1", "?master="},
		{"redis-cluster://h:1/3", "only database 0"},
		{"redis-cluster://", "no host"},
		{"redis-cluster://a:1,,b:2", "empty host"},
	} {
		_, err := redisconn.Parse(bad.url)
		if err == nil || !strings.Contains(err.Error(), bad.want) {
			t.Errorf("Parse(%q) = %v, want an error saying %q", bad.url, err, bad.want)
		}
	}
	if _, err := redisconn.Parse("redis://:hunter2@h:1/x"); err == nil || strings.Contains(err.Error(), "hunter2") {
		t.Errorf("error %v repeats the password", err)
	}
}

func TestCheck(t *testing.T) {
	t.Parallel()
	node := redistest.Start(t)
	if node.Kind() != redistest.KindRedisServer {
		t.Skip("needs a redis-server") // miniredis has no cluster mode to tell apart
	}
	cluster := redistest.StartCluster(t)
	ctx := context.Background()
	check := func(url string) error {
		c, err := redisconn.Parse(url)
		if err != nil {
			t.Fatal(err)
		}
		rdb := c.Client()
		defer rdb.Close()
		return redisconn.Check(ctx, c, rdb)
	}
	if err := check(node.URL()); err != nil {
		t.Errorf("node: %v", err)
	}
	if err := check(cluster.URL()); err != nil {
		t.Errorf("cluster: %v", err)
	}
	// One seed is enough: the others are discovered.
	if err := check("redis-cluster://" + cluster.Nodes[1].Addr); err != nil {
		t.Errorf("cluster from one seed: %v", err)
	}
	if err := check("redis-cluster://" + node.Addr); err == nil || !strings.Contains(err.Error(), "not a Redis Cluster node") ||
		errors.Is(err, redisconn.ErrUnreachable) {
		t.Errorf("cluster URL at a single node: %v", err)
	}
	if err := check("redis://" + cluster.Nodes[0].Addr + "/0"); err == nil || !strings.Contains(err.Error(), "redis-cluster://") {
		t.Errorf("node URL at a cluster node: %v", err)
	}
	dead := deadAddr(t)
	if err := check("redis://" + dead + "/0"); !errors.Is(err, redisconn.ErrUnreachable) {
		t.Errorf("nothing listening: %v, want ErrUnreachable", err)
	}
	if err := check("redis-cluster://" + dead); !errors.Is(err, redisconn.ErrUnreachable) {
		t.Errorf("no cluster node listening: %v, want ErrUnreachable", err)
	}

	// A cluster that lost a slot's owner reports cluster_state:fail.
	cl := cluster.Client(t)
	n, err := cl.MasterForKey(ctx, "x")
	if err != nil {
		t.Fatal(err)
	}
	slots, err := cl.ClusterSlots(ctx).Result()
	if err != nil {
		t.Fatal(err)
	}
	for _, s := range slots {
		if s.Nodes[0].Addr == n.Options().Addr {
			if err := n.Do(ctx, "CLUSTER", "DELSLOTSRANGE", s.Start, s.End).Err(); err != nil {
				t.Fatal(err)
			}
		}
	}
	deadline := time.Now().Add(30 * time.Second)
	for {
		err := check("redis-cluster://" + n.Options().Addr)
		if err != nil && strings.Contains(err.Error(), "cluster_state:fail") {
			break
		}
		if time.Now().After(deadline) {
			t.Fatalf("cluster with unserved slots: %v, want cluster_state:fail", err)
		}
		time.Sleep(50 * time.Millisecond)
	}
}

func deadAddr(t *testing.T) string {
	t.Helper()
	ln, err := net.Listen("tcp", "127.0.0.1:0")
	if err != nil {
		t.Fatal(err)
	}
	addr := ln.Addr().String()
	ln.Close()
	return addr
}

func TestDurability(t *testing.T) {
	t.Parallel()
	ctx := context.Background()
	t.Run("no replicas", func(t *testing.T) {
		t.Parallel()
		node := redistest.Start(t)
		if node.Kind() != redistest.KindRedisServer {
			t.Skip("needs a redis-server")
		}
		rdb := node.Client(t)
		d := redisconn.Durability{Replicas: 1, Timeout: 100 * time.Millisecond}
		err := d.Durable(ctx, rdb, "k", func(p redis.Pipeliner) error { p.Set(ctx, "k", "v", 0); return nil })
		if !errors.Is(err, redisconn.ErrNotReplicated) {
			t.Fatalf("Durable with no replica: %v, want ErrNotReplicated", err)
		}
		if v := rdb.Get(ctx, "k").Val(); v != "v" {
			t.Errorf("the write itself happened: %q", v) // it did, it is just not confirmed
		}
		if err := d.ConfirmTask(ctx, rdb, "default", "t1"); !errors.Is(err, redisconn.ErrNotReplicated) {
			t.Fatalf("ConfirmTask with no replica: %v", err)
		}
		if err := (redisconn.Durability{}).Durable(ctx, rdb, "k", func(p redis.Pipeliner) error { p.Set(ctx, "k", "w", 0); return nil }); err != nil {
			t.Fatalf("Replicas 0: %v", err)
		}
	})
	t.Run("sentinel", func(t *testing.T) {
		t.Parallel()
		set := redistest.StartSentinel(t)
		rdb := redis.NewFailoverClient(&redis.FailoverOptions{MasterName: redistest.SentinelMaster, SentinelAddrs: []string{set.Sentinel.Addr}})
		defer rdb.Close()
		d := redisconn.Durability{Replicas: 1}
		if err := d.Durable(ctx, rdb, "k", func(p redis.Pipeliner) error { p.Set(ctx, "k", "v", 0); return nil }); err != nil {
			t.Fatalf("Durable with one replica: %v", err)
		}
		replica := set.Nodes[1]
		if set.Master(t) == replica {
			replica = set.Nodes[0]
		}
		// Confirmed means the replica has it, at once.
		if v := replica.Client(t).Get(ctx, "k").Val(); v != "v" {
			t.Errorf("replica has %q after a confirmed write", v)
		}
		c := asynq.NewClientFromRedisClient(rdb)
		info, err := c.Enqueue(asynq.NewTask("t", nil), asynq.TaskID("t1"))
		if err != nil {
			t.Fatal(err)
		}
		if err := d.ConfirmTask(ctx, rdb, info.Queue, info.ID); err != nil {
			t.Fatalf("ConfirmTask: %v", err)
		}
		if err := d.ConfirmTask(ctx, rdb, info.Queue, "never-enqueued"); !errors.Is(err, redisconn.ErrNotReplicated) {
			t.Errorf("ConfirmTask of a task the master does not have: %v", err)
		}
		if d2 := (redisconn.Durability{Replicas: 2, Timeout: 100 * time.Millisecond}); !errors.Is(d2.ConfirmTask(ctx, rdb, info.Queue, info.ID), redisconn.ErrNotReplicated) {
			t.Error("two replicas asked of one: confirmed")
		}
	})
	t.Run("cluster", func(t *testing.T) {
		t.Parallel()
		cluster := redistest.StartCluster(t)
		cl := cluster.Client(t)
		// The cluster has no replicas: WAIT answers 0 on the key's own master
		// (not a CROSSSLOT or MOVED error from another one).
		d := redisconn.Durability{Replicas: 1, Timeout: 100 * time.Millisecond}
		for _, k := range []string{"tw:{a}:x", "tw:{b}:x", "tw:{c}:x"} {
			err := d.Durable(ctx, cl, k, func(p redis.Pipeliner) error { p.Set(ctx, k, "v", 0); return nil })
			if !errors.Is(err, redisconn.ErrNotReplicated) {
				t.Errorf("%s: %v, want ErrNotReplicated", k, err)
			}
			if v := cl.Get(ctx, k).Val(); v != "v" {
				t.Errorf("%s = %q", k, v)
			}
		}
	})
}
