// Package producer is the one way tasks enter the queue. The enqueue
// command, the HTTP API (/v1/actions, /v1/campaigns) and any other entry
// point hand it a request; it validates the request once, runs the
// registered checks, claims the idempotency key for every queue at once,
// books the message's rate-limit slot, enqueues, and writes the "queued"
// entry of the communications log. Entry points only translate: flags or
// JSON in, a Producer call, an exit code or HTTP status out.
//
// Its model is river's Client.Insert: one function per kind of work, each
// returning what was queued (or the task the key already names).
package producer

import (
	"context"
	"errors"
	"fmt"
	"log/slog"
	"sync"
	"time"

	"github.com/google/uuid"
	"github.com/hibiken/asynq"
	"github.com/redis/go-redis/v9"

	"github.com/sbagenthub/twilio-worker/calls"
	"github.com/sbagenthub/twilio-worker/commlog"
	"github.com/sbagenthub/twilio-worker/internal/redisconn"
	"github.com/sbagenthub/twilio-worker/ledger"
	"github.com/sbagenthub/twilio-worker/phone"
	"github.com/sbagenthub/twilio-worker/tasks"
	"github.com/sbagenthub/twilio-worker/wake"
)

// MaxSendAhead bounds sendAt: a task is scheduled at most this far ahead.
const MaxSendAhead = 35 * 24 * time.Hour

// ErrConflict is a key that names a task of another type, or one made from
// another payload, while it is held (HTTP 409, enqueue exit 2).
var ErrConflict = errors.New("idempotency key conflict")

// ErrStarted is a Cancel of a task that has already started (or ended).
var ErrStarted = errors.New("task has already started")

// Check runs before a task is queued, after its payload is validated and
// normalised; it may change the request (choose a sender) or refuse it. A
// refusal that is the client's fault is a *tasks.FieldError.
type Check func(ctx context.Context, r *Request) error

// Producer puts tasks into the queue. Its zero value is not usable: Redis
// is required; the other fields have defaults or are optional.
type Producer struct {
	Redis redis.UniversalClient
	// Client and Inspector are made on Redis when nil.
	Client    *asynq.Client
	Inspector *asynq.Inspector
	// Booker books a default- or bulk-queue message's send slot; nil books
	// none (the handler applies the limits when the task runs).
	Booker tasks.Booker
	// Releaser gives back the slots of a task canceled before it ran; nil: none.
	Releaser tasks.Releaser
	// Comms is the communications log: every task queued is recorded; nil: none.
	Comms *commlog.Log
	// Calls and Fetcher answer CallStatus (Fetcher may be nil).
	Calls   *calls.Store
	Fetcher tasks.CallFetcher
	Rules   tasks.Rules
	// Source names the entry point in the queued entry ("HTTP API", "cli").
	Source string
	// Checks run in order before every sendSMS and makeCall task is queued
	// (a check may change the request, e.g. choose a sender). A campaign's
	// recipients get Guard only: their tasks are built in batches, and a
	// change to one request could not reach its task.
	Checks []Check
	// Logger logs what was queued; nil logs nothing.
	Logger *slog.Logger
	// Guard refuses a recipient before anything is queued or booked (the
	// fraud guard's CheckEnqueue: country, number type), for sendSMS,
	// makeCall and every campaign recipient, given the request's source
	// (tasks.SourceAgent or operator); nil refuses none.
	Guard func(ctx context.Context, to, source string) error
	// GuardNumber is Guard for a number validation has parsed already (the
	// fraud guard's CheckNumber): campaigns check each recipient with it,
	// when set, instead of Guard, which parses the number again.
	GuardNumber func(ctx context.Context, to phone.Info, source string) error
	// Durability is REDIS_WAIT_REPLICAS: an enqueue counts (is answered)
	// only once that many replicas confirmed it.
	Durability redisconn.Durability
	// ScheduleMin is TWILIO_SCHEDULE_MIN of workers with a Messaging
	// Service (LoadScheduling): an sms:send with a sendAt at least this far
	// ahead, no from and not marketing is queued to run now and handed to
	// Twilio to schedule; 0: every sendAt waits in the queue.
	ScheduleMin time.Duration
	// Canceler cancels at Twilio the messages Twilio holds as scheduled
	// (Cancel); nil: such a cancel is ErrUnavailable.
	Canceler tasks.MessageCanceler

	actions map[string]ActionFunc
	once    sync.Once
}

