// Package eventbus hands events from noded's services to any number of
// subscribers (the kubelet's GetContainerEvents streams) without ever
// making a publisher wait for one of them.
//
// Each subscriber has its own bounded queue. Publish puts the event on
// every queue that has room; a subscriber whose queue is full has fallen
// behind (or stopped reading) and is cut off: its queue is emptied and
// closed, and Err reports ErrOverflow, so that its stream ends with an
// error and its client relists instead of trusting a stream with a gap.
// Memory is therefore bounded by subscribers × queue size, whatever the
// subscribers do.
//
// A backlog (Hold, Release) keeps the events published while noded
// recovers after a restart, before anyone can subscribe, and gives them to
// the subscribers that arrive soon after: the exits noticed at start-up
// still reach the kubelet that reconnects.
package eventbus

import (
	"errors"
	"fmt"
	"sync"
	"time"

	"github.com/noded-dev/noded/internal/errdefs"
)

// ErrOverflow ends a subscription whose queue was full when an event came.
var ErrOverflow = fmt.Errorf("subscriber fell behind: event queue full, events were lost: %w", errdefs.ErrResourceExhausted)

// ErrClosed ends the subscriptions of a bus that is shut down.
var ErrClosed = fmt.Errorf("event bus closed: %w", errdefs.ErrUnavailable)

// Bus fans events out to its subscribers. The zero value is not usable:
// build one with New.
type Bus[T any] struct {
	size int
	// now is the clock of the backlog's expiry; a field for tests.
	now func() time.Time

	mu     sync.Mutex
	subs   map[*Subscription[T]]struct{}
	closed bool
	// holding: Publish also appends to backlog (bounded by size).
	holding bool
	backlog []T
	// dropped counts events that did not fit the backlog.
	dropped int
	// backlogUntil is when the released backlog stops being replayed.
	backlogUntil time.Time
}

// New returns a bus whose subscribers each queue at most size events.
func New[T any](size int) *Bus[T] {
	if size < 1 {
		size = 1
	}
	return &Bus[T]{size: size, now: time.Now, subs: map[*Subscription[T]]struct{}{}}
}

// Subscription is one subscriber's queue.
type Subscription[T any] struct {
	bus *Bus[T]
	c   chan T
	// err is why c was closed; set before the close, under bus.mu.
	err error
	// done is true once c is closed; under bus.mu.
	done bool
}

// Subscribe adds a subscriber. While a released backlog is fresh, its
// events are queued first. Subscribing to a closed bus gives a
// subscription that is already ended with ErrClosed.
func (b *Bus[T]) Subscribe() *Subscription[T] {
	s := &Subscription[T]{bus: b, c: make(chan T, b.size)}
	b.mu.Lock()
	defer b.mu.Unlock()
	if b.closed {
		s.endLocked(ErrClosed)
		return s
	}
	b.expireLocked()
	for _, ev := range b.backlog {
		s.c <- ev // the backlog is never longer than a queue
	}
	b.subs[s] = struct{}{}
	return s
}

// Active reports whether a published event would go anywhere: callers
// skip building events nobody would receive.
func (b *Bus[T]) Active() bool {
	b.mu.Lock()
	defer b.mu.Unlock()
	return b.holding || len(b.subs) > 0
}

// Publish queues ev for every subscriber. It never blocks: a subscriber
// with a full queue is ended with ErrOverflow instead.
func (b *Bus[T]) Publish(ev T) {
	b.mu.Lock()
	defer b.mu.Unlock()
	if b.closed {
		return
	}
	if b.holding {
		if len(b.backlog) < b.size {
			b.backlog = append(b.backlog, ev)
		} else {
			b.dropped++
		}
	}
	for s := range b.subs {
		select {
		case s.c <- ev:
		default:
			delete(b.subs, s)
			s.endLocked(ErrOverflow)
		}
	}
}

// Hold starts keeping published events in the backlog (at most one
// queue's worth), for the subscribers that arrive after Release.
func (b *Bus[T]) Hold() {
	b.mu.Lock()
	defer b.mu.Unlock()
	b.holding = true
}

// Release stops keeping events; the backlog is given to subscribers that
// arrive within keep, then dropped. It returns how many events were held
// and how many did not fit.
func (b *Bus[T]) Release(keep time.Duration) (held, dropped int) {
	b.mu.Lock()
	defer b.mu.Unlock()
	b.holding = false
	b.backlogUntil = b.now().Add(keep)
	held, dropped = len(b.backlog), b.dropped
	b.dropped = 0
	b.expireLocked()
	return held, dropped
}

// expireLocked drops a released backlog past its time.
func (b *Bus[T]) expireLocked() {
	if !b.holding && b.backlog != nil && !b.now().Before(b.backlogUntil) {
		b.backlog = nil
	}
}

// Subscribers is the number of current subscribers.
func (b *Bus[T]) Subscribers() int {
	b.mu.Lock()
	defer b.mu.Unlock()
	return len(b.subs)
}

// Close ends every subscription with ErrClosed; later publishes are
// dropped and later subscriptions start ended.
func (b *Bus[T]) Close() {
	b.mu.Lock()
	defer b.mu.Unlock()
	b.closed = true
	b.backlog = nil
	for s := range b.subs {
		delete(b.subs, s)
		s.endLocked(ErrClosed)
	}
}

// C is the subscriber's queue. It is closed when the subscription ends;
// then Err says why.
func (s *Subscription[T]) C() <-chan T { return s.c }

// Err is why the subscription ended: ErrOverflow, ErrClosed, or nil after
// the subscriber's own Close (or while it runs).
func (s *Subscription[T]) Err() error {
	s.bus.mu.Lock()
	defer s.bus.mu.Unlock()
	return s.err
}

// Close ends the subscription and drops what it still queued. Safe to
// call more than once, and after the bus ended it.
func (s *Subscription[T]) Close() {
	s.bus.mu.Lock()
	defer s.bus.mu.Unlock()
	delete(s.bus.subs, s)
	s.endLocked(nil)
}

// endLocked empties and closes the queue, so that an ended subscriber
// holds no events even if it never reads again (its reader sees the close
// at once, not after the stale events).
func (s *Subscription[T]) endLocked(err error) {
	if s.done {
		return
	}
	s.done = true
	s.err = err
	for {
		select {
		case <-s.c:
			continue
		default:
		}
		break
	}
	close(s.c)
}

// IsOverflow reports whether err ended a subscription that fell behind.
func IsOverflow(err error) bool { return errors.Is(err, ErrOverflow) }
