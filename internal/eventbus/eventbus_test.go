package eventbus

import (
	"errors"
	"sync"
	"testing"
	"time"

	"github.com/noded-dev/noded/internal/errdefs"
)

// drain reads what is queued now, without waiting.
func drain(s *Subscription[int]) (got []int, closed bool) {
	for {
		select {
		case ev, ok := <-s.C():
			if !ok {
				return got, true
			}
			got = append(got, ev)
		default:
			return got, false
		}
	}
}

func TestSubscribersEachGetEveryEventInOrder(t *testing.T) {
	for _, n := range []int{1, 2, 5} {
		t.Run(string(rune('0'+n))+" subscribers", func(t *testing.T) {
			b := New[int](10)
			var subs []*Subscription[int]
			for range n {
				subs = append(subs, b.Subscribe())
			}
			for i := range 10 {
				b.Publish(i)
			}
			for i, s := range subs {
				got, closed := drain(s)
				if closed || len(got) != 10 {
					t.Fatalf("subscriber %d: got %v (closed %v), want 0..9", i, got, closed)
				}
				for j, ev := range got {
					if ev != j {
						t.Fatalf("subscriber %d: got %v, want 0..9 in order", i, got)
					}
				}
			}
		})
	}
}

// A subscriber that never reads is cut off at the first event its full
// queue cannot take; the others go on; Publish returns every time (were
// it to block, this single goroutine would deadlock); no queue ever holds
// more than its size, and the cut-off one holds nothing.
func TestOverflowEndsOnlyTheSlowSubscriber(t *testing.T) {
	const size = 4
	b := New[int](size)
	slow, fast := b.Subscribe(), b.Subscribe()
	var fastGot []int
	for i := range 100 * size {
		b.Publish(i)
		if l := len(slow.c); l > size {
			t.Fatalf("slow queue holds %d > %d", l, size)
		}
		got, closed := drain(fast)
		if closed {
			t.Fatalf("fast subscriber ended: %v", fast.Err())
		}
		fastGot = append(fastGot, got...)
	}
	if len(fastGot) != 100*size {
		t.Errorf("fast subscriber got %d events, want %d", len(fastGot), 100*size)
	}
	got, closed := drain(slow)
	if !closed || len(got) != 0 {
		t.Errorf("slow subscriber: queue %v closed %v, want empty and closed", got, closed)
	}
	if err := slow.Err(); !IsOverflow(err) || !errors.Is(err, errdefs.ErrResourceExhausted) {
		t.Errorf("slow subscriber ended with %v, want ErrOverflow (ResourceExhausted)", err)
	}
	if n := b.Subscribers(); n != 1 {
		t.Errorf("%d subscribers left, want 1", n)
	}
}

func TestCloseReleasesTheQueue(t *testing.T) {
	tests := []struct {
		name    string
		end     func(*Bus[int], *Subscription[int])
		wantErr error
	}{
		{"subscriber closes", func(_ *Bus[int], s *Subscription[int]) { s.Close() }, nil},
		{"subscriber closes twice", func(_ *Bus[int], s *Subscription[int]) { s.Close(); s.Close() }, nil},
		{"bus closes", func(b *Bus[int], _ *Subscription[int]) { b.Close() }, ErrClosed},
		{"bus then subscriber", func(b *Bus[int], s *Subscription[int]) { b.Close(); s.Close() }, ErrClosed},
	}
	for _, tt := range tests {
		t.Run(tt.name, func(t *testing.T) {
			b := New[int](8)
			s := b.Subscribe()
			for i := range 5 {
				b.Publish(i)
			}
			tt.end(b, s)
			if l := len(s.c); l != 0 {
				t.Errorf("ended subscription still queues %d events", l)
			}
			if _, closed := drain(s); !closed {
				t.Error("queue not closed")
			}
			if err := s.Err(); !errors.Is(err, tt.wantErr) || (tt.wantErr == nil && err != nil) {
				t.Errorf("Err() = %v, want %v", err, tt.wantErr)
			}
			if n := b.Subscribers(); n != 0 {
				t.Errorf("%d subscribers left", n)
			}
			b.Publish(99) // nobody left: must not panic on a closed queue
		})
	}
}

