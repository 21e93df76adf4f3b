package httpapi

import (
	"context"
	"errors"
	"io"
	"net/http"
	"time"

	"github.com/hibiken/asynq"

	"github.com/sbagenthub/twilio-worker/calls"
	"github.com/sbagenthub/twilio-worker/campaign"
	"github.com/sbagenthub/twilio-worker/internal/redisconn"
	"github.com/sbagenthub/twilio-worker/producer"
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

var idempotencyKeyPattern = tasks.KeyPattern

func (s *Server) routeAPI(mux *http.ServeMux) {
	mux.HandleFunc("/v1/actions", s.handleActions)
	mux.HandleFunc("GET /v1/tasks/{id}", s.handleTask)
	mux.HandleFunc("DELETE /v1/tasks/{id}", s.cancelTask)
	mux.HandleFunc("/v1/tasks/{id}", func(w http.ResponseWriter, r *http.Request) {
		w.Header().Set("Allow", "GET, DELETE")
		writeError(w, http.StatusMethodNotAllowed, "method_not_allowed", "", r.URL.Path+" takes GET or DELETE")
	})
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

// POST /v1/actions: the body is decoded and run by the producer; this
// handler only turns the outcome into an HTTP answer.
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
		writeError(w, http.StatusUnprocessableEntity, producer.CodeInvalidField, "Idempotency-Key",
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
		writeError(w, http.StatusBadRequest, producer.CodeMalformedJSON, "", "could not read the request body")
		return
	}
	p := s.producer()
	a, err := p.Decode(body)
	if err != nil {
		writeActionError(w, err)
		return
	}
	a.Key = key
	if p.Redis == nil {
		writeError(w, http.StatusServiceUnavailable, "unavailable", "", "this server has no task queue")
		return
	}
	if a.Name == producer.ActionMakeCall && s.Calls == nil {
		writeError(w, http.StatusNotImplemented, "not_implemented", "action", "makeCall is not available in this worker")
		return
	}
	if a.Name == producer.ActionMakeCall && (a.Call.AssistantID != "" || a.Call.Agent) && s.Agents == nil {
		writeError(w, http.StatusUnprocessableEntity, producer.CodeInvalidField, "assistantId", "assistantId: VAPI is not configured on this worker (VAPI_API_KEY)")
		return
	}
	switch a.Name { // either provider's calls (vapi.go)
	case producer.ActionGetCallStatus:
		s.callStatus(w, r, a.CallSID)
		return
	case producer.ActionHangupCall:
		s.hangupCall(w, r, a.CallSID)
		return
	}
	ctx := r.Context()
	switch a.Name {
	case producer.ActionSendSMS, producer.ActionMakeCall:
		var cancel context.CancelFunc
		ctx, cancel = context.WithTimeout(ctx, redisTimeout)
		defer cancel()
	case producer.ActionGetCallStatus:
		var cancel context.CancelFunc
		ctx, cancel = context.WithTimeout(ctx, callStatusTimeout)
		defer cancel()
	}
	out, err := p.Do(ctx, a)
	if a.Name == producer.ActionSendBulkSMS {
		sum, _ := out.(campaign.Summary)
		s.answerCampaign(w, a.Bulk, sum, err)
		return
	}
	if err != nil {
		s.writeProducerError(w, err)
		return
	}
	switch v := out.(type) {
	case producer.Result:
		s.answerTask(w, r, v, wait)
	default:
		writeJSON(w, http.StatusOK, v)
	}
}

// parseWait reads ?wait=: a Go duration up to MaxWait, or absent.
func parseWait(w http.ResponseWriter, r *http.Request) (time.Duration, bool) {
	v := r.URL.Query().Get("wait")
	if v == "" {
		return 0, true
	}
	d, err := time.ParseDuration(v)
	if err != nil || d < 0 || d > MaxWait {
		writeError(w, http.StatusUnprocessableEntity, producer.CodeInvalidField, "wait", "must be a duration from 0s to "+MaxWait.String()+", e.g. 10s")
		return 0, false
	}
	return d, true
}

// answerTask answers a queued task: 202 {"taskId","queue","state"} (200 when
// the key named a task queued before); with wait, first waits for its
// result: 200 and the result, or 502 when it was refused for good.
func (s *Server) answerTask(w http.ResponseWriter, r *http.Request, res producer.Result, wait time.Duration) {
	status := http.StatusAccepted
	if res.Existing {
		status = http.StatusOK
	}
	w.Header().Set("Location", "/v1/tasks/"+res.TaskID)
	if wait > 0 && res.State != "canceled" {
		if info, err := s.producer().Inspector.GetTaskInfo(res.Queue, res.TaskID); err == nil {
			info = s.waitDone(r.Context(), info, wait)
			res.State = info.State.String()
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
	}
	writeJSON(w, status, res)
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
	if s.Inspector == nil && s.Redis == nil {
		writeError(w, http.StatusServiceUnavailable, "unavailable", "", "this server has no task queue")
		return
	}
	id := r.PathValue("id")
	st, err := s.producer().Status(r.Context(), id)
	switch {
	case errors.Is(err, tasks.ErrTaskNotFound):
		writeError(w, http.StatusNotFound, "not_found", "id", "no task "+quoteShort(id)+" (unknown, or its result has expired)")
	case err != nil:
		s.logger().Error("look up task", "err", err)
		writeError(w, http.StatusServiceUnavailable, "unavailable", "", "the task queue (Redis) is unreachable; try again")
	default:
		writeJSON(w, http.StatusOK, st)
	}
}

// DELETE /v1/tasks/{id}: cancel a task that has not started.
func (s *Server) cancelTask(w http.ResponseWriter, r *http.Request) {
	if s.Inspector == nil && s.Redis == nil {
		writeError(w, http.StatusServiceUnavailable, "unavailable", "", "this server has no task queue")
		return
	}
	id := r.PathValue("id")
	st, err := s.producer().Cancel(r.Context(), id)
	switch {
	case errors.Is(err, tasks.ErrTaskNotFound):
		writeError(w, http.StatusNotFound, "not_found", "id", "no task "+quoteShort(id)+" (unknown, or its result has expired)")
	case errors.Is(err, producer.ErrStarted):
		writeError(w, http.StatusConflict, "already_started", "id", "task "+quoteShort(id)+" cannot be canceled: "+st.State)
	case errors.As(err, new(*twilioapi.Error)):
		// Its message is scheduled at Twilio, which did not take the cancel.
		s.logger().Error("cancel a Twilio-scheduled message", "task", id, "err", err)
		writeError(w, http.StatusServiceUnavailable, "unavailable", "", "Twilio did not take the cancel of the scheduled message; try again")
	case err != nil:
		s.logger().Error("cancel task", "err", err)
		writeError(w, http.StatusServiceUnavailable, "unavailable", "", "the task queue (Redis) is unreachable; try again")
	default:
		writeJSON(w, http.StatusOK, st)
	}
}

// writeActionError answers a producer.Decode error.
func writeActionError(w http.ResponseWriter, err error) {
	var ae *producer.ActionError
	if !errors.As(err, &ae) {
		writeError(w, http.StatusBadRequest, producer.CodeMalformedJSON, "", "malformed request")
		return
	}
	status := http.StatusUnprocessableEntity
	if ae.Code == producer.CodeMalformedJSON {
		status = http.StatusBadRequest
	}
	writeError(w, status, ae.Code, ae.Field, ae.Error())
}

// writeProducerError answers an error of the producer: bad input 4xx
// naming the field, a key's conflict 409, an unknown call 404, Redis
// trouble 503.
func (s *Server) writeProducerError(w http.ResponseWriter, err error) {
	var ae *producer.ActionError
	var fe *tasks.FieldError
	var tw *twilioapi.Error
	switch {
	case errors.As(err, &ae):
		writeActionError(w, err)
	case errors.As(err, &fe):
		field := fe.Field
		if field == "key" {
			field = "Idempotency-Key"
		}
		writeError(w, http.StatusUnprocessableEntity, producer.CodeInvalidField, field, fe.Error())
	case errors.Is(err, producer.ErrConflict):
		writeError(w, http.StatusConflict, "idempotency_conflict", "Idempotency-Key", err.Error())
	case errors.Is(err, calls.ErrNotFound) || (errors.As(err, &tw) && tw.Class == twilioapi.ClassNotFound):
		writeError(w, http.StatusNotFound, "not_found", "callSid", "no such call")
	case errors.Is(err, producer.ErrUnavailable):
		writeError(w, http.StatusNotImplemented, "not_implemented", "action", "not available in this worker")
	case errors.Is(err, redisconn.ErrNotReplicated):
		s.logger().Error("enqueue from the HTTP API not confirmed by the Redis replicas", "err", err)
		writeError(w, http.StatusServiceUnavailable, "unavailable", "",
			"the task queue's replicas did not confirm the task (REDIS_WAIT_REPLICAS); it may be lost in a failover: try again with the same Idempotency-Key")
	case errors.As(err, &tw), errors.Is(err, context.DeadlineExceeded):
		writeTaskError(w, err, s)
	default:
		s.logger().Error("enqueue from the HTTP API", "err", err)
		writeError(w, http.StatusServiceUnavailable, "unavailable", "", "the task queue (Redis) is unreachable; try again")
	}
}

// writeTaskError answers an error of a task constructor or call lookup:
// bad input is 422 naming the field, Twilio's refusal 502 with its (number-
// masked) message, anything else 500 without details.
func writeTaskError(w http.ResponseWriter, err error, s *Server) {
	var fe *tasks.FieldError
	var tw *twilioapi.Error
	switch {
	case errors.As(err, &fe):
		writeError(w, http.StatusUnprocessableEntity, producer.CodeInvalidField, fe.Field, fe.Error())
	case errors.As(err, &tw):
		writeError(w, http.StatusBadGateway, "twilio_error", "", tw.Error())
	case errors.Is(err, context.DeadlineExceeded):
		writeError(w, http.StatusGatewayTimeout, "timeout", "", "timed out")
	default:
		s.logger().Error("HTTP API", "err", err)
		writeError(w, http.StatusInternalServerError, "internal", "", "internal error; it has been logged")
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

// answerCall answers getCallStatus and hangupCall.
func (s *Server) answerCall(w http.ResponseWriter, v tasks.CallState, err error) {
	var tw *twilioapi.Error
	var ve *vapi.Error
	switch {
	case err == nil:
		writeJSON(w, http.StatusOK, v)
	case errors.Is(err, calls.ErrNotFound) || (errors.As(err, &tw) && tw.Class == twilioapi.ClassNotFound) || vapi.IsNotFound(err):
		writeError(w, http.StatusNotFound, "not_found", "callSid", "no such call")
	case errors.Is(err, tasks.ErrNoProvider):
		writeError(w, http.StatusUnprocessableEntity, producer.CodeInvalidField, "callSid", "callSid: "+err.Error())
	case errors.As(err, &ve):
		writeError(w, http.StatusBadGateway, "vapi_error", "", ve.Error())
	default:
		writeTaskError(w, err, s)
	}
}