// Request is one task to queue, as the checks see it.
type Request struct {
	Type  string // tasks.TypeSendSMS or tasks.TypeMakeCall
	Key   string // the client's idempotency key; "" for none
	Queue string // critical, default (when "") or bulk
	// SendAt, when set, is when the task runs (validFor counts from it).
	SendAt time.Time
	SMS    *tasks.SMSPayload  // sms:send, normalised
	Call   *tasks.CallPayload // call:make, normalised
}

// To is the request's recipient in E.164.
func (r *Request) To() string {
	if r.SMS != nil {
		return r.SMS.To
	}
	if r.Call != nil {
		return r.Call.To
	}
	return ""
}

// source is who asked: tasks.SourceAgent for the agent hub's actions, ""
// (an operator) otherwise.
func (r *Request) source() string {
	if r.SMS != nil {
		return r.SMS.Source
	}
	if r.Call != nil {
		return r.Call.Source
	}
	return ""
}

// Result is a queued task, or the one the key already named.
type Result struct {
	TaskID string `json:"taskId"`
	Type   string `json:"-"`
	Queue  string `json:"queue"`
	State  string `json:"state"`
	To     string `json:"-"`
	// RunAt is when a scheduled task runs (sendAt, or its booked slot).
	RunAt time.Time `json:"-"`
	// Existing: the key named a task queued before; nothing new was queued.
	Existing bool `json:"-"`
	// Payload is the normalised payload (*tasks.SMSPayload or *tasks.CallPayload).
	Payload any `json:"-"`
}

// SMS is an sms:send request: the payload and how to queue it.
type SMS struct {
	tasks.SMSPayload
	Key    string
	Queue  string
	SendAt time.Time
}

// Call is a call:make request.
type Call struct {
	tasks.CallPayload
	Key    string
	Queue  string
	SendAt time.Time
}

// SendSMS validates m and queues it.
func (p *Producer) SendSMS(ctx context.Context, m SMS) (Result, error) {
	m.SendAt = ahead(m.SendAt)
	r := p.rules(m.SendAt)
	if err := checkOptions(m.Key, m.Queue, m.SendAt); err != nil {
		return Result{}, err
	}
	norm, err := m.SMSPayload.Normalize(r)
	if err != nil {
		return Result{}, err
	}
	return p.submit(ctx, &Request{Type: tasks.TypeSendSMS, Key: m.Key, Queue: queueOr(m.Queue), SendAt: m.SendAt, SMS: &norm})
}

// MakeCall validates c and queues it.
func (p *Producer) MakeCall(ctx context.Context, c Call) (Result, error) {
	c.SendAt = ahead(c.SendAt)
	r := p.rules(c.SendAt)
	if err := checkOptions(c.Key, c.Queue, c.SendAt); err != nil {
		return Result{}, err
	}
	norm, err := c.CallPayload.Normalize(r)
	if err != nil {
		return Result{}, err
	}
	return p.submit(ctx, &Request{Type: tasks.TypeMakeCall, Key: c.Key, Queue: queueOr(c.Queue), SendAt: c.SendAt, Call: &norm})
}

// rules are the producer's rules, with the clock at sendAt when one is
// given: validFor counts from it.
func (p *Producer) rules(sendAt time.Time) tasks.Rules {
	r := p.Rules.WithDefaults()
	if !sendAt.IsZero() {
		r.Now = func() time.Time { return sendAt }
	}
	return r
}

func checkOptions(key, queue string, sendAt time.Time) error {
	if key != "" && !tasks.ValidKey(key) {
		return &tasks.FieldError{Field: "key", Problem: "must be 1-128 letters, digits, '.', '_', ':' or '-' (a UUID fits)"}
	}
	if queue != "" && !tasks.ValidQueue(queue) {
		return &tasks.FieldError{Field: "priority", Problem: "must be critical, default or bulk"}
	}
	if !sendAt.IsZero() {
		if ahead := time.Until(sendAt); ahead > MaxSendAhead {
			return &tasks.FieldError{Field: "sendAt", Problem: fmt.Sprintf("is more than %d days ahead", int(MaxSendAhead/(24*time.Hour)))}
		}
	}
	return nil
}

// ParseSendAt reads sendAt: RFC 3339, at most MaxSendAhead ahead; a time in
// the past means now. "" is the zero time.
func ParseSendAt(s string) (time.Time, error) {
	if s == "" {
		return time.Time{}, nil
	}
	t, err := time.Parse(time.RFC3339, s)
	if err != nil {
		return time.Time{}, &tasks.FieldError{Field: "sendAt", Problem: "must be an RFC 3339 time such as 2026-12-24T09:00:00Z"}
	}
	if time.Until(t) > MaxSendAhead {
		return time.Time{}, &tasks.FieldError{Field: "sendAt", Problem: fmt.Sprintf("is more than %d days ahead", int(MaxSendAhead/(24*time.Hour)))}
	}
	if !t.After(time.Now()) {
		return time.Time{}, nil
	}
	return t.UTC(), nil
}

