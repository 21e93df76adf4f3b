package httpapi

import (
	"context"
	"encoding/json"
	"errors"
	"io"
	"net/http"
	"regexp"
	"time"

	"github.com/hibiken/asynq"

	"github.com/sbagenthub/twilio-worker/calls"
	"github.com/sbagenthub/twilio-worker/campaign"
	"github.com/sbagenthub/twilio-worker/commlog"
	"github.com/sbagenthub/twilio-worker/tasks"
	"github.com/sbagenthub/twilio-worker/twilioapi"
	"github.com/sbagenthub/twilio-worker/vapi"
)

// Limits of the agent hub's API.
const (
	// MaxBodyBytes bounds a request body; larger ones get 413.
	MaxBodyBytes = 64 << 10
	// MaxWait bounds ?wait=.
	MaxWait = 30 * time.Second
	// redisTimeout bounds one enqueue or lookup, so that a hung Redis turns
	// into a 503 rather than a hung request.
	redisTimeout = 5 * time.Second
	// callStatusTimeout bounds a getCallStatus lookup.
	callStatusTimeout = 15 * time.Second
)

// enqueued is the answer to a task-making action: 202 when the task was
// queued by this request, 200 when Idempotency-Key named an existing task.
type enqueued struct {
	TaskID string `json:"taskId"`
	Queue  string `json:"queue"`
	State  string `json:"state"`
}

var idempotencyKeyPattern = regexp.MustCompile(`^[A-Za-z0-9._:-]{1,128}$`)

func (s *Server) routeAPI(mux *http.ServeMux) {
	mux.HandleFunc("/v1/actions", s.handleActions)
	mux.HandleFunc("/v1/tasks/{id}", s.handleTask)
	mux.HandleFunc("/v1/", func(w http.ResponseWriter, r *http.Request) {
		writeError(w, http.StatusNotFound, "not_found", "", "no such endpoint: "+r.Method+" "+fieldName(r.URL.Path))
	})
}

func allow(w http.ResponseWriter, r *http.Request, method string) bool {
	if r.Method == method {
		return true
	}
	w.Header().Set("Allow", method)
	writeError(w, http.StatusMethodNotAllowed, "method_not_allowed", "", r.URL.Path+" takes "+method)
	return false
}

// POST /v1/actions
func (s *Server) handleActions(w http.ResponseWriter, r *http.Request) {
	if !allow(w, r, http.MethodPost) {
		return
	}
	wait, ok := parseWait(w, r)
	if !ok {
		return
	}
	key := r.Header.Get("Idempotency-Key")
	if key != "" && !idempotencyKeyPattern.MatchString(key) {
		writeError(w, http.StatusUnprocessableEntity, CodeInvalidField, "Idempotency-Key",
			"must be 1-128 letters, digits, '.', '_', ':' or '-' (a UUID fits)")
		return
	}
	body, err := io.ReadAll(http.MaxBytesReader(w, r.Body, MaxBodyBytes))
	if err != nil {
		var tooBig *http.MaxBytesError
		if errors.As(err, &tooBig) {
			writeError(w, http.StatusRequestEntityTooLarge, "too_large", "", "request body is over 64 KiB")
			return
		}
		writeError(w, http.StatusBadRequest, CodeMalformedJSON, "", "could not read the request body")
		return
	}
	a, err := DecodeAction(body)
	if err != nil {
		writeActionError(w, err)
		return
	}

	var task *asynq.Task
	var submit func(context.Context) (*asynq.TaskInfo, error)
	switch a.Name {
	case ActionGetCallStatus:
		s.callStatus(w, r, a.CallSID)
		return
	case ActionHangupCall:
		s.hangupCall(w, r, a.CallSID)
		return
	case ActionSendBulkSMS:
		sum, err := campaign.Submit(r.Context(), campaign.Deps{Redis: s.Redis, Client: s.Client, Rules: s.Rules, Durability: s.Durability}, a.Bulk)
		s.answerCampaign(w, a.Bulk, sum, err)
		return
	case ActionSendSMS:
		task, err = tasks.NewSendSMSTask(a.SMS, s.Rules, taskOptions(a, key)...)
		// The producer path books the message's send slot under the rate
		// limits, so its handler runs once however long the backlog.
		submit = func(ctx context.Context) (*asynq.TaskInfo, error) {
			return tasks.EnqueueSMS(ctx, s.Client, s.Booker, a.SMS, s.Rules, taskOptions(a, key)...)
		}
	case ActionMakeCall:
		if s.Calls == nil {
			writeError(w, http.StatusNotImplemented, "not_implemented", "action", "makeCall is not available in this worker")
			return
		}
		if (a.Call.AssistantID != "" || a.Call.Agent) && s.Agents == nil {
			writeError(w, http.StatusUnprocessableEntity, CodeInvalidField, "assistantId", "assistantId: VAPI is not configured on this worker (VAPI_API_KEY)")
			return
		}
		task, err = tasks.NewMakeCallTask(a.Call, s.Rules, taskOptions(a, key)...)
	}
	if err != nil {
		writeTaskError(w, err, s)
		return
	}
	s.enqueue(w, r, task, submit, key, wait)
}

