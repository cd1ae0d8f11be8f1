// Package memtrim gives the memory of a burst of work back to the kernel
// once the burst is over.
//
// A pull's decompression, hashing and copy buffers, or the specs, records
// and protobuf messages of a burst of pod starts, raise noded's heap by
// tens of MiB; once they are garbage the Go runtime keeps the pages for
// reuse and returns them only slowly, so noded's RSS after a burst stayed
// well above its level before (37 -> 50 MiB after the pulls of
// bench-pull). When the last piece of work in flight ends and none starts
// for the delay, the trimmer releases once: two collections (what the
// libraries keep in sync.Pools survives the first in the pools' victim
// caches: ~20 MiB of heap in use stayed after a single one), an immediate
// return of the free pages, a few ms on noded's heap, and the mappings of
// noded's code dropped (internal/codepages).
package memtrim

import (
	"runtime"
	"runtime/debug"
	"sync"
	"time"

	"github.com/noded-dev/noded/internal/codepages"
)

// DefaultDelay is how long the work must stay idle: a kubelet starting a
// pod's containers or pulling its images one after another begins the next
// within milliseconds.
const DefaultDelay = 2 * time.Second

// Trimmer releases memory after bursts of work (Begin ... end). Its
// methods are safe for concurrent use; mu guards active, timer and closed.
type Trimmer struct {
	delay   time.Duration
	release func()

	mu     sync.Mutex
	active int
	timer  *time.Timer
	closed bool
}

// New returns a trimmer that releases DefaultDelay after a burst.
func New() *Trimmer { return NewWith(DefaultDelay, Release) }

// NewWith returns a trimmer that calls release delay after a burst.
func NewWith(delay time.Duration, release func()) *Trimmer {
	return &Trimmer{delay: delay, release: release}
}

// Release collects twice, returns the free pages to the kernel and drops
// the mappings of noded's own code (internal/codepages: after the pulls
// of bench-pull 29 of noded's 41 MiB resident were its executable's
// pages, which a burst of pod starts or pulls maps and an idle noded does
// not use).
func Release() {
	runtime.GC()
	debug.FreeOSMemory()
	// Last: a collection reads the runtime's tables, which maps back the
	// large folios of read-only data it touches.
	codepages.Drop()
}

// Begin marks a piece of work started; the returned function marks it
// ended (call it once).
func (t *Trimmer) Begin() (end func()) {
	t.mu.Lock()
	t.active++
	if t.timer != nil {
		t.timer.Stop()
		t.timer = nil
	}
	t.mu.Unlock()
	return t.end
}

func (t *Trimmer) end() {
	t.mu.Lock()
	defer t.mu.Unlock()
	t.active--
	if t.active > 0 || t.closed {
		return
	}
	var timer *time.Timer
	timer = time.AfterFunc(t.delay, func() {
		t.mu.Lock()
		still := t.timer == timer && t.active == 0 && !t.closed
		if still {
			t.timer = nil
		}
		t.mu.Unlock()
		if still {
			t.release()
		}
	})
	t.timer = timer
}

// Close stops a pending release; later bursts release nothing.
func (t *Trimmer) Close() {
	t.mu.Lock()
	defer t.mu.Unlock()
	t.closed = true
	if t.timer != nil {
		t.timer.Stop()
		t.timer = nil
	}
}
