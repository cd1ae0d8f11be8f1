package main

import (
	"encoding/json"
	"fmt"
	"go/ast"
	"go/parser"
	"go/token"
	"math/rand/v2"
	"os"
	"os/exec"
	"path/filepath"
	"strconv"
	"strings"
	"testing"

	"github.com/opencontainers/cgroups"
	"github.com/opencontainers/runc/libcontainer"
	"github.com/opencontainers/runc/libcontainer/configs"
	"github.com/opencontainers/runc/libcontainer/system"
	"golang.org/x/sys/unix"

	"github.com/noded-dev/noded/internal/oci/runclayout"
	"github.com/noded-dev/noded/internal/procfs"
)

// TestRuncLayout checks what internal/oci/runclayout says about
// libcontainer's private files against the runc that go.mod pins, by
// driving libcontainer itself. It fails when a runc upgrade changes the
// layout the monitor (startfifo.go, adoption, leftovers) and noded rely on;
// the fix is then in runclayout, and in startfifo.go if the exec fifo
// handshake changed.
func TestRuncLayout(t *testing.T) {
	t.Run("Create makes the state directory at ContainerDir", func(t *testing.T) {
		root, id := t.TempDir(), "layout1"
		c, err := libcontainer.Create(root, id, minimalConfig(t))
		if err != nil {
			t.Fatal(err)
		}
		fi, err := os.Stat(runclayout.ContainerDir(root, id))
		if err != nil || !fi.IsDir() {
			t.Fatalf("no state directory at %s: %v", runclayout.ContainerDir(root, id), err)
		}
		if got, err := runclayout.ContainerIDs(root); err != nil || len(got) != 1 || got[0] != id {
			t.Fatalf("ContainerIDs = %v, %v", got, err)
		}
		if !runclayout.Exists(root, id) {
			t.Fatal("Exists is false after Create")
		}
		if err := c.Destroy(); err != nil {
			t.Fatal(err)
		}
		if runclayout.Exists(root, id) {
			t.Fatal("Exists is true after Destroy")
		}
	})

	// A state directory laid out as runclayout says, around this test's
	// own process as the "init": Load must read it, and the exec fifo must
	// decide between created and running as startViaFifo assumes.
	t.Run("Load reads StatePath; ExecFifoPath tells created from running", func(t *testing.T) {
		root, id := t.TempDir(), "layout2"
		writeState(t, root, id)
		if err := unix.Mkfifo(runclayout.ExecFifoPath(root, id), 0o622); err != nil {
			t.Fatal(err)
		}
		for _, tc := range []struct {
			name   string
			before func(t *testing.T)
			want   libcontainer.Status
		}{
			{name: "fifo present", want: libcontainer.Created},
			{name: "fifo removed (started)", before: func(t *testing.T) {
				if err := os.Remove(runclayout.ExecFifoPath(root, id)); err != nil {
					t.Fatal(err)
				}
			}, want: libcontainer.Running},
		} {
			t.Run(tc.name, func(t *testing.T) {
				if tc.before != nil {
					tc.before(t)
				}
				c, err := libcontainer.Load(root, id)
				if err != nil {
					t.Fatalf("Load of a state file at %s: %v", runclayout.StatePath(root, id), err)
				}
				if st, err := c.Status(); err != nil || st != tc.want {
					t.Fatalf("status %v, %v; want %v", st, err, tc.want)
				}
			})
		}
	})

	// The monitor compares libcontainer's InitProcessStartTime with what
	// internal/procfs reads to tell a live init from a recycled pid.
	t.Run("InitProcessStartTime is procfs's StartTime", func(t *testing.T) {
		st, err := system.Stat(os.Getpid())
		if err != nil {
			t.Fatal(err)
		}
		got, err := procfs.StartTime(os.Getpid())
		if err != nil || got != st.StartTime {
			t.Fatalf("procfs start time %d (%v), libcontainer's %d", got, err, st.StartTime)
		}
	})

	// The file names are unexported constants of runc; their literals are
	// read from runc's source so that a rename names itself in the failure.
	t.Run("runc's constants", func(t *testing.T) {
		consts := runcConstants(t, "libcontainer/factory_linux.go")
		for name, want := range map[string]string{
			"stateFilename":    runclayout.StateFile,
			"execFifoFilename": runclayout.ExecFifo,
		} {
			if got, ok := consts[name]; !ok || got != want {
				t.Errorf("runc's %s = %q (defined: %v), runclayout says %q", name, got, ok, want)
			}
		}
	})
}

// minimalConfig is a configuration libcontainer.Create accepts without
// touching the host: its cgroup does not exist and is never made.
func minimalConfig(t *testing.T) *configs.Config {
	return &configs.Config{
		Rootfs:     t.TempDir(),
		Namespaces: configs.Namespaces{{Type: configs.NEWNS}},
		Cgroups: &cgroups.Cgroup{
			Path:      fmt.Sprintf("/noded-runclayout-test-%d", rand.Uint32()),
			Resources: &cgroups.Resources{},
		},
	}
}

// writeState writes a libcontainer state file for id whose init is this
// process.
func writeState(t *testing.T, root, id string) {
	t.Helper()
	start, err := procfs.StartTime(os.Getpid())
	if err != nil {
		t.Fatal(err)
	}
	st := libcontainer.State{BaseState: libcontainer.BaseState{
		ID: id, InitProcessPid: os.Getpid(), InitProcessStartTime: start, Config: *minimalConfig(t),
	}}
	b, err := json.Marshal(st)
	if err != nil {
		t.Fatal(err)
	}
	if err := os.MkdirAll(runclayout.ContainerDir(root, id), 0o711); err != nil {
		t.Fatal(err)
	}
	if err := os.WriteFile(runclayout.StatePath(root, id), b, 0o600); err != nil {
		t.Fatal(err)
	}
}

// runcConstants returns the string constants declared in a file of the
// runc module go.mod pins.
func runcConstants(t *testing.T, file string) map[string]string {
	t.Helper()
	goCmd, err := exec.LookPath("go")
	if err != nil {
		t.Skip("no go command to locate runc's source")
	}
	out, err := exec.Command(goCmd, "list", "-m", "-f", "{{.Dir}}", "github.com/opencontainers/runc").Output()
	dir := strings.TrimSpace(string(out))
	if err != nil || dir == "" {
		t.Fatalf("locating runc's source: %v (%q)", err, out)
	}
	f, err := parser.ParseFile(token.NewFileSet(), filepath.Join(dir, file), nil, 0)
	if err != nil {
		t.Fatal(err)
	}
	consts := map[string]string{}
	ast.Inspect(f, func(n ast.Node) bool {
		vs, ok := n.(*ast.ValueSpec)
		if !ok {
			return true
		}
		for i, name := range vs.Names {
			if i >= len(vs.Values) {
				break
			}
			if lit, ok := vs.Values[i].(*ast.BasicLit); ok && lit.Kind == token.STRING {
				consts[name.Name], _ = strconv.Unquote(lit.Value)
			}
		}
		return true
	})
	return consts
}
