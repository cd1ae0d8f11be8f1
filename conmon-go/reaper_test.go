package main

import (
	"os"
	"sync"
	"testing"
	"time"

	"golang.org/x/sys/unix"
)

// The reaper's loop has an owner: stop ends it, after it reaped what it
// tracked.
func TestReaperStartStop(t *testing.T) {
	var opMu sync.Mutex
	r := newReaper(&opMu, newLogger("error"))
	r.start()

	// As the monitor does: start and track under opMu, so that a SIGCHLD
	// arriving in between cannot have the child reaped as a stray.
	opMu.Lock()
	p, err := os.StartProcess("/bin/sh", []string{"sh", "-c", "exit 7"}, &os.ProcAttr{})
	if err != nil {
		opMu.Unlock()
		t.Fatal(err)
	}
	got := make(chan int32, 1)
	r.track(p.Pid, func(ws unix.WaitStatus, ok bool) {
		if !ok {
			got <- -1
			return
		}
		got <- exitCode(ws)
	})
	_ = p.Release()
	opMu.Unlock()
	r.kick()
	select {
	case code := <-got:
		if code != 7 {
			t.Fatalf("exit code %d, want 7", code)
		}
	case <-time.After(10 * time.Second):
		t.Fatal("child not reaped")
	}

	stopped := make(chan struct{})
	go func() { r.stop(); close(stopped) }()
	select {
	case <-stopped:
	case <-time.After(10 * time.Second):
		t.Fatal("stop did not return")
	}
	select {
	case <-r.done:
	default:
		t.Fatal("the loop has not ended")
	}
	r.kick() // after stop: must not block
}
