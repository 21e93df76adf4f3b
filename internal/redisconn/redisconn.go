// Package redisconn is the one place that turns REDIS_URL into Redis
// clients: a go-redis [redis.UniversalClient] for the project's own keys and
// the matching asynq [asynq.RedisConnOpt], for the worker, enqueue, the HTTP
// API, the dashboard and the bench alike.
//
// Accepted URLs:
//
//	redis://[user:password@]host:port[/db]            one node
//	rediss://…                                        the same over TLS
//	redis-sentinel://[:password@]h:p[,h:p…]?master=M  Sentinel (password: the sentinels'; ?password= the master's)
//	redis-cluster://[user:password@]h:p[,h:p…]        Redis Cluster (any reachable nodes; the rest are discovered)
//	rediss-cluster://…                                Redis Cluster over TLS
//
// [Check] verifies at start-up that the server is what the URL says (a
// cluster whose state is ok and whose every master answers, or a single node
// that is not a cluster member), so a wrong setup is a start-up error that
// says what is wrong rather than a stream of failed commands.
package redisconn

import (
	"context"
	"crypto/tls"
	"errors"
	"fmt"
	"net"
	"net/url"
	"strconv"
	"strings"
	"time"

	"github.com/hibiken/asynq"
	"github.com/redis/go-redis/v9"
)

// Kinds of deployment a URL names.
const (
	KindNode     = "node"
	KindSentinel = "sentinel"
	KindCluster  = "cluster"
)

// Schemes lists the URL schemes Parse accepts, for messages.
const Schemes = "redis://, rediss://, redis-sentinel://, redis-cluster:// or rediss-cluster://"

// Conn is a parsed REDIS_URL.
type Conn struct {
	Kind string // KindNode, KindSentinel or KindCluster
	// Opt is asynq's view of the same connection (RedisClientOpt,
	// RedisFailoverClientOpt or RedisClusterClientOpt).
	Opt asynq.RedisConnOpt
	// Addrs are the addresses the URL names (the node, the sentinels or the
	// cluster's seed nodes).
	Addrs []string
	url   string
}

// Parse parses a REDIS_URL. Its errors name what is wrong but never repeat
// the password.
func Parse(raw string) (Conn, error) {
	raw = strings.TrimSpace(raw)
	// net/url takes one host:port; the host list is split off first.
	scheme, rest, ok := strings.Cut(raw, "://")
	if !ok {
		return Conn{}, fmt.Errorf("not a URL (must be %s)", Schemes)
	}
	authority, tail := rest, ""
	if i := strings.IndexAny(rest, "/?#"); i >= 0 {
		authority, tail = rest[:i], rest[i:]
	}
	userinfo, hostList := "", authority
	if i := strings.LastIndex(authority, "@"); i >= 0 {
		userinfo, hostList = authority[:i+1], authority[i+1:]
	}
	u, err := url.Parse(scheme + "://" + userinfo + "host" + tail)
	if err != nil {
		return Conn{}, fmt.Errorf("not a URL (must be %s)", Schemes)
	}
	c := Conn{url: raw}
	user := u.User.Username()
	pass, _ := u.User.Password()
	hosts, err := splitHosts(hostList)
	if err != nil {
		return Conn{}, err
	}
	c.Addrs = hosts
	switch u.Scheme {
	case "redis", "rediss":
		if len(hosts) != 1 {
			return Conn{}, fmt.Errorf("%s:// names one host:port; for several nodes use redis-cluster:// or redis-sentinel://", u.Scheme)
		}
		opt, err := asynq.ParseRedisURI(raw)
		if err != nil {
			return Conn{}, errors.New("the path must be a database number, such as /0")
		}
		c.Kind, c.Opt = KindNode, opt
	case "redis-sentinel":
		master := u.Query().Get("master")
		if master == "" {
			return Conn{}, errors.New("redis-sentinel:// needs ?master=NAME")
		}
		db := 0
		if p := strings.Trim(u.Path, "/"); p != "" {
			if db, err = strconv.Atoi(p); err != nil || db < 0 {
				return Conn{}, errors.New("the path must be a database number, such as /0")
			}
		}
		c.Kind = KindSentinel
		c.Opt = asynq.RedisFailoverClientOpt{MasterName: master, SentinelAddrs: hosts, SentinelUsername: user,
			SentinelPassword: pass, Password: u.Query().Get("password"), DB: db}
	case "redis-cluster", "rediss-cluster":
		if p := strings.Trim(u.Path, "/"); p != "" && p != "0" {
			return Conn{}, errors.New("a Redis Cluster has only database 0; drop the path")
		}
		opt := asynq.RedisClusterClientOpt{Addrs: hosts, Username: user, Password: pass}
		if u.Scheme == "rediss-cluster" {
			h, _, _ := net.SplitHostPort(hosts[0])
			opt.TLSConfig = &tls.Config{MinVersion: tls.VersionTLS12, ServerName: h}
		}
		c.Kind, c.Opt = KindCluster, opt
	default:
		return Conn{}, fmt.Errorf("unsupported scheme %q (must be %s)", u.Scheme, Schemes)
	}
	return c, nil
}