func TestSubscribeToClosedBus(t *testing.T) {
	b := New[int](2)
	b.Close()
	s := b.Subscribe()
	if _, closed := drain(s); !closed || !errors.Is(s.Err(), ErrClosed) {
		t.Errorf("subscription to a closed bus: closed %v, err %v", closed, s.Err())
	}
	if b.Active() {
		t.Error("closed bus is active")
	}
}

// fakeClock is the backlog's clock in tests.
type fakeClock struct{ t time.Time }

func (c *fakeClock) now() time.Time { return c.t }

func TestBacklogReplayedToEarlySubscribersOnly(t *testing.T) {
	clock := &fakeClock{t: time.Unix(1000, 0)}
	b := New[int](3)
	b.now = clock.now
	if b.Active() {
		t.Fatal("new bus without subscribers is active")
	}
	b.Hold()
	if !b.Active() {
		t.Fatal("holding bus is not active")
	}
	for i := range 5 {
		b.Publish(i)
	}
	held, dropped := b.Release(time.Minute)
	if held != 3 || dropped != 2 {
		t.Errorf("Release: held %d dropped %d, want 3 and 2", held, dropped)
	}
	if b.Active() {
		t.Error("released bus without subscribers is active")
	}
	b.Publish(100) // after the release: not kept

	early := b.Subscribe()
	got, _ := drain(early)
	if want := []int{0, 1, 2}; len(got) != 3 || got[0] != want[0] || got[2] != want[2] {
		t.Errorf("early subscriber got %v, want the backlog %v", got, want)
	}
	b.Publish(101)
	if got, closed := drain(early); closed || len(got) != 1 || got[0] != 101 {
		t.Errorf("early subscriber then got %v (closed %v), want [101]", got, closed)
	}

	// The backlog fills a second early subscriber's queue: if it does not
	// read it, the next event cuts it off.
	second := b.Subscribe()
	b.Publish(102)
	if !IsOverflow(second.Err()) {
		t.Errorf("second early subscriber: %v, want overflow", second.Err())
	}

	clock.t = clock.t.Add(time.Minute)
	late := b.Subscribe()
	b.Publish(103)
	got, _ = drain(late)
	if len(got) != 1 || got[0] != 103 {
		t.Errorf("late subscriber got %v, want only [103]", got)
	}
	if b.backlog != nil {
		t.Error("expired backlog still held")
	}
}

// Publishers and subscribers at once (run with -race): every subscriber
// that is not cut off gets every event of each publisher in that
// publisher's order.
func TestConcurrentPublishersAndSubscribers(t *testing.T) {
	const publishers, perPublisher, readers = 4, 500, 4
	b := New[[2]int](publishers * perPublisher)
	var readersWG sync.WaitGroup
	results := make([][][2]int, readers)
	for r := range readers {
		s := b.Subscribe()
		readersWG.Add(1)
		go func() {
			defer readersWG.Done()
			defer s.Close()
			for ev := range s.C() {
				results[r] = append(results[r], ev)
				if len(results[r]) == publishers*perPublisher {
					return
				}
			}
		}()
	}
	var pubs sync.WaitGroup
	for p := range publishers {
		pubs.Add(1)
		go func() {
			defer pubs.Done()
			for i := range perPublisher {
				b.Publish([2]int{p, i})
			}
		}()
	}
	pubs.Wait()
	readersWG.Wait()
	for r, got := range results {
		if len(got) != publishers*perPublisher {
			t.Fatalf("reader %d got %d events, want %d", r, len(got), publishers*perPublisher)
		}
		next := make([]int, publishers)
		for _, ev := range got {
			if ev[1] != next[ev[0]] {
				t.Fatalf("reader %d: publisher %d's event %d came out of order", r, ev[0], ev[1])
			}
			next[ev[0]]++
		}
	}
}
