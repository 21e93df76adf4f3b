// Package wake lets an idle worker poll Redis rarely and still pick up a new
// task at once.
//
// asynq's server polls every queue for pending tasks every POLL_INTERVAL and
// moves due scheduled and retry tasks every DelayedTaskCheckInterval; over
// three queues that is some 540 Redis commands a second per worker while
// there is nothing to do. A Gate, installed as a hook on the worker's Redis
// client, skips those polls while the worker is idle and lets them run again
// as soon as there is a sign of work: a task found, a producer's Announce
// (Redis Pub/Sub on Channel, received by Listen), due tasks moved.
//
// Producers call Announce after every enqueue; a missed announcement costs
// at most the idle poll interval (IdleDefault).
package wake

import (
	"context"
	"sync"
	"sync/atomic"
	"time"

	"github.com/redis/go-redis/v9"
)

// Channel is the Pub/Sub channel on which producers announce new tasks.
// Pub/Sub channels are not keys: Redis Cluster broadcasts them to every
// node, so it needs no hash tag.
const Channel = "tw:wake"

// CoalesceDefault is the shortest time between two announcements by one
// process on one Redis client: a worker that heard one keeps polling at full
// speed for BurstDefault, far longer, so a bulk enqueue costs one PUBLISH per
// CoalesceDefault instead of one per task.
const CoalesceDefault = 50 * time.Millisecond

var lastAnnounce sync.Map // redis.Cmdable → *atomic.Int64 (UnixNano of the last PUBLISH)

// Announce tells idle workers that a task was just queued (pending or
// scheduled), so that they poll at once. It is best effort: an error is
// ignored (the workers' idle poll picks the task up), and it publishes at
// most once per CoalesceDefault per client.
func Announce(ctx context.Context, rdb redis.Cmdable) {
	if rdb == nil {
		return
	}
	v, _ := lastAnnounce.LoadOrStore(rdb, new(atomic.Int64))
	last := v.(*atomic.Int64)
	now := time.Now().UnixNano()
	prev := last.Load()
	if now-prev < int64(CoalesceDefault) || !last.CompareAndSwap(prev, now) {
		return
	}
	_ = rdb.Publish(context.WithoutCancel(ctx), Channel, "").Err()
}

// Listen subscribes to Channel and wakes g on every announcement until ctx
// ends. go-redis re-subscribes by itself after a lost connection; what is
// announced meanwhile is found by the idle poll.
func Listen(ctx context.Context, rdb redis.UniversalClient, g *Gate) {
	sub := rdb.Subscribe(ctx, Channel)
	defer sub.Close()
	ch := sub.Channel()
	for {
		select {
		case <-ctx.Done():
			return
		case _, ok := <-ch:
			if !ok {
				return
			}
			g.Wake()
		}
	}
}