func splitHosts(h string) ([]string, error) {
	if h == "" {
		return nil, errors.New("no host:port")
	}
	var out []string
	for _, a := range strings.Split(h, ",") {
		a = strings.TrimSpace(a)
		if a == "" {
			return nil, errors.New("an empty host in the host list")
		}
		if _, _, err := net.SplitHostPort(a); err != nil {
			a = net.JoinHostPort(a, "6379")
		}
		out = append(out, a)
	}
	return out, nil
}

// Redacted returns the URL with its password hidden, for logs.
func (c Conn) Redacted() string {
	scheme, rest, _ := strings.Cut(c.url, "://")
	authority, tail := rest, ""
	if i := strings.IndexAny(rest, "/?#"); i >= 0 {
		authority, tail = rest[:i], rest[i:]
	}
	if i := strings.LastIndex(authority, "@"); i >= 0 {
		user, _, hasPass := strings.Cut(authority[:i], ":")
		if hasPass {
			user += ":xxxxx"
		}
		authority = user + "@" + authority[i+1:]
	}
	if q, query, ok := strings.Cut(tail, "?"); ok {
		v, err := url.ParseQuery(query)
		if err == nil && v.Has("password") {
			v.Set("password", "xxxxx")
			tail = q + "?" + v.Encode()
		}
	}
	return scheme + "://" + authority + tail
}

// Client returns a new client; the caller closes it.
func (c Conn) Client() redis.UniversalClient {
	return c.Opt.MakeRedisClient().(redis.UniversalClient)
}

// ClientWithPool is Client with a connection pool of size per node (0: the
// go-redis default), for the bench's many producers.
func (c Conn) ClientWithPool(size int) redis.UniversalClient {
	switch o := c.Opt.(type) {
	case asynq.RedisClientOpt:
		o.PoolSize = size
		return o.MakeRedisClient().(redis.UniversalClient)
	case asynq.RedisFailoverClientOpt:
		o.PoolSize = size
		return o.MakeRedisClient().(redis.UniversalClient)
	case asynq.RedisClusterClientOpt:
		return redis.NewClusterClient(&redis.ClusterOptions{Addrs: o.Addrs, Username: o.Username,
			Password: o.Password, TLSConfig: o.TLSConfig, PoolSize: size})
	}
	return c.Client()
}

// ErrUnreachable wraps a failure to reach any Redis at all: the caller may
// fall back (local mode) where it would not for a misconfiguration.
var ErrUnreachable = errors.New("no Redis answers")

