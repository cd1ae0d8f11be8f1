package imagesvc

import (
	"container/heap"
	"context"
	"io"
	"sync"

	"github.com/opencontainers/go-digest"
)

// slots bounds concurrent downloads and hands free slots out lowest
// priority value first. Pulls number their blobs config first, then
// layers bottom up, and earlier pulls before later ones, so a pull's
// bottom layer, which the unpacking waits for first, is downloaded first.
//
// A reload may change the number of slots (resize): free then goes below
// zero until enough downloads in flight have ended.
type slots struct {
	mu      sync.Mutex
	size    int
	free    int
	waiting slotQueue
}

func newSlots(n int) *slots { return &slots{size: n, free: n} }

// resize makes n slots: new ones go to waiters at once; removed ones are
// taken back as downloads in flight release theirs.
func (s *slots) resize(n int) {
	s.mu.Lock()
	defer s.mu.Unlock()
	s.free += n - s.size
	s.size = n
	for s.free > 0 && len(s.waiting) > 0 {
		s.free--
		w := heap.Pop(&s.waiting).(*slotWaiter)
		w.index = -1
		close(w.ready)
	}
}

type slotWaiter struct {
	prio  uint64
	ready chan struct{}
	index int // in the heap; -1 once granted
}

func (s *slots) acquire(ctx context.Context, prio uint64) error {
	s.mu.Lock()
	if s.free > 0 && len(s.waiting) == 0 {
		s.free--
		s.mu.Unlock()
		return nil
	}
	w := &slotWaiter{prio: prio, ready: make(chan struct{})}
	heap.Push(&s.waiting, w)
	s.mu.Unlock()
	select {
	case <-w.ready:
		return nil
	case <-ctx.Done():
		s.mu.Lock()
		if w.index >= 0 {
			heap.Remove(&s.waiting, w.index)
			s.mu.Unlock()
			return context.Cause(ctx)
		}
		s.mu.Unlock()
		s.release() // granted meanwhile: pass it on
		return context.Cause(ctx)
	}
}

func (s *slots) release() {
	s.mu.Lock()
	defer s.mu.Unlock()
	if len(s.waiting) == 0 || s.free < 0 {
		s.free++
		return
	}
	w := heap.Pop(&s.waiting).(*slotWaiter)
	w.index = -1
	close(w.ready)
}

type slotQueue []*slotWaiter

func (q slotQueue) Len() int           { return len(q) }
func (q slotQueue) Less(i, j int) bool { return q[i].prio < q[j].prio }
func (q slotQueue) Swap(i, j int) {
	q[i], q[j] = q[j], q[i]
	q[i].index, q[j].index = i, j
}
func (q *slotQueue) Push(x any) {
	w := x.(*slotWaiter)
	w.index = len(*q)
	*q = append(*q, w)
}
func (q *slotQueue) Pop() any {
	old := *q
	w := old[len(old)-1]
	*q = old[:len(old)-1]
	return w
}

// asyncVerifier digests a stream on its own goroutine, so that hashing
// the uncompressed layer runs beside the unpacking instead of in series
// with it (on this 2-core class of machine, that is most of a core). It
// also hands the stream to also (the entry check), if set, on that
// goroutine.
type asyncVerifier struct {
	verifier digest.Verifier
	also     io.Writer
	buf      []byte
	ch       chan []byte
	done     chan struct{}
	closed   bool
	pool     sync.Pool
}

const asyncChunk = 256 << 10

func newAsyncVerifier(d digest.Digest, also io.Writer) *asyncVerifier {
	a := &asyncVerifier{verifier: d.Verifier(), also: also, ch: make(chan []byte, 16), done: make(chan struct{})}
	a.pool.New = func() any { return make([]byte, 0, asyncChunk) }
	go func() {
		defer close(a.done)
		for b := range a.ch {
			_, _ = a.verifier.Write(b)
			if a.also != nil {
				_, _ = a.also.Write(b)
			}
			a.pool.Put(b[:0]) //nolint:staticcheck // a slice header is fine here
		}
	}()
	return a
}

// write queues p for hashing (p is copied).
func (a *asyncVerifier) write(p []byte) {
	for len(p) > 0 {
		if a.buf == nil {
			a.buf = a.pool.Get().([]byte)
		}
		n := min(len(p), asyncChunk-len(a.buf))
		a.buf = append(a.buf, p[:n]...)
		p = p[n:]
		if len(a.buf) == asyncChunk {
			a.ch <- a.buf
			a.buf = nil
		}
	}
}

// verified waits for the hashing to finish and reports the result. It
// must be called once, after the last write.
func (a *asyncVerifier) verified() bool {
	a.flush()
	return a.verifier.Verified()
}

// flush hands what is queued to the goroutine and waits until it has
// been hashed (and written to also), ending the goroutine.
func (a *asyncVerifier) flush() {
	if len(a.buf) > 0 && !a.closed {
		a.ch <- a.buf
		a.buf = nil
	}
	a.stop()
}

// stop ends the hashing goroutine (without a result if verified was not
// called); it may be called more than once.
func (a *asyncVerifier) stop() {
	if !a.closed {
		a.closed = true
		close(a.ch)
	}
	<-a.done
}