func taskOptions(a Action, key string) []asynq.Option {
	var opts []asynq.Option
	if a.Priority != "" {
		opts = append(opts, asynq.Queue(a.Priority))
	}
	if key != "" {
		opts = append(opts, asynq.TaskID(key))
	}
	return opts
}

// parseWait reads ?wait=: a Go duration up to MaxWait, or absent.
func parseWait(w http.ResponseWriter, r *http.Request) (time.Duration, bool) {
	v := r.URL.Query().Get("wait")
	if v == "" {
		return 0, true
	}
	d, err := time.ParseDuration(v)
	if err != nil || d < 0 || d > MaxWait {
		writeError(w, http.StatusUnprocessableEntity, CodeInvalidField, "wait", "must be a duration from 0s to "+MaxWait.String()+", e.g. 10s")
		return 0, false
	}
	return d, true
}

// enqueue queues task (through submit when given), or with an
// Idempotency-Key finds the task queued before under that key, and answers;
// with wait it first waits for the task's result.
func (s *Server) enqueue(w http.ResponseWriter, r *http.Request, task *asynq.Task, submit func(context.Context) (*asynq.TaskInfo, error), key string, wait time.Duration) {
	if s.Client == nil || s.Inspector == nil {
		writeError(w, http.StatusServiceUnavailable, "unavailable", "", "this server has no task queue")
		return
	}
	ctx, cancel := context.WithTimeout(r.Context(), redisTimeout)
	defer cancel()
	status := http.StatusAccepted
	var info *asynq.TaskInfo
	var err error
	if key != "" {
		// asynq's task ids are unique per queue: look in every queue first,
		// so that a retry with another priority still finds the task.
		info, err = tasks.Find(s.Inspector, key)
		switch {
		case err == nil:
			status = http.StatusOK
		case errors.Is(err, tasks.ErrTaskNotFound):
			info, err = nil, nil
		}
	}
	if info == nil && err == nil {
		if submit == nil {
			submit = func(ctx context.Context) (*asynq.TaskInfo, error) { return s.Client.EnqueueContext(ctx, task) }
		}
		info, err = submit(ctx)
		if errors.Is(err, asynq.ErrTaskIDConflict) {
			status = http.StatusOK
			info, err = tasks.Find(s.Inspector, key)
		} else if err == nil {
			s.logQueued(ctx, task, info)
		}
	}
	if err != nil {
		s.logger().Error("enqueue from the HTTP API", "type", task.Type(), "err", err)
		writeError(w, http.StatusServiceUnavailable, "unavailable", "", "the task queue (Redis) is unreachable; try again")
		return
	}
	if err := s.Durability.ConfirmTask(ctx, s.Redis, info.Queue, info.ID); err != nil {
		s.logger().Error("enqueue from the HTTP API not confirmed by the Redis replicas", "task", info.ID, "err", err)
		writeError(w, http.StatusServiceUnavailable, "unavailable", "",
			"the task queue's replicas did not confirm the task (REDIS_WAIT_REPLICAS); it may be lost in a failover: try again with the same Idempotency-Key")
		return
	}
	if info.Type != task.Type() {
		writeError(w, http.StatusConflict, "idempotency_conflict", "Idempotency-Key",
			"names a task of another type ("+info.Type+")")
		return
	}
	w.Header().Set("Location", "/v1/tasks/"+info.ID)
	if status == http.StatusAccepted {
		s.logger().Info("task enqueued over HTTP", "task", info.ID, "type", info.Type, "queue", info.Queue)
	}
	if wait > 0 {
		info = s.waitDone(r.Context(), info, wait)
		switch info.State {
		case asynq.TaskStateCompleted:
			if result := tasks.StatusOf(info).Result; len(result) > 0 {
				w.Header().Set("Content-Type", "application/json")
				w.WriteHeader(http.StatusOK)
				_, _ = w.Write(append(result, '\n'))
				return
			}
			status = http.StatusOK
		case asynq.TaskStateArchived:
			writeJSON(w, http.StatusBadGateway, map[string]any{
				"error":  apiError{Code: "send_failed", Message: info.LastErr},
				"taskId": info.ID, "queue": info.Queue, "state": info.State.String(),
			})
			return
		}
	}
	writeJSON(w, status, enqueued{TaskID: info.ID, Queue: info.Queue, State: info.State.String()})
}

// waitDone polls the task until it is completed or archived, wait runs out
// or the client goes away, and returns what it saw last. Polls start at
// 10 ms (an SMS to the simulator is done in tens of milliseconds) and back
// off to 250 ms, so a long wait costs a few reads a second.
func (s *Server) waitDone(ctx context.Context, info *asynq.TaskInfo, wait time.Duration) *asynq.TaskInfo {
	deadline := time.NewTimer(wait)
	defer deadline.Stop()
	interval := 10 * time.Millisecond
	for info.State != asynq.TaskStateCompleted && info.State != asynq.TaskStateArchived {
		select {
		case <-ctx.Done():
			return info
		case <-deadline.C:
			return info
		case <-time.After(interval):
		}
		interval = min(interval*2, 250*time.Millisecond)
		next, err := s.Inspector.GetTaskInfo(info.Queue, info.ID)
		if err != nil {
			// Gone (deleted from the dashboard) or Redis trouble: answer
			// with what we know.
			return info
		}
		info = next
	}
	return info
}