// Check verifies that the deployment behind rdb is the kind c names and is
// usable: a cluster must be a cluster, report cluster_state:ok and have every
// master answer; a single node or Sentinel master must not be a cluster
// member. It returns an error wrapping ErrUnreachable when nothing answers.
func Check(ctx context.Context, c Conn, rdb redis.UniversalClient) error {
	ctx, cancel := context.WithTimeout(ctx, 5*time.Second)
	defer cancel()
	if c.Kind != KindCluster {
		info, err := rdb.Info(ctx, "cluster").Result()
		if err != nil {
			if isNotSupported(err) { // miniredis and some proxies have no INFO sections
				return rdb.Ping(ctx).Err()
			}
			return fmt.Errorf("%w at %s: %v", ErrUnreachable, strings.Join(c.Addrs, ","), err)
		}
		if strings.Contains(info, "cluster_enabled:1") {
			return fmt.Errorf("%s is a Redis Cluster node: use redis-cluster://%s (a single-node client cannot follow the cluster's slots)",
				strings.Join(c.Addrs, ","), strings.Join(c.Addrs, ","))
		}
		return nil
	}
	cc, ok := rdb.(*redis.ClusterClient)
	if !ok {
		return fmt.Errorf("internal: a cluster URL without a cluster client (%T)", rdb)
	}
	// Ask each seed directly first: go-redis would otherwise report a
	// non-cluster seed only as a failure to load the slots.
	var reached int
	var lastErr error
	for _, addr := range c.Addrs {
		node := redis.NewClient(&redis.Options{Addr: addr, Username: clusterUser(c), Password: clusterPass(c),
			TLSConfig: c.Opt.(asynq.RedisClusterClientOpt).TLSConfig, MaxRetries: -1})
		info, err := node.ClusterInfo(ctx).Result()
		node.Close()
		switch {
		case err != nil && strings.Contains(err.Error(), "cluster support disabled"):
			return fmt.Errorf("%s is not a Redis Cluster node (cluster support disabled): use redis:// for a single node", addr)
		case err != nil:
			lastErr = fmt.Errorf("%s: %v", addr, err)
			continue
		}
		reached++
		if st := infoField(info, "cluster_state"); st != "ok" {
			return fmt.Errorf("the cluster at %s reports cluster_state:%s (slots not all served; see CLUSTER INFO)", addr, st)
		}
	}
	if reached == 0 {
		return fmt.Errorf("%w: no cluster node answers (%v)", ErrUnreachable, lastErr)
	}
	err := cc.ForEachMaster(ctx, func(ctx context.Context, node *redis.Client) error {
		info, err := node.ClusterInfo(ctx).Result()
		if err != nil {
			return fmt.Errorf("cluster master %s does not answer: %v", node.Options().Addr, err)
		}
		if st := infoField(info, "cluster_state"); st != "ok" {
			return fmt.Errorf("cluster master %s reports cluster_state:%s", node.Options().Addr, st)
		}
		return nil
	})
	if err != nil {
		return err
	}
	return nil
}

func clusterUser(c Conn) string { return c.Opt.(asynq.RedisClusterClientOpt).Username }
func clusterPass(c Conn) string { return c.Opt.(asynq.RedisClusterClientOpt).Password }

func isNotSupported(err error) bool {
	s := strings.ToLower(err.Error())
	return strings.Contains(s, "unknown") || strings.Contains(s, "not supported") || strings.Contains(s, "syntax")
}

func infoField(info, name string) string {
	for _, line := range strings.Split(info, "\n") {
		if v, ok := strings.CutPrefix(strings.TrimSpace(line), name+":"); ok {
			return v
		}
	}
	return ""
}

// Connect parses raw, makes a client and checks the deployment; the caller
// closes the client.
func Connect(ctx context.Context, raw string) (Conn, redis.UniversalClient, error) {
	c, err := Parse(raw)
	if err != nil {
		return Conn{}, nil, err
	}
	rdb := c.Client()
	if err := Check(ctx, c, rdb); err != nil {
		rdb.Close()
		return Conn{}, nil, err
	}
	return c, rdb, nil
}
