package campaign

import (
	"container/heap"
	"context"
	"errors"
	"fmt"
	"io"
	"math/rand/v2"
	"slices"
	"strconv"
	"sync"
	"sync/atomic"
	"time"

	"github.com/hibiken/asynq"
	"github.com/redis/go-redis/v9"

	"github.com/sbagenthub/twilio-worker/internal/redisconn"
	"github.com/sbagenthub/twilio-worker/optout"
	"github.com/sbagenthub/twilio-worker/phone"
	"github.com/sbagenthub/twilio-worker/tasks"
	"github.com/sbagenthub/twilio-worker/wake"
)

// Defaults of Deps.
const (
	// WorkersDefault is how many batches are enqueued at once: enough to
	// keep a local Redis busy on two cores.
	WorkersDefault = 16
	// BatchDefault is how many recipients one reservation script handles.
	BatchDefault = 100
	// ProgressEveryDefault is how often Deps.Progress is called.
	ProgressEveryDefault = time.Second
	// InvalidListMax bounds Summary.Invalid: the invalid lines with the
	// lowest numbers are listed, InvalidCount counts them all.
	InvalidListMax = 1000
)

// Deps is what a submission needs.
type Deps struct {
	Redis redis.UniversalClient
	// Client enqueues the tasks; nil makes one on Redis whose concurrent
	// enqueues share round trips (one pipeline of scripts instead of a
	// round trip per task). asynq's client is safe for concurrent use: the
	// workers share it.
	Client *asynq.Client
	Rules  tasks.Rules
	// Durability (REDIS_WAIT_REPLICAS) confirms each batch's tasks with the
	// replicas before they count as enqueued; zero: no confirmation.
	Durability redisconn.Durability
	// Workers is how many batches are in flight at once (WorkersDefault).
	Workers int
	// Batch is how many recipients one Redis reservation covers (BatchDefault).
	Batch int
	// Progress, when set, is called about every ProgressEvery while the
	// submission runs, never after Submit returns.
	Progress      func(Progress)
	ProgressEvery time.Duration
	// Check, when set, is the pre-enqueue check of each recipient (the
	// fraud guard's CheckNumber, given the number as validation parsed it):
	// a refused one is an invalid line with its reason.
	Check func(ctx context.Context, to phone.Info, source string) error
}

// Request is a campaign submission: the same body (or, for a CSV list, a
// body with {{column}} placeholders) to every recipient.
type Request struct {
	Campaign   string   `json:"campaign"`
	Body       string   `json:"body"`
	From       string   `json:"from,omitempty"`
	Class      string   `json:"class,omitempty"` // transactional (default), alert, marketing
	Recipients []string `json:"recipients,omitempty"`
	// Source is who submits: "operator" (enqueue bulk, /v1/campaigns) or
	// "agent" (sendBulkSMS), recorded on every message for the fraud
	// guard. It is set by the entry point, never read from the request.
	Source string `json:"-"`
}

// Summary is the outcome of one submission. Every recipient line read
// counts in Total and in exactly one of Enqueued, AlreadyQueued,
// Duplicates, InvalidCount and OptedOut.
type Summary struct {
	Campaign   string        `json:"campaign"`
	Total      int64         `json:"total"`      // recipient lines read (blank lines aside)
	Enqueued   int64         `json:"enqueued"`   // tasks created by this submission
	Duplicates int64         `json:"duplicates"` // repeats of a recipient earlier in this input
	Invalid    []InvalidLine `json:"invalid"`    // the first InvalidListMax, by line
	OptedOut   int64         `json:"optedOut"`   // on the SMS opt-out list: not queued
	// AlreadyQueued counts recipients an earlier submission of the campaign
	// already queued: a re-run of the same input has Enqueued 0 and
	// AlreadyQueued the former Enqueued.
	AlreadyQueued int64 `json:"alreadyQueued"`
	InvalidCount  int64 `json:"invalidCount"` // all invalid lines; Invalid may list fewer
}

// InvalidLine is a recipient line that was not queued, and why (without the
// number: it may be somebody's real one).
type InvalidLine struct {
	Line   int    `json:"line"`
	Reason string `json:"reason"`
}

