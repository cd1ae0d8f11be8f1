package main

import (
	"errors"
	"fmt"
	"io"
	"os"
	"syscall"
	"time"

	"github.com/noded-dev/noded/internal/oci/runclayout"
	"github.com/noded-dev/noded/internal/procfs"
)

// startViaFifo starts a created container the way libcontainer's
// Container.Exec does, without running the helper: reading the init's
// exec fifo releases it to exec the user's program, and removing the fifo
// marks the container running for later libcontainer loads (the handshake
// is described, and checked against runc, with runclayout.ExecFifo).
// Doing it here saves a helper process (a Go runtime start-up, ~15 ms) per
// start.
//
// pid is the container's init; if it dies before releasing, the blocked
// open is woken by opening the fifo for writing ourselves, so no goroutine
// or descriptor is left behind.
func startViaFifo(root, id string, pid int) error {
	path := runclayout.ExecFifoPath(root, id)
	type result struct {
		f   *os.File
		err error
	}
	opened := make(chan result, 1)
	go func() {
		f, err := os.OpenFile(path, os.O_RDONLY|syscall.O_CLOEXEC, 0)
		opened <- result{f, err}
	}()
	for {
		select {
		case r := <-opened:
			if r.err != nil {
				return fmt.Errorf("start %s: %w", id, r.err)
			}
			data, err := io.ReadAll(r.f)
			_ = r.f.Close()
			if err != nil {
				return fmt.Errorf("start %s: %w", id, err)
			}
			if len(data) == 0 {
				return errNotStartable
			}
			if err := os.Remove(path); err != nil && !errors.Is(err, os.ErrNotExist) {
				return fmt.Errorf("start %s: %w", id, err)
			}
			return nil
		case <-time.After(100 * time.Millisecond):
			// As libcontainer does: a zombie init will never release.
			if procfs.Alive(pid, 0) {
				continue
			}
			// Wake our own blocked open (a writer now exists), then read
			// its outcome: EOF, no data, not startable.
			if w, err := os.OpenFile(path, os.O_WRONLY|syscall.O_NONBLOCK|syscall.O_CLOEXEC, 0); err == nil {
				_ = w.Close()
			}
			if r := <-opened; r.f != nil {
				_ = r.f.Close()
			}
			return errNotStartable
		}
	}
}

var errNotStartable = errors.New("container process is gone before it was started")
