package oci

import (
	"bufio"
	"context"
	"encoding/json"
	"errors"
	"net"
	"os"
	"os/exec"
	"path/filepath"
	"strings"
	"syscall"
	"testing"
	"time"

	"github.com/noded-dev/noded/internal/errdefs"
	"github.com/noded-dev/noded/internal/oci/wire"
	"github.com/noded-dev/noded/internal/procfs"
)

// Unit tests that need neither root nor a monitor.

func TestNewValidates(t *testing.T) {
	dir := t.TempDir()
	exe := filepath.Join(dir, "conmon-go")
	for _, f := range []string{exe, filepath.Join(dir, "conmon-go-runtime")} {
		if err := os.WriteFile(f, []byte("#!/bin/sh\n"), 0o755); err != nil {
			t.Fatal(err)
		}
	}
	tests := []struct {
		name string
		o    Options
	}{
		{"no conmon", Options{RunDir: dir, StateDir: dir}},
		{"missing conmon", Options{ConmonPath: filepath.Join(dir, "nope"), RunDir: dir, StateDir: dir}},
		{"missing runtime", Options{ConmonPath: exe, RuntimePath: filepath.Join(dir, "nope"), RunDir: dir, StateDir: dir}},
		{"relative run dir", Options{ConmonPath: exe, RunDir: "run", StateDir: dir}},
		{"run dir too long", Options{ConmonPath: exe, RunDir: "/" + strings.Repeat("r", 100), StateDir: dir}},
	}
	for _, tc := range tests {
		t.Run(tc.name, func(t *testing.T) {
			if _, err := New(tc.o); !errdefs.IsInvalidArgument(err) {
				t.Fatalf("got %v, want InvalidArgument", err)
			}
		})
	}
	if _, err := New(Options{ConmonPath: exe, RunDir: filepath.Join(dir, "run"), StateDir: filepath.Join(dir, "state")}); err != nil {
		t.Fatal(err)
	}
}

func TestNoMonitor(t *testing.T) {
	dir := t.TempDir()
	exe := filepath.Join(dir, "conmon-go")
	// A "conmon-go" that always fails to start a monitor.
	if err := os.WriteFile(exe, []byte("#!/bin/sh\necho no monitor here >&2\nexit 1\n"), 0o755); err != nil {
		t.Fatal(err)
	}
	if err := os.WriteFile(filepath.Join(dir, "conmon-go-runtime"), []byte("#!/bin/sh\nexit 1\n"), 0o755); err != nil {
		t.Fatal(err)
	}
	run, err := os.MkdirTemp("/tmp", "oci")
	if err != nil {
		t.Fatal(err)
	}
	defer os.RemoveAll(run)
	state := filepath.Join(dir, "state")
	r, err := New(Options{ConmonPath: exe, RunDir: run, StateDir: state})
	if err != nil {
		t.Fatal(err)
	}
	ctx := context.Background()

	if _, err := r.State(ctx, "pod", "nope"); !errdefs.IsNotFound(err) {
		t.Fatalf("State of unknown container: %v", err)
	}
	if err := r.Start(ctx, "pod", "c"); !errors.Is(err, errdefs.ErrUnavailable) {
		t.Fatalf("Start without monitor: %v", err)
	}
	if err := r.StartMonitor(ctx, "pod"); !errors.Is(err, errdefs.ErrUnavailable) || !strings.Contains(err.Error(), "no monitor here") {
		t.Fatalf("StartMonitor with a failing conmon: %v", err)
	}
	if _, err := r.State(ctx, "bad/pod", "c"); !errdefs.IsInvalidArgument(err) {
		t.Fatalf("bad pod id: %v", err)
	}
	if err := r.StopMonitor(ctx, "pod"); err != nil {
		t.Fatalf("StopMonitor without monitor: %v", err)
	}

	// State files left by a monitor: an exit is read back as recorded; a
	// running container whose process is gone is reported exited/unknown;
	// one whose process lives is running.
	files := []wire.ContainerState{
		{ID: "done", Pod: "pod", Status: wire.StatusExited, ExitCode: 3, Reason: "Error", FinishedAt: 42},
		{ID: "lost", Pod: "pod", Status: wire.StatusRunning, Pid: 1 << 22, PidStartTime: 1},
		{ID: "alive", Pod: "pod", Status: wire.StatusRunning, Pid: os.Getpid(), PidStartTime: ownStartTime(t)},
	}
	for i := range files {
		if err := wire.WriteStateFile(state, &files[i]); err != nil {
			t.Fatal(err)
		}
	}
	tests := []struct {
		id     ContainerID
		status Status
		code   int32
		reason string
	}{
		{"done", StatusExited, 3, "Error"},
		{"lost", StatusExited, 255, "Unknown"},
		{"alive", StatusRunning, 0, ""},
	}
	for _, tc := range tests {
		t.Run(string(tc.id), func(t *testing.T) {
			st, err := r.State(ctx, "pod", tc.id)
			if err != nil {
				t.Fatal(err)
			}
			if st.Status != tc.status || st.ExitCode != tc.code || st.Reason != tc.reason {
				t.Fatalf("got %v/%d/%q, want %v/%d/%q", st.Status, st.ExitCode, st.Reason, tc.status, tc.code, tc.reason)
			}
		})
	}
	wctx, cancel := context.WithTimeout(ctx, time.Second)
	defer cancel()
	if st, err := r.Wait(wctx, "pod", "done"); err != nil || st.ExitCode != 3 {
		t.Fatalf("Wait from file: %v %v", st, err)
	}
	// Delete without a monitor removes the state file.
	if err := r.Delete(ctx, "pod", "done"); err != nil {
		t.Fatal(err)
	}
	if err := r.Delete(ctx, "pod", "done"); !errdefs.IsNotFound(err) {
		t.Fatalf("second Delete: %v", err)
	}
}

