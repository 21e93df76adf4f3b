package redistest

import (
	"context"
	"fmt"
	"os"
	"os/exec"
	"path/filepath"
	"strings"
	"testing"
	"time"

	"github.com/redis/go-redis/v9"
)

// clusterTimeout bounds forming a cluster, a failover and a resync: seconds
// on a laptop, more on a slow CI machine.
const clusterTimeout = 60 * time.Second

// Cluster is a private Redis Cluster of three masters (no replicas), each a
// redis-server on a free loopback port, for one test.
type Cluster struct {
	Nodes []*Server
}

// StartCluster forms a 3-master Redis Cluster (redis-server
// --cluster-enabled yes three times, then redis-cli --cluster create
// --cluster-yes) and waits until every node reports cluster_state:ok. It is
// shut down when t ends. It needs redis-server and redis-cli on PATH; without
// them the test fails when REQUIRE_REDIS_SERVER is set and is skipped, saying
// why, otherwise. REDIS_URL does not apply: a cluster is always private.
func StartCluster(t testing.TB) *Cluster {
	t.Helper()
	bin, cli := binaries(t)
	c := &Cluster{}
	for i := 0; i < 3; i++ {
		c.Nodes = append(c.Nodes, startProcess(t, bin, []string{
			"--cluster-enabled", "yes", "--cluster-config-file", "nodes.conf",
			"--cluster-node-timeout", "5000", "--cluster-require-full-coverage", "yes",
		}, nil))
	}
	args := []string{"--cluster", "create"}
	for _, n := range c.Nodes {
		args = append(args, n.Addr)
	}
	args = append(args, "--cluster-replicas", "0", "--cluster-yes")
	ctx, cancel := context.WithTimeout(context.Background(), clusterTimeout)
	defer cancel()
	if out, err := exec.CommandContext(ctx, cli, args...).CombinedOutput(); err != nil {
		t.Fatalf("redistest: redis-cli %s: %v\n%s", strings.Join(args, " "), err, out)
	}
	for _, n := range c.Nodes {
		n := n
		waitFor(t, "cluster_state:ok on "+n.Addr, func(ctx context.Context) (bool, error) {
			cl := redis.NewClient(&redis.Options{Addr: n.Addr})
			defer cl.Close()
			info, err := cl.ClusterInfo(ctx).Result()
			if err != nil {
				return false, nil
			}
			return strings.Contains(info, "cluster_state:ok") && strings.Contains(info, "cluster_known_nodes:3"), nil
		})
	}
	return c
}

// URL returns redis-cluster://a,b,c for REDIS_URL.
func (c *Cluster) URL() string {
	addrs := make([]string, len(c.Nodes))
	for i, n := range c.Nodes {
		addrs[i] = n.Addr
	}
	return "redis-cluster://" + strings.Join(addrs, ",")
}

// Client returns a cluster client, closed when t ends.
func (c *Cluster) Client(t testing.TB) *redis.ClusterClient {
	t.Helper()
	addrs := make([]string, len(c.Nodes))
	for i, n := range c.Nodes {
		addrs[i] = n.Addr
	}
	cl := redis.NewClusterClient(&redis.ClusterOptions{Addrs: addrs})
	t.Cleanup(func() { _ = cl.Close() })
	return cl
}

// SentinelMaster is the master name a [Sentinel] set monitors.
const SentinelMaster = "mymaster"

// Sentinel is a private Sentinel set for one test: a master, one replica of
// it and one sentinel (redis-server --sentinel) watching them.
type Sentinel struct {
	// Nodes are the two data nodes; which one is master changes with
	// Failover (see Master).
	Nodes    [2]*Server
	Sentinel *Server
}