// Progress is a running submission's counts.
type Progress struct {
	Read          int64 `json:"read"`
	Enqueued      int64 `json:"enqueued"`
	AlreadyQueued int64 `json:"alreadyQueued"`
	Duplicates    int64 `json:"duplicates"`
	Invalid       int64 `json:"invalid"`
	OptedOut      int64 `json:"optedOut"`
}

// Submit queues req.Body to each of req.Recipients (the agent hub's
// sendBulkSMS action and POST /v1/campaigns with JSON). Bad input that
// concerns the whole request is a *tasks.FieldError; a bad recipient is an
// invalid line of the Summary. ErrCanceled: the campaign was canceled.
func Submit(ctx context.Context, d Deps, req Request) (Summary, error) {
	if len(req.Recipients) == 0 {
		return Summary{Campaign: req.Campaign, Invalid: []InvalidLine{}}, &tasks.FieldError{Field: "recipients", Problem: "is empty"}
	}
	return submit(ctx, d, req, &sliceSource{numbers: req.Recipients})
}

// SubmitFile queues req.Body to the recipients read from r: one per line, or
// CSV with a header naming a "phone" (or "to") column, whose other columns
// fill {{column}} placeholders in the body. r is streamed: memory does not
// grow with its size. req.Recipients is ignored.
func SubmitFile(ctx context.Context, d Deps, req Request, r io.Reader) (Summary, error) {
	if err := checkRequest(req); err != nil {
		return Summary{Campaign: req.Campaign, Invalid: []InvalidLine{}}, err
	}
	src, err := newFileSource(r)
	if err != nil {
		return Summary{Campaign: req.Campaign, Invalid: []InvalidLine{}}, err
	}
	return submit(ctx, d, req, src)
}

func checkRequest(req Request) error {
	if req.Campaign == "" {
		return &tasks.FieldError{Field: "campaign", Problem: "is required"}
	}
	if !ValidID(req.Campaign) {
		return &tasks.FieldError{Field: "campaign", Problem: "must be 1-64 letters, digits, '.', '_' or '-'"}
	}
	return nil
}

// probeNumber stands in for a recipient when the request's own fields are
// checked before any line is read (a Twilio test number: always valid).
const probeNumber = "+15005550006"

// reservation codes of reserveScript
const (
	codeNew = iota
	codeDuplicate
	codeQueued
	codeOptedOut
	codeRetry // reserved by a submission that did not confirm: enqueue again
)

// reserveScript claims a batch of recipients for this submission. KEYS:
// stats, recipients, this submission's set of numbers seen (one hash tag).
// ARGV: run tag, ttl seconds, now (Unix), then per number the number and
// "1" when it is on the SMS opt-out list (asked just before, in the
// opt-out store's own slot). Returns a code per number, or -1 when the
// campaign is canceled.
var reserveScript = redis.NewScript(`
if redis.call('HEXISTS', KEYS[1], 'canceledAt') == 1 then return -1 end
local out, new = {}, 0
for i = 4, #ARGV, 2 do
  local n = ARGV[i]
  local v = redis.call('HGET', KEYS[2], n)
  local c
  if redis.call('SADD', KEYS[3], n) == 0 then c = 1
  elseif v then
    if string.sub(v, 1, 2) == 'r:' then redis.call('HSET', KEYS[2], n, ARGV[1]); c = 4 else c = 2 end
  elseif ARGV[i + 1] == '1' then c = 3
  else redis.call('HSET', KEYS[2], n, ARGV[1]); new = new + 1; c = 0 end
  out[#out + 1] = c
end
if new > 0 then redis.call('HINCRBY', KEYS[1], 'total', new) end
redis.call('HSETNX', KEYS[1], 'createdAt', ARGV[3])
redis.call('EXPIRE', KEYS[1], ARGV[2])
redis.call('EXPIRE', KEYS[2], ARGV[2])
redis.call('EXPIRE', KEYS[3], 3600)
return out
`)

// confirmScript marks recipients queued. KEYS: stats, recipients. ARGV:
// tasks created, numbers….
var confirmScript = redis.NewScript(`
for i = 2, #ARGV do
  local v = redis.call('HGET', KEYS[2], ARGV[i])
  if v and string.sub(v, 1, 2) == 'r:' then redis.call('HSET', KEYS[2], ARGV[i], 'q') end
end
if tonumber(ARGV[1]) > 0 then redis.call('HINCRBY', KEYS[1], 'enqueued', ARGV[1]) end
return 1
`)