// GET /v1/tasks/{id}
func (s *Server) handleTask(w http.ResponseWriter, r *http.Request) {
	if !allow(w, r, http.MethodGet) {
		return
	}
	if s.Inspector == nil {
		writeError(w, http.StatusServiceUnavailable, "unavailable", "", "this server has no task queue")
		return
	}
	id := r.PathValue("id")
	info, err := tasks.Find(s.Inspector, id)
	switch {
	case errors.Is(err, tasks.ErrTaskNotFound):
		writeError(w, http.StatusNotFound, "not_found", "id", "no task "+quoteShort(id)+" (unknown, or its result has expired)")
	case err != nil:
		s.logger().Error("look up task", "err", err)
		writeError(w, http.StatusServiceUnavailable, "unavailable", "", "the task queue (Redis) is unreachable; try again")
	default:
		writeJSON(w, http.StatusOK, tasks.StatusOf(info))
	}
}

// callStatus answers getCallStatus.
func (s *Server) callStatus(w http.ResponseWriter, r *http.Request, sid string) {
	if s.Calls == nil {
		writeError(w, http.StatusNotImplemented, "not_implemented", "action", "getCallStatus is not available in this worker")
		return
	}
	ctx, cancel := context.WithTimeout(r.Context(), callStatusTimeout)
	defer cancel()
	v, err := s.lookupCall(ctx, sid)
	s.answerCall(w, v, err)
}

// hangupCall answers hangupCall.
func (s *Server) hangupCall(w http.ResponseWriter, r *http.Request, sid string) {
	if s.Calls == nil {
		writeError(w, http.StatusNotImplemented, "not_implemented", "action", "hangupCall is not available in this worker")
		return
	}
	ctx, cancel := context.WithTimeout(r.Context(), callStatusTimeout)
	defer cancel()
	v, err := s.hangup(ctx, sid)
	s.answerCall(w, v, err)
}

func (s *Server) answerCall(w http.ResponseWriter, v tasks.CallState, err error) {
	var tw *twilioapi.Error
	var ve *vapi.Error
	switch {
	case err == nil:
		writeJSON(w, http.StatusOK, v)
	case errors.Is(err, calls.ErrNotFound) || (errors.As(err, &tw) && tw.Class == twilioapi.ClassNotFound) || vapi.IsNotFound(err):
		writeError(w, http.StatusNotFound, "not_found", "callSid", "no such call")
	case errors.Is(err, tasks.ErrNoProvider):
		writeError(w, http.StatusUnprocessableEntity, CodeInvalidField, "callSid", "callSid: "+err.Error())
	case errors.As(err, &ve):
		writeError(w, http.StatusBadGateway, "vapi_error", "", ve.Error())
	default:
		writeTaskError(w, err, s)
	}
}

// writeActionError answers a DecodeAction error.
func writeActionError(w http.ResponseWriter, err error) {
	var ae *ActionError
	if !errors.As(err, &ae) {
		writeError(w, http.StatusBadRequest, CodeMalformedJSON, "", "malformed request")
		return
	}
	status := http.StatusUnprocessableEntity
	if ae.Code == CodeMalformedJSON {
		status = http.StatusBadRequest
	}
	writeError(w, status, ae.Code, ae.Field, ae.Error())
}

// writeTaskError answers an error of a task constructor or call lookup:
// bad input is 422 naming the field, Twilio's refusal 502 with its (number-
// masked) message, anything else 500 without details.
func writeTaskError(w http.ResponseWriter, err error, s *Server) {
	var fe *tasks.FieldError
	var tw *twilioapi.Error
	switch {
	case errors.As(err, &fe):
		writeError(w, http.StatusUnprocessableEntity, CodeInvalidField, fe.Field, fe.Error())
	case errors.As(err, &tw):
		writeError(w, http.StatusBadGateway, "twilio_error", "", tw.Error())
	case errors.Is(err, context.DeadlineExceeded):
		writeError(w, http.StatusGatewayTimeout, "timeout", "", "timed out")
	default:
		s.logger().Error("HTTP API", "err", err)
		writeError(w, http.StatusInternalServerError, "internal", "", "internal error; it has been logged")
	}
}

// logQueued records a task queued through the API in the communications log.
func (s *Server) logQueued(ctx context.Context, task *asynq.Task, info *asynq.TaskInfo) {
	if s.Log == nil {
		return
	}
	var p struct{ To string }
	_ = json.Unmarshal(task.Payload(), &p)
	channel := "sms"
	if task.Type() == tasks.TypeMakeCall {
		channel = "voice"
	}
	if err := s.Log.Append(ctx, commlog.Entry{Event: commlog.Queued, Channel: channel, TaskID: info.ID,
		To: p.To, Reason: "queue " + info.Queue + " (HTTP API)"}); err != nil {
		s.logger().Warn("communications log append failed", "err", err)
	}
}
