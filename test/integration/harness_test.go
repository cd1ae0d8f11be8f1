//go:build integration

// Package integration drives a real noded binary over its socket, the way
// crictl and the kubelet do. Build it first (`make build`); the tests find
// bin/noded relative to the repository root, or at $NODED_BIN.
package integration

import (
	"bytes"
	"context"
	"fmt"
	"os"
	"os/exec"
	"path/filepath"
	"runtime"
	"sync"
	"syscall"
	"testing"
	"time"

	"google.golang.org/grpc"
	"google.golang.org/grpc/credentials/insecure"
	runtimeapi "k8s.io/cri-api/pkg/apis/runtime/v1"
)

// repoRoot is the repository root, found from this file's location.
func repoRoot() string {
	_, file, _, _ := runtime.Caller(0)
	return filepath.Clean(filepath.Join(filepath.Dir(file), "..", ".."))
}

func nodedBin(t *testing.T) string {
	t.Helper()
	bin := os.Getenv("NODED_BIN")
	if bin == "" {
		bin = filepath.Join(repoRoot(), "bin", "noded")
	}
	if _, err := os.Stat(bin); err != nil {
		t.Skipf("noded binary not built (%v): run make build", err)
	}
	return bin
}

// syncBuffer collects the daemon's log for failure reports.
type syncBuffer struct {
	mu sync.Mutex
	b  bytes.Buffer
}

func (s *syncBuffer) Write(p []byte) (int, error) {
	s.mu.Lock()
	defer s.mu.Unlock()
	return s.b.Write(p)
}

func (s *syncBuffer) String() string {
	s.mu.Lock()
	defer s.mu.Unlock()
	return s.b.String()
}

// Daemon is one noded process with private directories.
type Daemon struct {
	Dir    string // private root of every path below
	Socket string
	CNIDir string
	Log    *syncBuffer
	cmd    *exec.Cmd
	done   chan error
}

// DaemonOptions tune StartDaemon.
type DaemonOptions struct {
	// Args are extra command-line flags.
	Args []string
	// Dir reuses a directory (restart tests); empty means a new temp dir.
	Dir string
}

// StartDaemon starts noded on private directories and waits until its
// socket answers Version. It is stopped (SIGTERM, then SIGKILL) at cleanup.
func StartDaemon(t *testing.T, o DaemonOptions) *Daemon {
	t.Helper()
	if os.Geteuid() != 0 {
		t.Skip("noded needs root")
	}
	dir := o.Dir
	if dir == "" {
		// A short path: unix socket paths are limited to 108 bytes.
		var err error
		if dir, err = os.MkdirTemp("", "noded-it-"); err != nil {
			t.Fatal(err)
		}
		t.Cleanup(func() { cleanupDir(t, dir) })
	}
	d := &Daemon{Dir: dir, Socket: filepath.Join(dir, "noded.sock"), CNIDir: filepath.Join(dir, "cni"), Log: &syncBuffer{}}
	for _, sub := range []string{d.CNIDir, filepath.Join(dir, "noded.toml.d")} {
		if err := os.MkdirAll(sub, 0o755); err != nil {
			t.Fatal(err)
		}
	}
	// An empty private config file and drop-in dir, so the host's
	// /etc/noded never leaks into a test.
	confFile := filepath.Join(dir, "noded.toml")
	if _, err := os.Stat(confFile); os.IsNotExist(err) {
		if err := os.WriteFile(confFile, nil, 0o644); err != nil {
			t.Fatal(err)
		}
	}
	args := append([]string{
		"--config", confFile,
		"--config-dir", filepath.Join(dir, "noded.toml.d"),
		"--listen", d.Socket,
		"--root", filepath.Join(dir, "root"),
		"--runroot", filepath.Join(dir, "runroot"),
		"--state-dir", filepath.Join(dir, "state"),
		"--cni-config-dir", d.CNIDir,
		"--log-level", "debug",
	}, o.Args...)
	d.cmd = exec.Command(nodedBin(t), args...)
	d.cmd.Stdout, d.cmd.Stderr = d.Log, d.Log
	if err := d.cmd.Start(); err != nil {
		t.Fatal(err)
	}
	d.done = make(chan error, 1)
	go func() { d.done <- d.cmd.Wait() }()
	t.Cleanup(func() { d.Stop(t) })

	ctx, cancel := context.WithTimeout(context.Background(), 30*time.Second)
	defer cancel()
	for {
		if _, err := d.Runtime(t).Version(ctx, &runtimeapi.VersionRequest{}); err == nil {
			return d
		}
		select {
		case err := <-d.done:
			d.done <- err
			t.Fatalf("noded exited during start-up: %v\n%s", err, d.Log)
		case <-ctx.Done():
			t.Fatalf("noded did not answer within 30s\n%s", d.Log)
		case <-time.After(50 * time.Millisecond):
		}
	}
}