// StartSentinel starts a master, a replica (waiting until its link is up)
// and a sentinel that monitors them with quorum 1 (waiting until it knows the
// replica, so that a failover can be asked for at once). They are shut down
// when t ends; like StartCluster, it needs redis-server on PATH.
func StartSentinel(t testing.TB) *Sentinel {
	t.Helper()
	bin, _ := binaries(t)
	s := &Sentinel{}
	s.Nodes[0] = startProcess(t, bin, nil, nil)
	host, port := splitAddr(s.Nodes[0].Addr)
	s.Nodes[1] = startProcess(t, bin, []string{"--replicaof", host, port}, nil)
	s.waitLinked(t, s.Nodes[0], s.Nodes[1])

	dir := t.TempDir()
	conf := filepath.Join(dir, "sentinel.conf")
	s.Sentinel = startProcess(t, bin, nil, func(p string) []string {
		// Sentinel rewrites its file; each launch starts from a fresh one.
		body := fmt.Sprintf("port %s\nbind 127.0.0.1\ndir %s\n"+
			"sentinel monitor %s %s %s 1\n"+
			"sentinel down-after-milliseconds %s 5000\n"+
			"sentinel failover-timeout %s 6000\n",
			p, dir, SentinelMaster, host, port, SentinelMaster, SentinelMaster)
		if err := os.WriteFile(conf, []byte(body), 0o600); err != nil {
			t.Errorf("redistest: write %s: %v", conf, err)
		}
		return []string{conf, "--sentinel"}
	})
	s.waitKnowsReplica(t, s.Nodes[1].Addr)
	return s
}

// URL returns redis-sentinel://SENTINEL?master=mymaster for REDIS_URL.
func (s *Sentinel) URL() string {
	return "redis-sentinel://" + s.Sentinel.Addr + "?master=" + SentinelMaster
}

// Master returns the node that is master now, as the sentinel says.
func (s *Sentinel) Master(t testing.TB) *Server {
	t.Helper()
	ctx, cancel := context.WithTimeout(context.Background(), 10*time.Second)
	defer cancel()
	sc := redis.NewSentinelClient(&redis.Options{Addr: s.Sentinel.Addr})
	defer sc.Close()
	addr, err := sc.GetMasterAddrByName(ctx, SentinelMaster).Result()
	if err != nil {
		t.Fatalf("redistest: sentinel get-master-addr-by-name: %v", err)
	}
	for _, n := range s.Nodes {
		if n.Addr == addr[0]+":"+addr[1] {
			return n
		}
	}
	t.Fatalf("redistest: sentinel names master %v, which is neither node", addr)
	return nil
}

// Failover makes the replica the master and waits until the sentinel names
// it, it answers as master, and the old master has become its replica with
// the link up (so the next Failover can follow). Before asking, it makes
// sure the replica has every write the master acknowledged so far (a write
// and WAIT 1 on one connection): a failover right after a write no replica
// has confirmed may lose it, which is what REDIS_WAIT_REPLICAS is for, not
// something a test should do to itself by accident.
func (s *Sentinel) Failover(t testing.TB) {
	t.Helper()
	old := s.Master(t)
	next := s.Nodes[0]
	if next == old {
		next = s.Nodes[1]
	}
	ctx, cancel := context.WithTimeout(context.Background(), clusterTimeout)
	defer cancel()
	began := time.Now()
	defer func() {
		t.Logf("redistest: failover %s → %s took %v", old.Addr, next.Addr, time.Since(began).Round(time.Millisecond))
	}()
	func() {
		conn := redis.NewClient(&redis.Options{Addr: old.Addr, PoolSize: 1})
		defer conn.Close()
		c := conn.Conn()
		defer c.Close()
		if err := c.Set(ctx, "redistest:failover", time.Now().UnixNano(), 0).Err(); err != nil {
			t.Fatalf("redistest: write before failover: %v", err)
		}
		if n, err := c.Wait(ctx, 1, 20*time.Second).Result(); err != nil || n < 1 {
			t.Fatalf("redistest: the replica did not confirm before failover: %d, %v", n, err)
		}
	}()
	sc := redis.NewSentinelClient(&redis.Options{Addr: s.Sentinel.Addr})
	defer sc.Close()
	waitFor(t, "SENTINEL FAILOVER accepted", func(ctx context.Context) (bool, error) {
		err := sc.Failover(ctx, SentinelMaster).Err()
		if err == nil {
			return true, nil
		}
		if strings.Contains(err.Error(), "NOGOODSLAVE") || strings.Contains(err.Error(), "INPROG") {
			return false, nil // the sentinel has not (re)discovered the replica yet
		}
		return false, err
	})
	waitFor(t, "the sentinel names "+next.Addr+" master", func(ctx context.Context) (bool, error) {
		addr, err := sc.GetMasterAddrByName(ctx, SentinelMaster).Result()
		return err == nil && addr[0]+":"+addr[1] == next.Addr, nil
	})
	// The sentinel turns the old master into a replica of the new one at its
	// next look at it (up to 10 s); saying so ourselves is the same change,
	// sooner.
	func() {
		o := redis.NewClient(&redis.Options{Addr: old.Addr})
		defer o.Close()
		host, port := splitAddr(next.Addr)
		if err := o.SlaveOf(ctx, host, port).Err(); err != nil {
			t.Fatalf("redistest: REPLICAOF %s on the old master: %v", next.Addr, err)
		}
	}()
	s.waitLinked(t, next, old)
	s.waitKnowsReplica(t, old.Addr)
}