type run struct {
	d     Deps
	req   Request
	tmpl  template
	tag   string
	rules tasks.Rules

	read, enqueued, already, dups, invalid, optedOut atomic.Int64

	mu      sync.Mutex
	lowest  lineHeap // the InvalidListMax lowest invalid lines
	failErr error
}

func submit(ctx context.Context, d Deps, req Request, src source) (Summary, error) {
	sum := Summary{Campaign: req.Campaign, Invalid: []InvalidLine{}}
	if err := checkRequest(req); err != nil {
		return sum, err
	}
	if d.Redis == nil {
		return sum, errors.New("campaign: Deps.Redis is nil")
	}
	if d.Client == nil {
		pipe := newScriptPipe(d.Redis)
		defer pipe.close() // when submit returns: the workers have stopped
		d.Client = asynq.NewClientFromRedisClient(pipe)
	}
	if d.Workers <= 0 {
		d.Workers = WorkersDefault
	}
	if d.Batch <= 0 {
		d.Batch = BatchDefault
	}
	if d.ProgressEvery <= 0 {
		d.ProgressEvery = ProgressEveryDefault
	}
	r := &run{d: d, req: req, rules: d.Rules.WithDefaults(), tag: fmt.Sprintf("%s%08x", reservePrefix, rand.Uint32())}
	var err error
	if r.tmpl, err = parseTemplate(req.Body, src.columns()); err != nil {
		return sum, err
	}
	// The fields every message shares are checked once, before any line.
	probe := tasks.SMSPayload{To: probeNumber, Body: req.Body, From: req.From, Class: req.Class, Campaign: req.Campaign}
	if r.tmpl.personal() {
		probe.Body = "x"
	}
	if _, err := probe.Normalize(r.rules); err != nil {
		return sum, err
	}

	ctx, cancel := context.WithCancelCause(ctx)
	defer cancel(nil)
	batches := make(chan batchJob, d.Workers)
	var wg sync.WaitGroup
	for range d.Workers {
		wg.Add(1)
		go func() {
			defer wg.Done()
			for b := range batches {
				if ctx.Err() != nil {
					close(b.done) // drain
					continue
				}
				if err := r.batch(ctx, b); err != nil {
					cancel(err)
				}
			}
		}()
	}
	stopProgress := r.reportProgress(ctx)

	readErr := r.readAll(ctx, src, batches)
	close(batches)
	wg.Wait()
	stopProgress()
	r.d.Redis.Unlink(context.WithoutCancel(ctx), r.seenKey()) // else it expires within the hour

	err = context.Cause(ctx)
	if readErr != nil {
		err = readErr
	}
	sum.Total = r.read.Load()
	sum.Enqueued, sum.AlreadyQueued = r.enqueued.Load(), r.already.Load()
	sum.Duplicates, sum.OptedOut, sum.InvalidCount = r.dups.Load(), r.optedOut.Load(), r.invalid.Load()
	sum.Invalid = r.lowest.sorted()
	return sum, err
}

// seenKey is the set of numbers this submission has met: duplicates within
// one input are told from recipients queued by an earlier one. It lives in
// Redis, not in process memory, and goes when the submission ends.
func (r *run) seenKey() string { return key(r.req.Campaign, "to", r.tag) }

// batchJob is a batch of rows and its turn: batches are validated at once
// but reserve their recipients in input order (after prev is closed, then
// close done), so the first row of a repeated number always wins, whatever
// the order the workers get to Redis in.
type batchJob struct {
	rows []row
	prev <-chan struct{}
	done chan struct{}
}

// readAll streams the source into batches.
func (r *run) readAll(ctx context.Context, src source, batches chan<- batchJob) error {
	prev := make(chan struct{})
	close(prev)
	out := make(chan []row)
	sent := make(chan struct{})
	go func() {
		defer close(sent)
		for rows := range out {
			job := batchJob{rows: rows, prev: prev, done: make(chan struct{})}
			prev = job.done
			batches <- job
		}
	}()
	defer func() { close(out); <-sent }()
	b := make([]row, 0, r.d.Batch)
	for {
		rw, err := src.next()
		if errors.Is(err, io.EOF) {
			break
		}
		if err != nil {
			return err
		}
		r.read.Add(1)
		if b = append(b, rw); len(b) == r.d.Batch {
			select {
			case out <- b:
			case <-ctx.Done():
				return nil
			}
			b = make([]row, 0, r.d.Batch)
		}
	}
	if len(b) > 0 {
		select {
		case out <- b:
		case <-ctx.Done():
		}
	}
	return nil
}

