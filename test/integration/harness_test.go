//go:build integration

// Package integration drives a real noded binary over its socket, the way
// crictl and the kubelet do. Build it first (`make build`); the tests find
// bin/noded relative to the repository root, or at $NODED_BIN. The daemon
// and registry plumbing is test/testenv; this file adapts it to testing.T.
package integration

import (
	"errors"
	"fmt"
	"os"
	"os/exec"
	"path/filepath"
	"testing"
	"time"

	runtimeapi "k8s.io/cri-api/pkg/apis/runtime/v1"

	"github.com/noded-dev/noded/test/testenv"
)

func repoRoot() string { return testenv.RepoRoot() }

func nodedBin(t *testing.T) string {
	t.Helper()
	bin := testenv.NodedBin()
	if _, err := os.Stat(bin); err != nil {
		t.Skipf("noded binary not built (%v): run make build", err)
	}
	return bin
}

// Daemon is a testenv.Daemon bound to a test.
type Daemon struct {
	*testenv.Daemon
}

// DaemonOptions tune StartDaemon.
type DaemonOptions struct {
	// Args are extra command-line flags.
	Args []string
	// Dir reuses a directory (restart tests); empty means a new temp dir
	// removed at the end of the test.
	Dir string
}

// StartDaemon starts noded on private directories; it is stopped at
// cleanup, and a daemon that does not stop on SIGTERM fails the test.
func StartDaemon(t *testing.T, o DaemonOptions) *Daemon {
	t.Helper()
	if os.Geteuid() != 0 {
		t.Skip("noded needs root")
	}
	nodedBin(t)
	if o.Dir == "" {
		// A short path: unix socket paths are limited to 108 bytes.
		dir, err := os.MkdirTemp("", "noded-it-")
		if err != nil {
			t.Fatal(err)
		}
		t.Cleanup(func() { cleanupDir(t, dir) })
		o.Dir = dir
	}
	d, err := testenv.Start(testenv.Options{Dir: o.Dir, Args: o.Args})
	if err != nil {
		t.Fatal(err)
	}
	t.Cleanup(func() {
		if err := d.Stop(); err != nil {
			t.Errorf("%v\n%s", err, d.Log)
		}
	})
	return &Daemon{d}
}

// Restart starts a new daemon on the same directories and flags.
func (d *Daemon) Restart(t *testing.T) *Daemon {
	t.Helper()
	return StartDaemon(t, DaemonOptions{Dir: d.Dir, Args: d.Opts.Args})
}

// Runtime returns a RuntimeService client.
func (d *Daemon) Runtime(_ *testing.T) runtimeapi.RuntimeServiceClient { return d.Daemon.Runtime() }

// Images returns an ImageService client.
func (d *Daemon) Images(_ *testing.T) runtimeapi.ImageServiceClient { return d.Daemon.Images() }

// Kill sends SIGKILL and waits for the exit.
func (d *Daemon) Kill(_ *testing.T) { d.Daemon.Kill() }

// Wait returns the daemon's exit error; it fails the test on timeout.
func (d *Daemon) Wait(t *testing.T, timeout time.Duration) error {
	t.Helper()
	err := d.Daemon.Wait(timeout)
	var exit *exec.ExitError
	if err != nil && !errors.As(err, &exit) {
		t.Fatal(err)
	}
	return err
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

// StartTestRegistry serves the offline catalog until the test ends; it
// skips the test when busybox has not been built.
func StartTestRegistry(t *testing.T) *testenv.Registry {
	t.Helper()
	r, err := testenv.StartRegistry(t.TempDir())
	if errors.Is(err, testenv.ErrNoBusybox) {
		t.Skip(err)
	}
	if err != nil {
		t.Fatal(err)
	}
	t.Cleanup(r.Close)
	return r
}

func cleanupDir(t *testing.T, dir string) {
	t.Helper()
	if err := testenv.CleanupDir(dir); err != nil {
		t.Logf("removing %s: %v", dir, err)
	}
}
