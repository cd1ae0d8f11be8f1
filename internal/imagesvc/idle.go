package imagesvc

import (
	"runtime"
	"runtime/debug"
	"sync"
	"time"
)

// idleRelease gives the memory of finished pulls back to the kernel. A
// pull's decompression, hashing and copy buffers raise the heap by tens of
// MiB; once they are garbage the Go runtime keeps the pages for reuse and
// returns them only slowly, so noded's RSS after a burst of pulls stayed
// ~13 MiB above its level before (37 -> 50 MiB). When the last pull in
// flight ends and none starts for idleDelay, release runs once
// (freeMemory: two GCs and an immediate return of the free pages; a few
// ms on noded's heap).
type idleRelease struct {
	delay   time.Duration
	release func()

	mu     sync.Mutex
	active int
	timer  *time.Timer
	closed bool
}

// idleDelay is how long the pulls must stay idle: a kubelet pulling a
// pod's images one after another starts the next within milliseconds.
const idleDelay = 2 * time.Second

func newIdleRelease() *idleRelease {
	return &idleRelease{delay: idleDelay, release: freeMemory}
}

// freeMemory collects twice before it returns the free pages: what a
// pull's libraries keep in sync.Pools (decompressors, copy buffers)
// survives one collection in the pools' victim caches, and measured
// ~20 MiB of heap still in use after a single one.
func freeMemory() {
	runtime.GC()
	debug.FreeOSMemory()
}

// begin marks a pull started; the returned function marks it ended.
func (r *idleRelease) begin() func() {
	r.mu.Lock()
	r.active++
	if r.timer != nil {
		r.timer.Stop()
		r.timer = nil
	}
	r.mu.Unlock()
	return r.end
}

func (r *idleRelease) end() {
	r.mu.Lock()
	defer r.mu.Unlock()
	r.active--
	if r.active > 0 || r.closed {
		return
	}
	var t *time.Timer
	t = time.AfterFunc(r.delay, func() {
		r.mu.Lock()
		still := r.timer == t && r.active == 0 && !r.closed
		if still {
			r.timer = nil
		}
		r.mu.Unlock()
		if still {
			r.release()
		}
	})
	r.timer = t
}

// close stops a pending release (the service is closing).
func (r *idleRelease) close() {
	r.mu.Lock()
	defer r.mu.Unlock()
	r.closed = true
	if r.timer != nil {
		r.timer.Stop()
		r.timer = nil
	}
}
