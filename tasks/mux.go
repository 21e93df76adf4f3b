package tasks

import (
	"context"
	"fmt"
	"log/slog"
	"sync"

	"github.com/hibiken/asynq"

	"github.com/sbagenthub/twilio-worker/phone"
)

// Mux routes a task to the handler registered for exactly its type.
// asynq's ServeMux matches by prefix, so a raw task of type "sms:sendx" or
// "sms:send:v2" would run the sms:send handler and really send; here such a
// task, like any type nobody registered, is archived with the reason and
// never retried.
type Mux struct {
	mu       sync.RWMutex
	handlers map[string]asynq.Handler
	// Logger, when set, records each archived unknown task (type masked).
	Logger *slog.Logger
}

// NewMux returns an empty Mux.
func NewMux() *Mux { return &Mux{handlers: map[string]asynq.Handler{}} }

// Handle registers h for tasks of type typ. Registering a type twice or an
// empty type panics, as asynq's ServeMux does: it is a wiring mistake.
func (m *Mux) Handle(typ string, h asynq.Handler) {
	if typ == "" || h == nil {
		panic("tasks: Mux.Handle needs a type and a handler")
	}
	m.mu.Lock()
	defer m.mu.Unlock()
	if _, dup := m.handlers[typ]; dup {
		panic("tasks: Mux.Handle: type " + typ + " registered twice")
	}
	m.handlers[typ] = h
}

// HandleFunc registers f for tasks of type typ.
func (m *Mux) HandleFunc(typ string, f func(context.Context, *asynq.Task) error) {
	m.Handle(typ, asynq.HandlerFunc(f))
}

// ProcessTask implements asynq.Handler.
func (m *Mux) ProcessTask(ctx context.Context, t *asynq.Task) error {
	m.mu.RLock()
	h, ok := m.handlers[t.Type()]
	m.mu.RUnlock()
	if ok {
		return h.ProcessTask(ctx, t)
	}
	shown := phone.MaskText(truncate(t.Type(), 64))
	if m.Logger != nil {
		id, _ := asynq.GetTaskID(ctx)
		m.Logger.Warn("task of unknown type archived", "type", shown, "task", phone.MaskText(id))
	}
	return fmt.Errorf("unknown task type %q: no handler is registered for exactly this type: %w", shown, asynq.SkipRetry)
}

func truncate(s string, n int) string {
	if len(s) <= n {
		return s
	}
	return s[:n] + "…"
}
