package main

import (
	"errors"
	"os"
	"os/exec"
	"path/filepath"
	"syscall"
	"testing"
	"time"

	"github.com/noded-dev/noded/internal/oci/runclayout"
)

func TestStartViaFifo(t *testing.T) {
	mkfifo := func(t *testing.T) (root string) {
		t.Helper()
		root = t.TempDir()
		if err := os.MkdirAll(filepath.Join(root, "c1"), 0o700); err != nil {
			t.Fatal(err)
		}
		if err := syscall.Mkfifo(runclayout.ExecFifoPath(root, "c1"), 0o622); err != nil {
			t.Fatal(err)
		}
		return root
	}

	t.Run("a waiting init is released and the fifo removed", func(t *testing.T) {
		root := mkfifo(t)
		released := make(chan error, 1)
		go func() { // the container's init: blocks until start reads
			f, err := os.OpenFile(runclayout.ExecFifoPath(root, "c1"), os.O_WRONLY, 0)
			if err == nil {
				_, err = f.Write([]byte("0"))
				_ = f.Close()
			}
			released <- err
		}()
		if err := startViaFifo(root, "c1", os.Getpid()); err != nil {
			t.Fatal(err)
		}
		if err := <-released; err != nil {
			t.Fatal(err)
		}
		if _, err := os.Stat(runclayout.ExecFifoPath(root, "c1")); !os.IsNotExist(err) {
			t.Fatalf("fifo left after start: %v", err)
		}
	})

	t.Run("an init that died is reported, not waited for", func(t *testing.T) {
		root := mkfifo(t)
		dead := exec.Command("true")
		if err := dead.Run(); err != nil {
			t.Fatal(err)
		}
		start := time.Now()
		err := startViaFifo(root, "c1", dead.Process.Pid)
		if !errors.Is(err, errNotStartable) || time.Since(start) > 2*time.Second {
			t.Fatalf("err = %v after %s", err, time.Since(start))
		}
	})
}