// ahead is t when it is in the future, else the zero time (now).
func ahead(t time.Time) time.Time {
	if t.After(time.Now()) {
		return t.UTC()
	}
	return time.Time{}
}

func queueOr(q string) string {
	if q == "" {
		return tasks.QueueDefault
	}
	return q
}

// setUp makes the Client and Inspector left nil, once: the producer is
// used from many goroutines.
func (p *Producer) setUp() {
	p.once.Do(func() {
		if p.Client == nil {
			p.Client = asynq.NewClientFromRedisClient(p.Redis)
		}
		if p.Inspector == nil {
			p.Inspector = asynq.NewInspectorFromRedisClient(p.Redis)
		}
	})
}

func (p *Producer) client() *asynq.Client {
	p.setUp()
	return p.Client
}

func (p *Producer) inspector() *asynq.Inspector {
	p.setUp()
	return p.Inspector
}

func (p *Producer) logger() *slog.Logger {
	if p.Logger == nil {
		return slog.New(slog.DiscardHandler)
	}
	return p.Logger
}

// submit claims the key, runs the checks, books, enqueues and logs.
func (p *Producer) submit(ctx context.Context, req *Request) (Result, error) {
	if p.Redis == nil {
		return Result{}, errors.New("producer: no Redis")
	}
	hash := payloadHash(req)
	id := req.Key
	if id == "" {
		id = uuid.NewString()
	}
	r := p.Rules.WithDefaults()
	// The key lives as long as its task's result: until the task runs, and
	// RESULT_TTL after.
	life := r.ResultTTL
	if !req.SendAt.IsZero() {
		life += time.Until(req.SendAt)
	}
	if req.Key != "" {
		prev, fresh, err := p.claim(ctx, req.Key, claimValue{Type: req.Type, Hash: hash, ID: id, Queue: req.Queue}, life)
		if err != nil {
			return Result{}, err
		}
		if !fresh {
			return p.existing(ctx, req, hash, prev)
		}
		if err := p.retire(ctx, id, req.To()); err != nil {
			if errors.Is(err, ErrConflict) && p.requeued(ctx, req.Key) {
				// A retry with the key, finding no task yet, queued this
				// request's task first (existing): answer with it.
				return p.held(ctx, req, req.Queue, id)
			}
			if !errors.Is(err, ErrConflict) {
				p.unclaim(ctx, req.Key, id)
			}
			return Result{}, err
		}
	}
	res, err := p.checkAndEnqueue(ctx, req, id)
	if errors.Is(err, ErrConflict) && req.Key != "" && p.requeued(ctx, req.Key) {
		return p.held(ctx, req, req.Queue, id) // as above
	}
	var queued queuedError
	if err != nil && req.Key != "" && !errors.Is(err, ErrConflict) && !errors.As(err, &queued) {
		p.unclaim(ctx, req.Key, id)
	}
	return res, err
}

// queuedError is a failure after the task was queued (the replicas did not
// confirm it): the key keeps naming the task.
type queuedError struct{ error }

func (e queuedError) Unwrap() error { return e.error }