// Stop sends SIGTERM and waits; SIGKILL after 20s. Safe to call twice.
func (d *Daemon) Stop(t *testing.T) {
	t.Helper()
	if d.cmd.ProcessState != nil || d.done == nil {
		return
	}
	_ = d.cmd.Process.Signal(syscall.SIGTERM)
	select {
	case <-d.done:
	case <-time.After(20 * time.Second):
		_ = d.cmd.Process.Kill()
		<-d.done
		t.Errorf("noded did not stop on SIGTERM within 20s\n%s", d.Log)
	}
	d.done = nil
}

// Kill sends SIGKILL (crash simulation) and waits for the exit.
func (d *Daemon) Kill(t *testing.T) {
	t.Helper()
	_ = d.cmd.Process.Kill()
	<-d.done
	d.done = nil
}

// Wait returns the daemon's exit error, or fails after timeout.
func (d *Daemon) Wait(t *testing.T, timeout time.Duration) error {
	t.Helper()
	select {
	case err := <-d.done:
		d.done = nil
		return err
	case <-time.After(timeout):
		t.Fatalf("noded still running after %s", timeout)
		return nil
	}
}

func (d *Daemon) conn(t *testing.T) *grpc.ClientConn {
	t.Helper()
	conn, err := grpc.NewClient("unix://"+d.Socket, grpc.WithTransportCredentials(insecure.NewCredentials()))
	if err != nil {
		t.Fatal(err)
	}
	t.Cleanup(func() { _ = conn.Close() })
	return conn
}

// Runtime returns a RuntimeService client on the daemon's socket.
func (d *Daemon) Runtime(t *testing.T) runtimeapi.RuntimeServiceClient {
	return runtimeapi.NewRuntimeServiceClient(d.conn(t))
}

// Images returns an ImageService client on the daemon's socket.
func (d *Daemon) Images(t *testing.T) runtimeapi.ImageServiceClient {
	return runtimeapi.NewImageServiceClient(d.conn(t))
}

// Crictl runs _build/tools/crictl against the daemon, skipping the test if
// crictl is not installed (scripts/install-test-deps.sh builds it).
func (d *Daemon) Crictl(t *testing.T, args ...string) (string, error) {
	t.Helper()
	bin := filepath.Join(repoRoot(), "_build", "tools", "crictl")
	if _, err := os.Stat(bin); err != nil {
		t.Skipf("crictl not installed (%v): run scripts/install-test-deps.sh", err)
	}
	ep := "unix://" + d.Socket
	cmd := exec.Command(bin, append([]string{"--runtime-endpoint", ep, "--image-endpoint", ep, "--timeout", "60s"}, args...)...)
	out, err := cmd.CombinedOutput()
	if err != nil {
		return string(out), fmt.Errorf("crictl %v: %w\n%s", args, err, out)
	}
	return string(out), nil
}

// cleanupDir unmounts anything left below dir (deepest first) and removes it.
func cleanupDir(t *testing.T, dir string) {
	t.Helper()
	mounts, _ := os.ReadFile("/proc/self/mountinfo")
	var below []string
	for _, line := range bytes.Split(mounts, []byte("\n")) {
		fields := bytes.Fields(line)
		if len(fields) > 4 {
			if mp := string(fields[4]); mp == dir || (len(mp) > len(dir) && mp[:len(dir)+1] == dir+"/") {
				below = append(below, mp)
			}
		}
	}
	for i := len(below) - 1; i >= 0; i-- {
		_ = syscall.Unmount(below[i], syscall.MNT_DETACH)
	}
	if err := os.RemoveAll(dir); err != nil {
		t.Logf("removing %s: %v", dir, err)
	}
}