type item struct {
	number string
	task   *asynq.Task
}

// batch validates a batch of rows, waits for its turn, reserves its
// recipients, enqueues the new ones and marks them queued.
func (r *run) batch(ctx context.Context, job batchJob) error {
	turn := false
	defer func() {
		if !turn {
			close(job.done)
		}
	}()
	items := make([]item, 0, len(job.rows))
	for _, rw := range job.rows {
		it, problem := r.prepare(rw)
		if problem != "" {
			r.invalidLine(rw.line, problem)
			continue
		}
		items = append(items, it)
	}
	select {
	case <-job.prev:
	case <-ctx.Done():
		return nil
	}
	if len(items) == 0 {
		return nil
	}
	// The opt-out list lives in its own slot ({optout}): ask it first. A
	// number opted out between this and the send is still caught by the
	// handler's check just before sending; this only spares the task.
	members := make([]any, len(items))
	for i, it := range items {
		members[i] = it.number
	}
	opted, err := r.d.Redis.SMIsMember(ctx, optout.SMS.Key(), members...).Result()
	if err != nil {
		return fmt.Errorf("check opt-outs: %w", err)
	}
	keys := []string{statsKey(r.req.Campaign), recipientsKey(r.req.Campaign), r.seenKey()}
	args := make([]any, 0, 3+2*len(items))
	args = append(args, r.tag, int64(TTL/time.Second), time.Now().Unix())
	for i, it := range items {
		flag := "0"
		if opted[i] {
			flag = "1"
		}
		args = append(args, it.number, flag)
	}
	res, err := reserveScript.Run(ctx, r.d.Redis, keys, args...).Result()
	turn = true
	close(job.done) // the next batch may reserve; enqueueing goes on at once
	if err != nil {
		return fmt.Errorf("reserve recipients: %w", err)
	}
	codes, ok := res.([]any)
	if !ok {
		return fmt.Errorf("%w: %q", ErrCanceled, r.req.Campaign)
	}
	if len(codes) != len(items) {
		return fmt.Errorf("reserve recipients: %d answers for %d numbers", len(codes), len(items))
	}
	// The new recipients are enqueued by EnqueueFanout goroutines at once:
	// asynq enqueues one task per round trip (a Lua script each), so the
	// round trips, not the CPU, bound a batch otherwise.
	var fresh []item
	for i, it := range items {
		switch c, _ := codes[i].(int64); c {
		case codeDuplicate:
			r.dups.Add(1)
		case codeQueued:
			r.already.Add(1)
		case codeOptedOut:
			r.optedOut.Add(1)
		default: // codeNew, codeRetry
			fresh = append(fresh, it)
		}
	}
	queued, created, err := r.enqueue(ctx, fresh)
	if err != nil {
		// Reserved but not queued: the next submission enqueues it.
		return fmt.Errorf("enqueue: %w", err)
	}
	confirm := make([]any, 1, 1+len(queued))
	for _, n := range queued {
		confirm = append(confirm, n)
	}
	if created > 0 {
		wake.Announce(ctx, r.d.Redis)
	}
	if len(confirm) == 1 {
		return nil
	}
	// The batch's tasks share the bulk queue's master: one WAIT covers them.
	if last := confirm[len(confirm)-1].(string); created > 0 {
		if err := r.d.Durability.ConfirmTask(ctx, r.d.Redis, tasks.QueueBulk, TaskID(r.req.Campaign, last)); err != nil {
			return fmt.Errorf("enqueue: %w", err)
		}
	}
	confirm[0] = strconv.FormatInt(created, 10)
	if err := confirmScript.Run(ctx, r.d.Redis, keys[:2], confirm...).Err(); err != nil {
		return fmt.Errorf("mark recipients queued: %w", err)
	}
	return nil
}

// EnqueueFanout is how many tasks of one batch are enqueued at once.
const EnqueueFanout = 4