func (p *Producer) checkAndEnqueue(ctx context.Context, req *Request, id string) (Result, error) {
	if p.Guard != nil {
		if err := p.Guard(ctx, req.To(), req.source()); err != nil {
			return Result{}, err
		}
	}
	for _, check := range p.Checks {
		if err := check(ctx, req); err != nil {
			return Result{}, err
		}
	}
	opts := []asynq.Option{asynq.Queue(req.Queue), asynq.TaskID(id)}
	runAt := req.SendAt
	handOffOpts, handedOff := p.handOff(req)
	if handedOff {
		// Twilio schedules it: the task runs now and books no slot.
		opts, runAt = append(opts, handOffOpts...), time.Time{}
	}
	var task *asynq.Task
	var err error
	var payload any
	switch req.Type {
	case tasks.TypeSendSMS:
		task, err = tasks.NewSendSMSTask(*req.SMS, p.Rules, opts...)
		payload = req.SMS
		if err == nil && runAt.IsZero() && !handedOff && p.Booker != nil && req.Queue != tasks.QueueCritical {
			runAt, err = p.book(ctx, id, req)
		}
	case tasks.TypeMakeCall:
		task, err = tasks.NewMakeCallTask(*req.Call, p.Rules, opts...)
		payload = req.Call
	default:
		return Result{}, fmt.Errorf("producer: unknown task type %q", req.Type)
	}
	if err != nil {
		return Result{}, err
	}
	var at []asynq.Option
	if runAt.After(time.Now()) {
		at = append(at, asynq.ProcessAt(runAt))
	}
	info, err := p.enqueue(ctx, task, at)
	if err != nil {
		return Result{}, err
	}
	// The enqueue counts once REDIS_WAIT_REPLICAS replicas confirmed it.
	if err := p.Durability.ConfirmTask(ctx, p.Redis, info.Queue, info.ID); err != nil {
		// The task is queued but not confirmed: the key stays claimed, so a
		// retry with it answers with this task (confirming it then) instead
		// of meeting it as another one.
		return Result{}, queuedError{fmt.Errorf("enqueue: %w", err)}
	}
	wake.Announce(ctx, p.Redis) // idle workers poll at once instead of within IDLE_POLL_INTERVAL
	res := Result{TaskID: info.ID, Type: info.Type, Queue: info.Queue, State: info.State.String(),
		To: req.To(), Payload: payload}
	if len(at) > 0 {
		res.RunAt = runAt
	}
	p.logQueued(ctx, req, res, handedOff)
	p.logger().Info("task enqueued", "task", res.TaskID, "type", res.Type, "queue", res.Queue, "source", p.Source)
	return res, nil
}

// retire makes way for a new task under a key whose claim has just been
// taken: a task the key named before that has ended (its result outlives
// the claim by how long it ran) is deleted, and its send-ledger line
// forgotten, so the new task sends afresh instead of answering the old SID.
// One still queued or running is ErrConflict: its ledger line is its own.
func (p *Producer) retire(ctx context.Context, id, to string) error {
	old, err := tasks.Find(p.inspector(), id)
	switch {
	case errors.Is(err, tasks.ErrTaskNotFound):
	case err != nil:
		return err
	case old.State == asynq.TaskStateCompleted || old.State == asynq.TaskStateArchived:
		if err := p.inspector().DeleteTask(old.Queue, id); err != nil && !errors.Is(err, asynq.ErrTaskNotFound) {
			return fmt.Errorf("delete the ended task %s: %w", id, err)
		}
	default:
		return fmt.Errorf("%w: %s names a task that is still %s", ErrConflict, id, old.State)
	}
	return ledger.New(p.Redis).Forget(ctx, id, to)
}

// enqueue enqueues task. An id taken meanwhile (a worker's task of the
// same id, or one queued around the claim) is ErrConflict.
func (p *Producer) enqueue(ctx context.Context, task *asynq.Task, at []asynq.Option) (*asynq.TaskInfo, error) {
	info, err := p.client().EnqueueContext(ctx, task, at...)
	switch {
	case errors.Is(err, asynq.ErrTaskIDConflict):
		return nil, fmt.Errorf("%w: the task id is taken", ErrConflict)
	case err != nil:
		return nil, fmt.Errorf("enqueue: %w", err)
	}
	return info, nil
}

// book books an SMS's send slot and returns when the task should run (the
// zero time: now).
func (p *Producer) book(ctx context.Context, id string, req *Request) (time.Time, error) {
	d, err := p.Booker.BookSMS(ctx, tasks.LimitMessage(id, req.Queue, *req.SMS))
	if err != nil {
		return time.Time{}, err
	}
	// A slot after the message expires is not booked: the task is queued
	// now and its handler archives it as expired, or sends it if the
	// sender's backlog has cleared by then.
	if d.Late {
		return time.Time{}, nil
	}
	return d.At, nil
}

// logQueued records a queued task in the communications log. A failure is
// logged; the task stays queued.
func (p *Producer) logQueued(ctx context.Context, req *Request, res Result, handedOff bool) {
	if p.Comms == nil {
		return
	}
	channel := "sms"
	if req.Type == tasks.TypeMakeCall {
		channel = "voice"
	}
	reason := "queue " + res.Queue
	if p.Source != "" {
		reason += " (" + p.Source + ")"
	}
	e := commlog.Entry{Event: commlog.Queued, Channel: channel, TaskID: res.TaskID, To: res.To, Reason: reason}
	if !res.RunAt.IsZero() {
		e.Until = res.RunAt.UTC().Format(time.RFC3339)
	}
	if handedOff {
		e.Reason += "; to be scheduled at Twilio"
		e.Until = req.SendAt.UTC().Format(time.RFC3339)
	}
	if err := p.Comms.Append(ctx, e); err != nil {
		p.logger().Warn("communications log append failed", "err", err)
	}
}
