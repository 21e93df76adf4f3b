package main

import (
	"context"
	"sync"
	"time"

	"github.com/hibiken/asynq"
	"github.com/redis/go-redis/v9"

	"github.com/sbagenthub/twilio-worker/tasks"
)

// typeNoop is the bare baseline's task type.
const typeNoop = "bench:noop"

// bare is the baseline: an asynq server in the bench process with a no-op
// handler, on the same Redis, with the worker's concurrency, queues and
// poll intervals.
type bare struct {
	srv *asynq.Server
	mu  sync.Mutex
	// started is each task's handler start, by task id.
	started map[string]time.Time
}

func startBare(rdb redis.UniversalClient, concurrency int) (*bare, error) {
	b := &bare{started: map[string]time.Time{}}
	b.srv = asynq.NewServerFromRedisClient(rdb, asynq.Config{
		Concurrency:              concurrency,
		Queues:                   tasks.Queues,
		TaskCheckInterval:        pollInterval,
		DelayedTaskCheckInterval: delayedCheck,
		Logger:                   quietLogger{},
		LogLevel:                 asynq.FatalLevel,
	})
	mux := asynq.NewServeMux()
	mux.HandleFunc(typeNoop, func(ctx context.Context, _ *asynq.Task) error {
		now := time.Now()
		id, _ := asynq.GetTaskID(ctx)
		b.mu.Lock()
		b.started[id] = now
		b.mu.Unlock()
		return nil
	})
	if err := b.srv.Start(mux); err != nil {
		return nil, err
	}
	return b, nil
}

// startedAt returns when the handler of task id started.
func (b *bare) startedAt(id string) (time.Time, bool) {
	b.mu.Lock()
	defer b.mu.Unlock()
	t, ok := b.started[id]
	return t, ok
}

func (b *bare) stop() { b.srv.Shutdown() }

// quietLogger discards asynq's log.
type quietLogger struct{}

func (quietLogger) Debug(...any) {}
func (quietLogger) Info(...any)  {}
func (quietLogger) Warn(...any)  {}
func (quietLogger) Error(...any) {}
func (quietLogger) Fatal(...any) {}
