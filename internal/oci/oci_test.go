package oci

import (
	"context"
	"errors"
	"os"
	"path/filepath"
	"strconv"
	"strings"
	"testing"
	"time"

	"github.com/noded-dev/noded/internal/errdefs"
	"github.com/noded-dev/noded/internal/oci/wire"
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
		{ID: "alive", Pod: "pod", Status: wire.StatusRunning, Pid: os.Getpid(), PidStartTime: pidStart(t, os.Getpid())},
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

func pidStart(t *testing.T, pid int) uint64 {
	t.Helper()
	b, err := os.ReadFile("/proc/" + strconv.Itoa(pid) + "/stat")
	if err != nil {
		t.Fatal(err)
	}
	s := string(b)
	f := strings.Fields(s[strings.LastIndexByte(s, ')')+1:])
	v, err := strconv.ParseUint(f[19], 10, 64)
	if err != nil {
		t.Fatal(err)
	}
	return v
}
