// Package admit bounds how many CPU-heavy operations run at once and
// decides who goes next.
//
// Creating a pod sandbox or a container costs a few hundred milliseconds
// of CPU (process starts, namespace and mount set-up, CNI plugins). When
// more are asked for than the node has CPUs, running them all at once only
// makes each as slow as all of them together (plus the cost of switching
// between them): ten pods asked for at once on two CPUs would all be ready
// after about two seconds. Admitting a few at a time, in order, gives the
// same total time, but the first pods are ready after a fraction of it.
//
// A Gate serves waiters by class, then by arrival: containers of pods that
// already run before new pod sandboxes, so that a pod that has its sandbox
// gets its containers before further pods start.
//
// A holder keeps its slot for at most the gate's lease: an operation that
// takes longer is waiting for something else than the CPU (a slow CNI
// plugin, a loaded disk) and must not hold the others up.
package admit

import (
	"context"
	"sync"
	"time"
)

// Class orders waiters: a lower class is admitted first.
type Class int

// Classes.
const (
	// Container: a container of a pod that already runs.
	Container Class = iota
	// Sandbox: a new pod sandbox.
	Sandbox
	numClasses
)

// Gate admits at most n holders at a time. The zero value is not usable;
// use New.
//
// Lock rule: mu guards free and queue; a waiter's channel is closed (the
// slot handed to it) only under mu, and a slot is never lost: either the
// waiter that was handed it runs, or it passes it on when it gave up.
type Gate struct {
	lease time.Duration

	mu    sync.Mutex
	free  int
	queue [numClasses][]chan struct{}
}

// New returns a gate for n holders (at least 1) that each keep their slot
// for at most lease (0: until they leave).
func New(n int, lease time.Duration) *Gate {
	return &Gate{free: max(n, 1), lease: lease}
}

// Enter waits for a slot and returns the function that gives it back
// (call it once; later calls, and a call after the lease ran out, do
// nothing). It returns ctx's error, holding nothing, when ctx ends first.
func (g *Gate) Enter(ctx context.Context, c Class) (leave func(), err error) {
	g.mu.Lock()
	if g.free > 0 && g.waiters() == 0 {
		g.free--
		g.mu.Unlock()
		return g.leaveOnce(), nil
	}
	ch := make(chan struct{})
	g.queue[c] = append(g.queue[c], ch)
	g.mu.Unlock()

	select {
	case <-ch:
		return g.leaveOnce(), nil
	case <-ctx.Done():
	}
	g.mu.Lock()
	defer g.mu.Unlock()
	select {
	case <-ch:
		// Handed a slot while giving up: pass it on.
		g.release()
	default:
		g.remove(c, ch)
	}
	return nil, ctx.Err()
}

func (g *Gate) leaveOnce() func() {
	var once sync.Once
	leave := func() {
		once.Do(func() {
			g.mu.Lock()
			g.release()
			g.mu.Unlock()
		})
	}
	if g.lease <= 0 {
		return leave
	}
	expiry := time.AfterFunc(g.lease, leave)
	return func() {
		expiry.Stop()
		leave()
	}
}

// release hands a slot to the first waiter, or frees it. Called with mu.
func (g *Gate) release() {
	for c := range g.queue {
		if q := g.queue[c]; len(q) > 0 {
			close(q[0])
			g.queue[c] = q[1:]
			return
		}
	}
	g.free++
}

func (g *Gate) remove(c Class, ch chan struct{}) {
	q := g.queue[c]
	for i := range q {
		if q[i] == ch {
			g.queue[c] = append(q[:i:i], q[i+1:]...)
			return
		}
	}
}

func (g *Gate) waiters() int {
	n := 0
	for _, q := range g.queue {
		n += len(q)
	}
	return n
}