// enqueue queues the tasks of items, EnqueueFanout at a time, and returns
// the numbers that are queued (by this call, or already: a task id
// conflict) and how many tasks it created. On an error it returns the first
// one, once every enqueue under way has ended.
func (r *run) enqueue(ctx context.Context, items []item) (queued []string, created int64, err error) {
	ok := make([]bool, len(items))
	var next atomic.Int64
	var made atomic.Int64
	var wg sync.WaitGroup
	errs := make([]error, min(EnqueueFanout, len(items)))
	for g := range errs {
		wg.Go(func() {
			for {
				i := int(next.Add(1)) - 1
				if i >= len(items) {
					return
				}
				it := items[i]
				_, err := r.d.Client.EnqueueContext(ctx, it.task, asynq.TaskID(TaskID(r.req.Campaign, it.number)))
				switch {
				case err == nil:
					made.Add(1)
					r.enqueued.Add(1)
				case errors.Is(err, asynq.ErrTaskIDConflict):
					r.already.Add(1)
				default:
					errs[g] = err
					next.Store(int64(len(items))) // stop the others
					return
				}
				ok[i] = true
			}
		})
	}
	wg.Wait()
	if err := errors.Join(errs...); err != nil {
		return nil, made.Load(), err
	}
	for i, it := range items {
		if ok[i] {
			queued = append(queued, it.number)
		}
	}
	return queued, made.Load(), nil
}

// prepare builds the row's task, or says why the row is invalid.
func (r *run) prepare(rw row) (item, string) {
	if rw.problem != "" {
		return item{}, rw.problem
	}
	// The number is parsed once, by NewSendSMSTaskTo (libphonenumber is
	// most of the CPU time of a submission), and the check gets it parsed;
	// the task id, which needs the E.164 form, is given at enqueue time.
	p := tasks.SMSPayload{To: rw.number, Body: r.tmpl.fill(rw.record), From: r.req.From, Class: r.req.Class, Campaign: r.req.Campaign, Source: r.req.Source}
	task, to, err := tasks.NewSendSMSTaskTo(p, r.rules, asynq.Queue(tasks.QueueBulk))
	if err != nil {
		return item{}, err.Error()
	}
	if r.d.Check != nil {
		if err := r.d.Check(context.Background(), to, r.req.Source); err != nil {
			return item{}, err.Error()
		}
	}
	return item{number: to.Number().String(), task: task}, ""
}

func (r *run) invalidLine(line int, reason string) {
	r.invalid.Add(1)
	r.mu.Lock()
	defer r.mu.Unlock()
	if len(r.lowest) < InvalidListMax {
		heap.Push(&r.lowest, InvalidLine{Line: line, Reason: reason})
	} else if line < r.lowest[0].Line {
		r.lowest[0] = InvalidLine{Line: line, Reason: reason}
		heap.Fix(&r.lowest, 0)
	}
}

func (r *run) progress() Progress {
	return Progress{Read: r.read.Load(), Enqueued: r.enqueued.Load(), AlreadyQueued: r.already.Load(),
		Duplicates: r.dups.Load(), Invalid: r.invalid.Load(), OptedOut: r.optedOut.Load()}
}

// reportProgress calls Deps.Progress on a ticker until the returned stop.
func (r *run) reportProgress(ctx context.Context) (stop func()) {
	if r.d.Progress == nil {
		return func() {}
	}
	done, exited := make(chan struct{}), make(chan struct{})
	go func() {
		defer close(exited)
		t := time.NewTicker(r.d.ProgressEvery)
		defer t.Stop()
		for {
			select {
			case <-done:
				return
			case <-ctx.Done():
				return
			case <-t.C:
				r.d.Progress(r.progress())
			}
		}
	}()
	return func() { close(done); <-exited }
}

// lineHeap is a max-heap of invalid lines by line number.
type lineHeap []InvalidLine

func (h lineHeap) Len() int           { return len(h) }
func (h lineHeap) Less(i, j int) bool { return h[i].Line > h[j].Line }
func (h lineHeap) Swap(i, j int)      { h[i], h[j] = h[j], h[i] }
func (h *lineHeap) Push(x any)        { *h = append(*h, x.(InvalidLine)) }
func (h *lineHeap) Pop() any {
	old := *h
	x := old[len(old)-1]
	*h = old[:len(old)-1]
	return x
}

func (h lineHeap) sorted() []InvalidLine {
	out := make([]InvalidLine, len(h))
	copy(out, h)
	slices.SortFunc(out, func(a, b InvalidLine) int { return a.Line - b.Line })
	return out
}
