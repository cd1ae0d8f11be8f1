package memtrim

import (
	"sync/atomic"
	"testing"
	"time"
)

// The memory of finished work is released once, after the last piece in
// flight ended and none started for the delay; work starting meanwhile
// puts it off; a closed trimmer releases nothing.
func TestTrimmer(t *testing.T) {
	var released atomic.Int32
	r := NewWith(30*time.Millisecond, func() { released.Add(1) })
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
	endA, endB := r.Begin(), r.Begin()
	endA()
	time.Sleep(60 * time.Millisecond)
	if released.Load() != 0 {
		t.Fatal("released while work was in flight")
	}
	endB()
	wait(1)

	// Work that starts within the delay puts the release off.
	end := r.Begin()
	end()
	end = r.Begin()
	time.Sleep(60 * time.Millisecond)
	if released.Load() != 1 {
		t.Fatal("released while the next work ran")
	}
	end()
	wait(2)

	end = r.Begin()
	end()
	r.Close()
	time.Sleep(60 * time.Millisecond)
	if released.Load() != 2 {
		t.Fatal("released after close")
	}
}
