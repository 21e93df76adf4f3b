package twiliosim

import (
	"context"
	"crypto/hmac"
	"crypto/sha1"
	"encoding/base64"
	"hash/fnv"
	"io"
	"log/slog"
	"net/http"
	"net/url"
	"slices"
	"strings"
	"sync"
	"time"
)

// Sign returns the X-Twilio-Signature Twilio puts on a webhook: the base64
// HMAC-SHA1, keyed with the auth token, of the full URL followed by every
// POST parameter's name and value, sorted by name. For GET webhooks the
// parameters are in fullURL and params is nil. It matches twilio-go's
// client.RequestValidator.
func Sign(authToken, fullURL string, params url.Values) string {
	mac := hmac.New(sha1.New, []byte(authToken))
	io.WriteString(mac, fullURL)
	keys := make([]string, 0, len(params))
	for k := range params {
		keys = append(keys, k)
	}
	slices.Sort(keys)
	for _, k := range keys {
		for _, v := range params[k] {
			io.WriteString(mac, k)
			io.WriteString(mac, v)
		}
	}
	return base64.StdEncoding.EncodeToString(mac.Sum(nil))
}

// Webhook delivery tuning.
const (
	notifyWorkers   = 8
	notifyQueueSize = 1024 // per worker; a full queue drops the webhook
	notifyTimeout   = 5 * time.Second
	notifyAttempts  = 3
	notifyBackoff   = 100 * time.Millisecond
)

// webhook is one status callback to deliver.
type webhook struct {
	key    string // resource SID: webhooks for one resource go through one worker, in order
	method string // GET or POST
	url    string
	params url.Values
}

// notifier delivers webhooks from a bounded pool of workers so a slow
// receiver never blocks the API or the scheduler.
type notifier struct {
	token  string
	log    *slog.Logger
	client *http.Client
	queues []chan webhook
	ctx    context.Context
	cancel context.CancelFunc
	wg     sync.WaitGroup

	mu     sync.RWMutex
	closed bool
}

func newNotifier(token string, log *slog.Logger) *notifier {
	ctx, cancel := context.WithCancel(context.Background())
	n := &notifier{
		token:  token,
		log:    log,
		client: &http.Client{Timeout: notifyTimeout, Transport: &http.Transport{MaxIdleConnsPerHost: notifyWorkers}},
		queues: make([]chan webhook, notifyWorkers),
		ctx:    ctx,
		cancel: cancel,
	}
	for i := range n.queues {
		n.queues[i] = make(chan webhook, notifyQueueSize)
		n.wg.Add(1)
		go n.work(n.queues[i])
	}
	return n
}

// send queues w without blocking; a full queue drops it with a log line.
func (n *notifier) send(w webhook) {
	h := fnv.New32a()
	io.WriteString(h, w.key)
	n.mu.RLock()
	defer n.mu.RUnlock()
	if n.closed {
		return
	}
	select {
	case n.queues[h.Sum32()%uint32(len(n.queues))] <- w:
	default:
		n.log.Warn("status callback dropped: queue full", "url", w.url, "sid", w.key)
	}
}

func (n *notifier) work(q chan webhook) {
	defer n.wg.Done()
	for w := range q {
		if n.ctx.Err() != nil {
			continue // closing: drain without sending
		}
		n.deliver(w)
	}
}

func (n *notifier) deliver(w webhook) {
	for attempt := 1; ; attempt++ {
		status, err := n.do(w)
		if err == nil && status < 500 {
			if status >= 400 {
				n.log.Warn("status callback refused", "url", w.url, "sid", w.key, "status", status)
			}
			return
		}
		if attempt == notifyAttempts || n.ctx.Err() != nil {
			n.log.Warn("status callback failed", "url", w.url, "sid", w.key, "status", status, "err", err, "attempts", attempt)
			return
		}
		select {
		case <-n.ctx.Done():
			return
		case <-time.After(notifyBackoff << (attempt - 1)):
		}
	}
}

func (n *notifier) do(w webhook) (int, error) {
	req, err := signedRequest(n.ctx, n.token, w.method, w.url, w.params)
	if err != nil {
		return 0, err
	}
	resp, err := n.client.Do(req)
	if err != nil {
		return 0, err
	}
	defer resp.Body.Close()
	io.Copy(io.Discard, io.LimitReader(resp.Body, 64<<10))
	return resp.StatusCode, nil
}

// signedRequest builds a webhook request as Twilio does: POST with a form
// body, or GET with the parameters appended to the query, signed either way.
func signedRequest(ctx context.Context, token, method, rawURL string, params url.Values) (*http.Request, error) {
	var req *http.Request
	var err error
	if method == http.MethodGet {
		u, perr := url.Parse(rawURL)
		if perr != nil {
			return nil, perr
		}
		q := u.Query()
		for k, vs := range params {
			for _, v := range vs {
				q.Add(k, v)
			}
		}
		u.RawQuery = q.Encode()
		req, err = http.NewRequestWithContext(ctx, http.MethodGet, u.String(), nil)
		if err != nil {
			return nil, err
		}
		req.Header.Set("X-Twilio-Signature", Sign(token, u.String(), nil))
	} else {
		req, err = http.NewRequestWithContext(ctx, http.MethodPost, rawURL, strings.NewReader(params.Encode()))
		if err != nil {
			return nil, err
		}
		req.Header.Set("Content-Type", "application/x-www-form-urlencoded")
		req.Header.Set("X-Twilio-Signature", Sign(token, rawURL, params))
	}
	req.Header.Set("User-Agent", "TwilioProxy/1.1")
	req.Header.Set("I-Twilio-Idempotency-Token", newSID("ID")[2:])
	return req, nil
}

// close stops the workers; queued webhooks are dropped.
func (n *notifier) close() {
	n.mu.Lock()
	if n.closed {
		n.mu.Unlock()
		return
	}
	n.closed = true
	n.cancel()
	for _, q := range n.queues {
		close(q)
	}
	n.mu.Unlock()
	n.wg.Wait()
	n.client.CloseIdleConnections()
}