// waitLinked waits until replica reports its link to master up and master
// lists it online.
func (s *Sentinel) waitLinked(t testing.TB, master, replica *Server) {
	t.Helper()
	waitFor(t, replica.Addr+" replicating "+master.Addr, func(ctx context.Context) (bool, error) {
		r := redis.NewClient(&redis.Options{Addr: replica.Addr})
		defer r.Close()
		info, err := r.Info(ctx, "replication").Result()
		if err != nil || !strings.Contains(info, "role:slave") || !strings.Contains(info, "master_link_status:up") ||
			!strings.Contains(info, "master_port:"+portOf(master.Addr)) {
			return false, nil
		}
		m := redis.NewClient(&redis.Options{Addr: master.Addr})
		defer m.Close()
		info, err = m.Info(ctx, "replication").Result()
		return err == nil && strings.Contains(info, "role:master") &&
			strings.Contains(info, "port="+portOf(replica.Addr)+",state=online"), nil
	})
}

// waitKnowsReplica waits until the sentinel lists addr as a healthy replica.
func (s *Sentinel) waitKnowsReplica(t testing.TB, addr string) {
	t.Helper()
	sc := redis.NewSentinelClient(&redis.Options{Addr: s.Sentinel.Addr})
	defer sc.Close()
	waitFor(t, "the sentinel knows replica "+addr, func(ctx context.Context) (bool, error) {
		reps, err := sc.Replicas(ctx, SentinelMaster).Result()
		if err != nil {
			return false, nil
		}
		for _, r := range reps {
			// A Failover that finds the sentinel not yet sure of the replica
			// (NOGOODSLAVE) asks again.
			if r["ip"]+":"+r["port"] == addr && r["flags"] == "slave" {
				return true, nil
			}
		}
		return false, nil
	})
}

// binaries finds redis-server and redis-cli, or ends the test.
func binaries(t testing.TB) (server, cli string) {
	t.Helper()
	server, err1 := exec.LookPath("redis-server")
	cli, err2 := exec.LookPath("redis-cli")
	if err1 == nil && err2 == nil {
		return server, cli
	}
	if required() {
		t.Fatalf("redistest: redis-server and redis-cli are required (%s is set): %v %v", EnvRequire, err1, err2)
	}
	t.Skipf("redistest: a cluster or Sentinel set needs redis-server and redis-cli on PATH (%v %v)", err1, err2)
	return "", ""
}

// waitFor polls cond until it is true, fails t on an error or after
// clusterTimeout.
func waitFor(t testing.TB, what string, cond func(ctx context.Context) (bool, error)) {
	t.Helper()
	deadline := time.Now().Add(clusterTimeout)
	for {
		ctx, cancel := context.WithTimeout(context.Background(), 5*time.Second)
		ok, err := cond(ctx)
		cancel()
		if err != nil {
			t.Fatalf("redistest: waiting for %s: %v", what, err)
		}
		if ok {
			return
		}
		if time.Now().After(deadline) {
			t.Fatalf("redistest: %s: not within %v", what, clusterTimeout)
		}
		time.Sleep(50 * time.Millisecond)
	}
}

func splitAddr(addr string) (host, port string) {
	i := strings.LastIndexByte(addr, ':')
	return addr[:i], addr[i+1:]
}

func portOf(addr string) string { _, p := splitAddr(addr); return p }
