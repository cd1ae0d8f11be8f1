package imagesvc

import (
	"context"
	"testing"
	"time"
)

// Resizing the download slots (a reload of max-parallel-downloads): more
// slots go to waiters at once; fewer are taken back as holders release.
func TestSlotsResize(t *testing.T) {
	ctx := context.Background()
	s := newSlots(1)
	if err := s.acquire(ctx, 0); err != nil {
		t.Fatal(err)
	}
	granted := make(chan int, 4)
	for i := 1; i <= 2; i++ {
		go func() {
			if err := s.acquire(ctx, uint64(i)); err == nil {
				granted <- i
			}
		}()
	}
	waitFor(t, func() bool { s.mu.Lock(); defer s.mu.Unlock(); return len(s.waiting) == 2 })

	s.resize(3) // two more slots: both waiters run now
	for range 2 {
		select {
		case <-granted:
		case <-time.After(5 * time.Second):
			t.Fatal("a waiter did not get a new slot")
		}
	}
	// Three held; shrink to one: two releases are taken back, then a
	// waiter needs the third release.
	s.resize(1)
	go func() {
		if err := s.acquire(ctx, 9); err == nil {
			granted <- 9
		}
	}()
	waitFor(t, func() bool { s.mu.Lock(); defer s.mu.Unlock(); return len(s.waiting) == 1 })
	s.release()
	s.release()
	select {
	case <-granted:
		t.Fatal("a waiter got a slot while more than the new size were held")
	case <-time.After(100 * time.Millisecond):
	}
	s.release()
	select {
	case i := <-granted:
		if i != 9 {
			t.Fatalf("granted %d", i)
		}
	case <-time.After(5 * time.Second):
		t.Fatal("the waiter did not get the released slot")
	}
	s.mu.Lock()
	defer s.mu.Unlock()
	if s.free != 0 || s.size != 1 {
		t.Errorf("free %d size %d, want 0 and 1", s.free, s.size)
	}
}

func waitFor(t *testing.T, cond func() bool) {
	t.Helper()
	deadline := time.Now().Add(5 * time.Second)
	for !cond() {
		if time.Now().After(deadline) {
			t.Fatal("condition not reached")
		}
		time.Sleep(time.Millisecond)
	}
}
