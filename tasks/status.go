package tasks

import (
	"encoding/json"
	"errors"
	"fmt"

	"github.com/hibiken/asynq"
)

// ErrTaskNotFound is returned by Find when no queue holds the task.
var ErrTaskNotFound = errors.New("task not found")

// QueueOrder lists the queues in the order Find searches them.
var QueueOrder = []string{QueueCritical, QueueDefault, QueueBulk}

// Find looks a task up by id in every queue of the worker.
func Find(insp *asynq.Inspector, id string) (*asynq.TaskInfo, error) {
	for _, q := range QueueOrder {
		info, err := insp.GetTaskInfo(q, id)
		switch {
		case err == nil:
			return info, nil
		case errors.Is(err, asynq.ErrTaskNotFound), errors.Is(err, asynq.ErrQueueNotFound):
			continue
		default:
			return nil, fmt.Errorf("look up task: %w", err)
		}
	}
	return nil, fmt.Errorf("%w: no queue holds %q", ErrTaskNotFound, id)
}

// Status is a task's state as `enqueue status` and GET /v1/tasks/{id} show it.
type Status struct {
	TaskID    string          `json:"taskId"`
	Type      string          `json:"type"`
	Queue     string          `json:"queue"`
	State     string          `json:"state"`
	Retried   int             `json:"retried"`
	LastError string          `json:"lastError,omitempty"`
	NextRunAt string          `json:"nextRunAt,omitempty"`
	Result    json.RawMessage `json:"result,omitempty"`
}

// StatusOf describes info.
func StatusOf(info *asynq.TaskInfo) Status {
	s := Status{TaskID: info.ID, Type: info.Type, Queue: info.Queue, State: info.State.String(),
		Retried: info.Retried, LastError: info.LastErr}
	if !info.NextProcessAt.IsZero() && (info.State == asynq.TaskStateRetry || info.State == asynq.TaskStateScheduled) {
		s.NextRunAt = info.NextProcessAt.UTC().Format("2006-01-02T15:04:05.000Z07:00")
	}
	if len(info.Result) > 0 {
		if json.Valid(info.Result) {
			s.Result = info.Result
		} else {
			s.Result, _ = json.Marshal(string(info.Result))
		}
	}
	return s
}
