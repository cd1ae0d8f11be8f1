package imagesvc

import (
	"context"
	"errors"
	"fmt"
	"runtime/debug"
	"sync"

	"github.com/noded-dev/noded/internal/log"
	"github.com/noded-dev/noded/internal/tracing"
)

// errAbandoned cancels shared work that every waiter has left.
var errAbandoned = errors.New("every waiter left")

// errPanicked is the error every waiter of shared work that panicked gets.
// It has no errdefs class, so the CRI answers codes.Unknown: the request
// was fine, noded failed it.
var errPanicked = errors.New("internal error: shared image work panicked")

// group runs at most one piece of work per key at a time and lets any
// number of waiters join it: the in-flight table behind pull coalescing.
//
// The work runs in its own goroutine on a context derived from the
// group's base context (the service's lifetime), never from a waiter's, so
// a waiter that gives up leaves the work running for the others. What
// happens when every waiter has left depends on the group: work whose
// result only its waiters need (a blob download) is cancelled when
// abandon is set; other work (a whole pull, a layer unpack) runs to its
// end so that its result is there for whoever asks next.
//
// A panic in the work is recovered: noded keeps running, every waiter gets
// an errPanicked error carrying the panic value, and the key is free for
// the next join like after any failure.
//
// A waiter holds a reference from join until release; a result that needs
// cleaning up (a downloaded file) is handed to free once the work is done
// and no reference is left. Results are shared only among concurrent
// waiters: once the work is done the key is free again, and the next join
// starts new work (which finds, say, a layer that is now in storage).
type group[K comparable, V any] struct {
	base    context.Context
	wg      *sync.WaitGroup
	abandon bool
	free    func(V)

	mu    sync.Mutex
	calls map[K]*call[K, V]
}

func newGroup[K comparable, V any](base context.Context, wg *sync.WaitGroup, abandon bool, free func(V)) *group[K, V] {
	return &group[K, V]{base: base, wg: wg, abandon: abandon, free: free, calls: map[K]*call[K, V]{}}
}

// call is one piece of work in flight and its result.
type call[K comparable, V any] struct {
	g      *group[K, V]
	key    K
	done   chan struct{}
	val    V
	err    error
	refs   int
	freed  bool
	cancel context.CancelCauseFunc

	// A value published before the work ends (a blob still being
	// downloaded, which readers can follow).
	published chan struct{}
	early     V
	hasEarly  bool
}

// join returns the work in flight for key, starting fn if there is none;
// started reports whether this join started it. The caller holds a
// reference and must release it exactly once. from is the joining
// request's context: work it starts traces under that request's span
// (tracing.Detach), and ends only as the group says.
func (g *group[K, V]) join(from context.Context, key K, fn func(context.Context) (V, error)) (c *call[K, V], started bool) {
	return g.joinPublishing(from, key, func(ctx context.Context, _ func(V)) (V, error) { return fn(ctx) })
}

// joinPublishing is join for work that can hand out its value before it
// ends: fn calls publish once it has it, and waitPublished returns it.
func (g *group[K, V]) joinPublishing(from context.Context, key K, fn func(ctx context.Context, publish func(V)) (V, error)) (c *call[K, V], started bool) {
	g.mu.Lock()
	defer g.mu.Unlock()
	if c, ok := g.calls[key]; ok {
		c.refs++
		return c, false
	}
	ctx, cancel := context.WithCancelCause(tracing.Detach(g.base, from))
	c = &call[K, V]{g: g, key: key, done: make(chan struct{}), refs: 1, cancel: cancel, published: make(chan struct{})}
	g.calls[key] = c
	g.wg.Add(1)
	go func() {
		defer g.wg.Done()
		v, err := g.run(ctx, fn, c.publish)
		cancel(nil)
		g.mu.Lock()
		defer g.mu.Unlock()
		c.val, c.err = v, err
		if !c.hasEarly {
			c.early, c.hasEarly = v, err == nil
			close(c.published)
		}
		close(c.done)
		if g.calls[key] == c {
			delete(g.calls, key)
		}
		if c.refs == 0 {
			c.freeLocked()
		}
	}()
	return c, true
}

// run calls fn, turning a panic into an error: shared work runs in its own
// goroutine, where an unrecovered panic would kill noded and every pod
// start and pull with it. The stack goes to the log (base's logger, the
// service's), since the error only carries the value.
func (g *group[K, V]) run(ctx context.Context, fn func(context.Context, func(V)) (V, error), publish func(V)) (v V, err error) {
	defer func() {
		if p := recover(); p != nil {
			var zero V
			v, err = zero, fmt.Errorf("%w: %v", errPanicked, p)
			log.FromContext(g.base).WithField("panic", fmt.Sprint(p)).Errorf("shared image work panicked:\n%s", debug.Stack())
		}
	}()
	return fn(ctx, publish)
}

func (c *call[K, V]) publish(v V) {
	c.g.mu.Lock()
	defer c.g.mu.Unlock()
	if !c.hasEarly {
		c.early, c.hasEarly = v, true
		close(c.published)
	}
}

// waitPublished returns the value as soon as the work publishes it (or
// the work's result if it ends without publishing).
func (c *call[K, V]) waitPublished(ctx context.Context) (V, error) {
	select {
	case <-c.published:
		c.g.mu.Lock()
		defer c.g.mu.Unlock()
		if c.hasEarly {
			return c.early, nil
		}
		return c.val, c.err
	case <-ctx.Done():
		var zero V
		return zero, context.Cause(ctx)
	}
}

// wait returns the work's result, or ctx's error if ctx ends first (the
// work goes on; the caller still holds its reference).
func (c *call[K, V]) wait(ctx context.Context) (V, error) {
	select {
	case <-c.done:
		return c.val, c.err
	case <-ctx.Done():
		var zero V
		return zero, context.Cause(ctx)
	}
}

// release drops the caller's reference. The last reference to finished
// work frees its result; the last reference to unfinished work cancels it
// in a group that abandons work.
func (c *call[K, V]) release() {
	g := c.g
	g.mu.Lock()
	defer g.mu.Unlock()
	c.refs--
	if c.refs > 0 {
		return
	}
	select {
	case <-c.done:
		c.freeLocked()
	default:
		if g.abandon {
			// New joiners must not join work that is being cancelled.
			if g.calls[c.key] == c {
				delete(g.calls, c.key)
			}
			c.cancel(errAbandoned)
		}
	}
}

func (c *call[K, V]) freeLocked() {
	if c.freed || c.err != nil || c.g.free == nil {
		return
	}
	c.freed = true
	c.g.free(c.val)
}

// do joins (or starts) the work for key and waits for it with ctx. On
// success the caller must call the returned release once it is done with
// the value; on error the reference is already released.
func (g *group[K, V]) do(ctx context.Context, key K, fn func(context.Context) (V, error)) (V, func(), bool, error) {
	c, started := g.join(ctx, key, fn)
	v, err := c.wait(ctx)
	if err != nil {
		c.release()
		return v, func() {}, started, err
	}
	var once sync.Once
	return v, func() { once.Do(c.release) }, started, nil
}

// inFlight is the number of keys with work in flight (for tests).
func (g *group[K, V]) inFlight() int {
	g.mu.Lock()
	defer g.mu.Unlock()
	return len(g.calls)
}
