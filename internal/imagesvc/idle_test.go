package imagesvc

import (
	"sync/atomic"
	"testing"
	"time"
)

// The memory of finished pulls is released once, after the last pull in
// flight ended and none started for the delay; a pull starting meanwhile
// puts it off; a closed service releases nothing.
func TestIdleRelease(t *testing.T) {
	var released atomic.Int32
	r := &idleRelease{delay: 30 * time.Millisecond, release: func() { released.Add(1) }}
	wait := func(want int32) {
		t.Helper()
		deadline := time.Now().Add(5 * time.Second)
		for released.Load() != want {
			if time.Now().After(deadline) {
				t.Fatalf("released %d times, want %d", released.Load(), want)
			}
			time.Sleep(5 * time.Millisecond)
		}
	}
	endA, endB := r.begin(), r.begin()
	endA()
	time.Sleep(60 * time.Millisecond)
	if released.Load() != 0 {
		t.Fatal("released while a pull was in flight")
	}
	endB()
	wait(1)

	// A pull that starts within the delay puts the release off.
	end := r.begin()
	end()
	end = r.begin()
	time.Sleep(60 * time.Millisecond)
	if released.Load() != 1 {
		t.Fatal("released while the next pull ran")
	}
	end()
	wait(2)

	end = r.begin()
	end()
	r.close()
	time.Sleep(60 * time.Millisecond)
	if released.Load() != 2 {
		t.Fatal("released after close")
	}
}
