package campaign

import (
	"context"
	"sync"

	"github.com/redis/go-redis/v9"
)

// Defaults of scriptPipe.
const (
	// pipeFlushers is how many pipelines are in flight at once: one
	// travels while the next fills.
	pipeFlushers = 2
	// pipeMax bounds the scripts of one pipeline.
	pipeMax = 256
)

// scriptPipe is the Redis client a submission's asynq.Client enqueues
// through. asynq enqueues one task per EVALSHA round trip; scriptPipe sends
// the EVALSHAs of the enqueues under way at once (the batch workers' fan-out)
// in one pipeline, so that a submission of N tasks makes about N/64 round
// trips instead of N. Each script is the same command with the same answer
// (a NOSCRIPT error comes back to its caller, whose Script.Run falls back to
// EVAL as usual); every other command goes straight to the client.
type scriptPipe struct {
	redis.UniversalClient
	jobs chan pipeJob
	stop chan struct{}
	wg   sync.WaitGroup
}

type pipeJob struct {
	queue func(redis.Pipeliner) *redis.Cmd
	done  chan *redis.Cmd
}

// newScriptPipe starts the pipe's flushers on rdb; close stops them.
func newScriptPipe(rdb redis.UniversalClient) *scriptPipe {
	c := &scriptPipe{UniversalClient: rdb, jobs: make(chan pipeJob), stop: make(chan struct{})}
	for range pipeFlushers {
		c.wg.Go(c.flush)
	}
	return c
}

// close stops the flushers once the pipelines under way are answered. No
// EvalSha may be called after it.
func (c *scriptPipe) close() {
	close(c.stop)
	c.wg.Wait()
}

// flush sends the scripts waiting, up to pipeMax, in one pipeline and hands
// each its answer, until close.
func (c *scriptPipe) flush() {
	batch := make([]pipeJob, 0, pipeMax)
	cmds := make([]*redis.Cmd, 0, pipeMax)
	for {
		select {
		case j := <-c.jobs:
			batch = append(batch, j)
		case <-c.stop:
			return
		}
	more:
		for len(batch) < pipeMax {
			select {
			case j := <-c.jobs:
				batch = append(batch, j)
			default:
				break more
			}
		}
		// Not a caller's context: a caller that gives up stops waiting
		// (EvalSha), the others' scripts still run.
		pipe := c.UniversalClient.Pipeline()
		for _, j := range batch {
			cmds = append(cmds, j.queue(pipe))
		}
		_, _ = pipe.Exec(context.Background()) // each command holds its own error
		for i, j := range batch {
			j.done <- cmds[i]
		}
		batch, cmds = batch[:0], cmds[:0]
	}
}

// EvalSha joins the next pipeline.
func (c *scriptPipe) EvalSha(ctx context.Context, sha1 string, keys []string, args ...any) *redis.Cmd {
	if ctx.Err() != nil {
		return canceledCmd(ctx)
	}
	j := pipeJob{
		queue: func(p redis.Pipeliner) *redis.Cmd { return p.EvalSha(ctx, sha1, keys, args...) },
		done:  make(chan *redis.Cmd, 1),
	}
	select {
	case c.jobs <- j:
	case <-ctx.Done():
		return canceledCmd(ctx)
	}
	select {
	case cmd := <-j.done:
		return cmd
	case <-ctx.Done():
		return canceledCmd(ctx)
	}
}

func canceledCmd(ctx context.Context) *redis.Cmd {
	cmd := redis.NewCmd(ctx)
	cmd.SetErr(ctx.Err())
	return cmd
}
