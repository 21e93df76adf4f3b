package twiliosim

import (
	"container/heap"
	"sync"
	"time"
)

// scheduler runs short functions at given times on one goroutine, from a
// timer heap. Each live record has at most one pending event (every step
// schedules the next), so the heap stays as small as the number of messages
// and calls in flight.
type scheduler struct {
	mu     sync.Mutex
	events eventHeap
	seq    uint64
	closed bool

	wake chan struct{}
	quit chan struct{}
	done chan struct{}
}

type event struct {
	at  time.Time
	seq uint64 // keeps events due at the same time in the order they were added
	fn  func()
}

type eventHeap []event

func (h eventHeap) Len() int { return len(h) }
func (h eventHeap) Less(i, j int) bool {
	if h[i].at.Equal(h[j].at) {
		return h[i].seq < h[j].seq
	}
	return h[i].at.Before(h[j].at)
}
func (h eventHeap) Swap(i, j int) { h[i], h[j] = h[j], h[i] }
func (h *eventHeap) Push(x any)   { *h = append(*h, x.(event)) }
func (h *eventHeap) Pop() any {
	old := *h
	n := len(old)
	e := old[n-1]
	old[n-1] = event{}
	*h = old[:n-1]
	return e
}

func newScheduler() *scheduler {
	s := &scheduler{
		wake: make(chan struct{}, 1),
		quit: make(chan struct{}),
		done: make(chan struct{}),
	}
	go s.run()
	return s
}

// after runs fn on the scheduler goroutine once d has passed. fn must not
// block. After close, after does nothing.
func (s *scheduler) after(d time.Duration, fn func()) {
	s.mu.Lock()
	if s.closed {
		s.mu.Unlock()
		return
	}
	s.seq++
	heap.Push(&s.events, event{at: time.Now().Add(d), seq: s.seq, fn: fn})
	s.mu.Unlock()
	select {
	case s.wake <- struct{}{}:
	default:
	}
}

func (s *scheduler) pending() int {
	s.mu.Lock()
	defer s.mu.Unlock()
	return len(s.events)
}

func (s *scheduler) run() {
	defer close(s.done)
	timer := time.NewTimer(time.Hour)
	defer timer.Stop()
	for {
		var due []func()
		wait := time.Hour
		now := time.Now()
		s.mu.Lock()
		for len(s.events) > 0 {
			if d := s.events[0].at.Sub(now); d > 0 {
				wait = d
				break
			}
			due = append(due, heap.Pop(&s.events).(event).fn)
		}
		s.mu.Unlock()
		for _, fn := range due {
			fn()
		}
		if len(due) > 0 {
			continue // the functions may have scheduled events that are due now
		}
		timer.Reset(wait)
		select {
		case <-s.quit:
			return
		case <-s.wake:
		case <-timer.C:
		}
	}
}

// close stops the goroutine and drops pending events.
func (s *scheduler) close() {
	s.mu.Lock()
	if s.closed {
		s.mu.Unlock()
		<-s.done
		return
	}
	s.closed = true
	s.events = nil
	s.mu.Unlock()
	close(s.quit)
	<-s.done
}