func ownStartTime(t *testing.T) uint64 {
	t.Helper()
	v, err := procfs.StartTime(os.Getpid())
	if err != nil {
		t.Fatal(err)
	}
	return v
}

// Close owns the reaper's goroutine: it ends it (after the monitors it
// adopted were reaped), waits for it, and can be repeated.
func TestCloseEndsReaper(t *testing.T) {
	for _, tc := range []struct {
		name     string
		children int // monitors "started" (any child will do) before Close
	}{
		{name: "no monitor started: no loop to end", children: 0},
		{name: "after monitors: the loop ends", children: 2},
	} {
		t.Run(tc.name, func(t *testing.T) {
			var rp reaper
			for range tc.children {
				cmd := exec.Command("true")
				if err := cmd.Start(); err != nil {
					t.Fatal(err)
				}
				rp.adopt(cmd.Process)
			}
			waitUntil(t, func() bool { rp.mu.Lock(); defer rp.mu.Unlock(); return len(rp.pids) == 0 })
			closed := make(chan struct{})
			go func() { rp.close(); rp.close(); close(closed) }()
			select {
			case <-closed:
			case <-time.After(10 * time.Second):
				t.Fatal("close did not return")
			}
			if tc.children > 0 {
				select {
				case <-rp.done:
				default:
					t.Fatal("the reaper's loop is still running")
				}
			}
			// Adopting after Close starts nothing.
			cmd := exec.Command("true")
			if err := cmd.Start(); err != nil {
				t.Fatal(err)
			}
			pid := cmd.Process.Pid
			rp.adopt(cmd.Process)
			if tc.children == 0 && rp.done != nil {
				t.Fatal("adopt after close started a loop")
			}
			// Not reaped by the reaper: reap it here.
			var ws syscall.WaitStatus
			if _, err := syscall.Wait4(pid, &ws, 0, nil); err != nil {
				t.Fatalf("the child was reaped after close: %v", err)
			}
		})
	}
}

func TestRuntimeClose(t *testing.T) {
	dir := t.TempDir()
	exe := filepath.Join(dir, "conmon-go")
	for _, f := range []string{exe, filepath.Join(dir, "conmon-go-runtime")} {
		if err := os.WriteFile(f, []byte("#!/bin/sh\n"), 0o755); err != nil {
			t.Fatal(err)
		}
	}
	r, err := New(Options{ConmonPath: exe, RunDir: filepath.Join(dir, "run"), StateDir: filepath.Join(dir, "state")})
	if err != nil {
		t.Fatal(err)
	}
	if err := r.Close(); err != nil {
		t.Fatal(err)
	}
	if err := r.Close(); err != nil {
		t.Fatalf("second Close: %v", err)
	}
}

func waitUntil(t *testing.T, cond func() bool) {
	t.Helper()
	deadline := time.Now().Add(10 * time.Second)
	for !cond() {
		if time.Now().After(deadline) {
			t.Fatal("condition not met in 10s")
		}
		time.Sleep(10 * time.Millisecond)
	}
}

// TestUpdateOnAnOldMonitor: a monitor from before resizes answers an
// update as it answers any operation it does not know; noded must not
// pass that on as the request's fault (InvalidArgument), but as the pod's
// (FailedPrecondition), naming what to do.
func TestUpdateOnAnOldMonitor(t *testing.T) {
	run, err := os.MkdirTemp("/tmp", "oci")
	if err != nil {
		t.Fatal(err)
	}
	defer os.RemoveAll(run)
	dir := t.TempDir()
	for _, exe := range []string{"conmon-go", "conmon-go-runtime"} {
		if err := os.WriteFile(filepath.Join(dir, exe), []byte("#!/bin/sh\nexit 1\n"), 0o755); err != nil {
			t.Fatal(err)
		}
	}
	r, err := New(Options{ConmonPath: filepath.Join(dir, "conmon-go"), RunDir: run, StateDir: filepath.Join(dir, "state")})
	if err != nil {
		t.Fatal(err)
	}
	sock := wire.SocketPath(run, "pod")
	if err := os.MkdirAll(filepath.Dir(sock), 0o700); err != nil {
		t.Fatal(err)
	}
	l, err := net.Listen("unix", sock)
	if err != nil {
		t.Fatal(err)
	}
	defer l.Close()
	for _, tc := range []struct {
		desc   string
		answer wire.Response
		want   error
	}{
		{"old monitor", wire.Response{Code: wire.CodeInvalidArgument, Error: `unknown operation "update"`}, errdefs.ErrFailedPrecondition},
		{"refused values", wire.Response{Code: wire.CodeInvalidArgument, Error: "cpu quota too small"}, errdefs.ErrInvalidArgument},
		{"below usage", wire.Response{Code: wire.CodeFailedPrecondition, Error: "memory limit below usage"}, errdefs.ErrFailedPrecondition},
	} {
		t.Run(tc.desc, func(t *testing.T) {
			go func() {
				c, err := l.Accept()
				if err != nil {
					return
				}
				defer c.Close()
				if _, err := bufio.NewReader(c).ReadBytes('\n'); err != nil {
					return
				}
				b, _ := json.Marshal(tc.answer)
				_, _ = c.Write(append(b, '\n'))
			}()
			err := r.Update(context.Background(), "pod", "ctr")
			if !errors.Is(err, tc.want) {
				t.Fatalf("Update: %v, want %v", err, tc.want)
			}
		})
	}
}
