package httpapi

import (
	"context"
	"encoding/json"
	"errors"
	"fmt"
	"net/http"
	"time"

	"github.com/hibiken/asynq"

	"github.com/sbagenthub/twilio-worker/calls"
	"github.com/sbagenthub/twilio-worker/producer"
	"github.com/sbagenthub/twilio-worker/tasks"
	"github.com/sbagenthub/twilio-worker/twilioapi"
	"github.com/sbagenthub/twilio-worker/vapi"
)

var _ vapi.Actions = (*Server)(nil)

// routeVAPI mounts VAPI's Server URL, POST /vapi/server, when s.VAPI is
// set. It answers 403 until VAPI_SERVER_TOKEN or VAPI_HMAC_SECRET is set.
func (s *Server) routeVAPI(mux *http.ServeMux) {
	if s.VAPI == nil {
		return
	}
	h := *s.VAPI
	if h.Actions == nil {
		h.Actions = s
	}
	mux.Handle("/vapi/server", &h)
}

// Do runs one of the agent hub's actions for a VAPI tool call, through the
// producer like POST /v1/actions (the same decoding, checks, booking and
// queue): key is the task id, so the same tool call twice finds its task
// instead of acting again. It waits for the task's outcome until ctx's
// deadline.
func (s *Server) Do(ctx context.Context, name string, args json.RawMessage, key string) (vapi.Result, error) {
	p := s.producer()
	body, _ := json.Marshal(map[string]any{"action": name, "arguments": args})
	a, err := p.Decode(body)
	if err != nil {
		return vapi.Result{}, err
	}
	if !tasks.ValidKey(key) {
		return vapi.Result{}, errors.New("toolCallId: cannot be made into a task id")
	}
	opCtx, cancel := context.WithTimeout(context.WithoutCancel(ctx), callStatusTimeout)
	defer cancel()
	switch a.Name {
	case producer.ActionGetCallStatus:
		st, err := s.lookupCall(opCtx, a.CallSID)
		if err != nil {
			return vapi.Result{}, toolError(err)
		}
		return answer(st)
	case producer.ActionHangupCall:
		st, err := s.hangup(opCtx, a.CallSID)
		if err != nil {
			return vapi.Result{}, toolError(err)
		}
		return answer(st)
	case producer.ActionSendSMS:
	case producer.ActionMakeCall:
		if (a.Call.AssistantID != "" || a.Call.Agent) && s.Agents == nil {
			return vapi.Result{}, errors.New("assistantId: VAPI is not configured on this worker")
		}
	default:
		return vapi.Result{}, fmt.Errorf("function: %s cannot be called from a voice assistant", a.Name)
	}
	if p.Redis == nil {
		return vapi.Result{}, errors.New("this worker has no task queue")
	}
	a.Key = key
	enqCtx, cancelEnq := context.WithTimeout(context.WithoutCancel(ctx), redisTimeout)
	defer cancelEnq()
	var info *asynq.TaskInfo
	out, err := p.Do(enqCtx, a)
	switch {
	case errors.Is(err, producer.ErrConflict):
		// The assistant repeated the tool call with other arguments: VAPI's
		// tool call acts once, so it answers with the first task.
		info, err = tasks.Find(p.Inspector, key)
		want := tasks.TypeSendSMS
		if a.Name == producer.ActionMakeCall {
			want = tasks.TypeMakeCall
		}
		if err != nil || info.Type != want {
			return vapi.Result{}, errors.New("toolCallId: was used for another action in this call")
		}
	case err != nil:
		var fe *tasks.FieldError
		if errors.As(err, &fe) {
			return vapi.Result{}, toolError(err)
		}
		s.logger().Error("enqueue for a VAPI tool call", "action", a.Name, "err", err)
		return vapi.Result{}, errors.New("the task queue is unreachable; try again")
	default:
		queued, _ := out.(producer.Result)
		if info, err = p.Inspector.GetTaskInfo(queued.Queue, queued.TaskID); err != nil {
			return vapi.Result{TaskID: queued.TaskID, Pending: true}, nil
		}
	}
	wait := time.Second
	if d, ok := ctx.Deadline(); ok {
		wait = time.Until(d)
	}
	if wait > 0 {
		info = s.waitDone(ctx, info, wait)
	}
	res := vapi.Result{TaskID: info.ID}
	switch info.State {
	case asynq.TaskStateCompleted:
		res.Answer = tasks.StatusOf(info).Result
		var skipped struct{ Status, Reason string }
		if json.Unmarshal(res.Answer, &skipped) == nil && skipped.Status == "skipped" {
			return res, errors.New("not sent: " + skipped.Reason)
		}
		if len(res.Answer) == 0 {
			res.Pending = true
		}
	case asynq.TaskStateArchived:
		return res, errors.New("not sent: " + info.LastErr)
	default:
		res.Pending = true
	}
	return res, nil
}

func answer(v any) (vapi.Result, error) {
	b, err := json.Marshal(v)
	if err != nil {
		return vapi.Result{}, err
	}
	return vapi.Result{Answer: b}, nil
}

// toolError is the single fact a tool call's error says: the field at
// fault, Twilio's or VAPI's refusal, or that the call is unknown.
func toolError(err error) error {
	var fe *tasks.FieldError
	var tw *twilioapi.Error
	var ve *vapi.Error
	switch {
	case errors.As(err, &fe):
		return fe
	case errors.Is(err, calls.ErrNotFound), twilioapi.ClassOf(err) == twilioapi.ClassNotFound && errors.As(err, &tw), vapi.IsNotFound(err):
		return errors.New("callSid: no such call")
	case errors.As(err, &tw):
		return errors.New(tw.Error())
	case errors.As(err, &ve):
		return errors.New(ve.Error())
	case errors.Is(err, tasks.ErrNoProvider):
		return errors.New("callSid: " + err.Error())
	case errors.Is(err, context.DeadlineExceeded):
		return errors.New("timed out; try again")
	}
	return errors.New("internal error; it has been logged")
}

// lookupCall answers getCallStatus for either provider's call id.
func (s *Server) lookupCall(ctx context.Context, id string) (tasks.CallState, error) {
	if s.Calls == nil {
		return tasks.CallState{}, errors.New("getCallStatus is not available in this worker")
	}
	if calls.KindOf(id) == calls.KindVAPI {
		return tasks.LookupAgentCall(ctx, s.Calls, s.Agents, id)
	}
	var fetcher tasks.CallFetcher
	if s.Twilio != nil {
		fetcher = s.Twilio
	}
	return tasks.LookupCall(ctx, s.Calls, fetcher, id)
}

// hangup answers hangupCall.
func (s *Server) hangup(ctx context.Context, id string) (tasks.CallState, error) {
	if s.Calls == nil {
		return tasks.CallState{}, errors.New("hangupCall is not available in this worker")
	}
	var tw tasks.CallUpdater
	if s.Twilio != nil {
		tw = s.Twilio
	}
	return tasks.Hangup(ctx, s.Calls, tw, s.Agents, id)
}
