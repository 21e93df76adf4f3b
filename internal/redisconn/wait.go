package redisconn

import (
	"context"
	"errors"
	"fmt"
	"time"

	"github.com/redis/go-redis/v9"
)

// WaitTimeoutDefault is how long Durable waits for the replicas.
const WaitTimeoutDefault = 2 * time.Second

// ErrNotReplicated is wrapped by Durable's error when fewer replicas than
// asked confirmed the write in time: the write may be lost by a failover, so
// it must not count as done.
var ErrNotReplicated = errors.New("not confirmed by the replicas")

// Durability is REDIS_WAIT_REPLICAS: how many replicas must confirm the
// writes that make a send irrevocable (the ledger's claim before the Twilio
// request, a producer's enqueue before it answers). The zero value asks for
// none and adds no round trip.
type Durability struct {
	Replicas int           // REDIS_WAIT_REPLICAS
	Timeout  time.Duration // WaitTimeoutDefault when zero
}

// Enabled reports whether writes wait for replicas.
func (d Durability) Enabled() bool { return d.Replicas > 0 }

// Durable runs fn's commands as one MULTI/EXEC on the node that holds key
// (every key fn touches must share key's hash tag) followed, on the same
// connection, by WAIT Replicas Timeout; it fails with ErrNotReplicated when
// fewer replicas confirmed. WAIT covers only the writes of its own
// connection, which is why both use one connection.
// With Replicas 0 it is rdb.TxPipelined.
func (d Durability) Durable(ctx context.Context, rdb redis.UniversalClient, key string, fn func(redis.Pipeliner) error) error {
	if !d.Enabled() {
		_, err := rdb.TxPipelined(ctx, fn)
		return err
	}
	conn, err := connFor(ctx, rdb, key)
	if err != nil {
		return err
	}
	defer conn.Close()
	if _, err := conn.TxPipelined(ctx, fn); err != nil {
		return err
	}
	return d.check(conn.Wait(ctx, d.Replicas, d.timeout()))
}

// Confirm makes sure the writes already made on the node that holds key
// (by any connection: replication is one ordered stream per master) have
// reached Replicas replicas: it writes a marker key with key's hash tag,
// WAITs on the same connection, and then, when mustExist is given, checks on
// that connection that mustExist (a key in the same slot) is still there. The
// last check catches a failover between the caller's write and Confirm,
// after which the new master may never have seen the write. A producer calls
// it after an enqueue, with the task's key.
func (d Durability) Confirm(ctx context.Context, rdb redis.UniversalClient, tag, mustExist string) error {
	if !d.Enabled() {
		return nil
	}
	marker := MarkerKey(tag)
	conn, err := connFor(ctx, rdb, marker)
	if err != nil {
		return err
	}
	defer conn.Close()
	// One round trip: the marker, WAIT for it, and the check, in order on
	// this connection.
	var wait *redis.Cmd
	var exists *redis.IntCmd
	_, err = conn.Pipelined(ctx, func(p redis.Pipeliner) error {
		p.Set(ctx, marker, time.Now().UnixNano(), time.Minute)
		wait = p.Do(ctx, "wait", d.Replicas, d.timeout().Milliseconds())
		if mustExist != "" {
			exists = p.Exists(ctx, mustExist)
		}
		return nil
	})
	if err != nil {
		return fmt.Errorf("confirm with the replicas: %w", err)
	}
	n, err := wait.Int64()
	if err != nil {
		return fmt.Errorf("WAIT %d: %w", d.Replicas, err)
	}
	if int(n) < d.Replicas {
		return fmt.Errorf("%d of %d replicas confirmed the write: %w", n, d.Replicas, ErrNotReplicated)
	}
	if exists != nil && exists.Val() == 0 {
		return fmt.Errorf("the write is not on the current master (a failover discarded it): %w", ErrNotReplicated)
	}
	return nil
}

// MarkerKey is the key Confirm writes for a hash tag: tw:wait:{tag}. It
// lives a minute.
func MarkerKey(tag string) string { return "tw:wait:{" + tag + "}" }

func (d Durability) timeout() time.Duration {
	if d.Timeout <= 0 {
		return WaitTimeoutDefault
	}
	return d.Timeout
}

func (d Durability) check(wait *redis.IntCmd) error {
	n, err := wait.Result()
	if err != nil {
		return fmt.Errorf("WAIT %d: %w", d.Replicas, err)
	}
	if int(n) < d.Replicas {
		return fmt.Errorf("%d of %d replicas confirmed the write: %w", n, d.Replicas, ErrNotReplicated)
	}
	return nil
}

// connFor returns one connection to the node that holds key: the master
// serving key's slot on a cluster, the current master otherwise (a Sentinel
// client always talks to it). WAIT covers only its own connection's writes.
func connFor(ctx context.Context, rdb redis.UniversalClient, key string) (*redis.Conn, error) {
	switch c := rdb.(type) {
	case *redis.ClusterClient:
		n, err := c.MasterForKey(ctx, key)
		if err != nil {
			return nil, fmt.Errorf("find the cluster master for %s: %w", key, err)
		}
		return n.Conn(), nil
	case *redis.Client:
		return c.Conn(), nil
	}
	return nil, fmt.Errorf("REDIS_WAIT_REPLICAS needs a node, Sentinel or cluster client, not %T", rdb)
}

// ConfirmTask is Confirm for a task a producer has just enqueued to queue
// (its asynq key asynq:{queue}:t:ID shares the queue's hash tag): call it
// before acknowledging the task to whoever asked for it.
func (d Durability) ConfirmTask(ctx context.Context, rdb redis.UniversalClient, queue, id string) error {
	if !d.Enabled() {
		return nil
	}
	if err := d.Confirm(ctx, rdb, queue, "asynq:{"+queue+"}:t:"+id); err != nil {
		return fmt.Errorf("task %s: %w", id, err)
	}
	return nil
}
