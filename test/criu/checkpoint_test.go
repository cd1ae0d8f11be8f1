//go:build criu

// Package criu proves that libcontainer's checkpoint/restore (runc at the
// version go.mod pins, built without the runc_nocriu tag) works on this host
// with the CRIU that build-criu.sh makes: a counter runs in a container with
// a busybox rootfs, is checkpointed (which stops it), and the restored
// process goes on counting from where it was, not from zero.
//
// It is groundwork for issue 17: the real checkpoint/restore belongs in
// conmon-go-runtime (the only importer of libcontainer, which depguard
// enforces), and this test shows what that needs before anything there
// changes. It has a build tag of its own so that no other build or lint
// sees it: `go test -tags criu ./test/criu/` (as root). It skips with the
// reason when not root, or when there is no working criu or no busybox.
package criu

import (
	"bufio"
	"bytes"
	"errors"
	"fmt"
	"os"
	"os/exec"
	"path/filepath"
	"runtime"
	"strconv"
	"strings"
	"sync"
	"syscall"
	"testing"
	"time"

	_ "github.com/opencontainers/cgroups/devices" // device cgroup rules
	// A proof outside the helper on purpose (see the package comment).
	"github.com/opencontainers/runc/libcontainer"           //nolint:depguard
	"github.com/opencontainers/runc/libcontainer/configs"   //nolint:depguard
	_ "github.com/opencontainers/runc/libcontainer/nsenter" //nolint:depguard // nsexec() for the "init" re-exec
	"github.com/opencontainers/runc/libcontainer/specconv"  //nolint:depguard
	"github.com/opencontainers/runtime-spec/specs-go"
	"golang.org/x/sys/unix"
)

// TestMain is also libcontainer's "init": libcontainer re-executes this test
// binary as "<binary> init" inside the container's namespaces.
func TestMain(m *testing.M) {
	if len(os.Args) > 1 && os.Args[1] == "init" {
		runtime.GOMAXPROCS(1)
		runtime.LockOSThread()
		libcontainer.Init() // never returns
	}
	os.Exit(m.Run())
}

// repoRoot is two levels up from this package (go test runs in its dir).
func repoRoot(t *testing.T) string {
	t.Helper()
	wd, err := os.Getwd()
	if err != nil {
		t.Fatal(err)
	}
	return filepath.Clean(filepath.Join(wd, "..", ".."))
}

// findCriu puts a criu on PATH, the only place libcontainer (go-criu and
// its own `criu swrk`) looks: $NODED_CRIU, else the newest
// /var/cache/noded-test/criu-*/sbin/criu, else whatever PATH has. It skips
// when there is none or when `criu check` fails on this kernel.
func findCriu(t *testing.T) string {
	t.Helper()
	bin := os.Getenv("NODED_CRIU")
	if bin == "" {
		cache := os.Getenv("NODED_TEST_CACHE")
		if cache == "" {
			cache = "/var/cache/noded-test"
		}
		if m, _ := filepath.Glob(filepath.Join(cache, "criu-*", "sbin", "criu")); len(m) > 0 {
			bin = m[len(m)-1]
		}
	}
	if bin != "" {
		if _, err := os.Stat(bin); err != nil {
			t.Skipf("no criu at %s: %v (run test/criu/build-criu.sh)", bin, err)
		}
		t.Setenv("PATH", filepath.Dir(bin)+string(os.PathListSeparator)+os.Getenv("PATH"))
	}
	path, err := exec.LookPath("criu")
	if err != nil {
		t.Skip("no criu: run test/criu/build-criu.sh (or set NODED_CRIU)")
	}
	if out, err := exec.Command(path, "check").CombinedOutput(); err != nil {
		t.Skipf("%s check fails on this kernel: %v\n%s", path, err, out)
	}
	return path
}

// busyboxRootfs makes a rootfs holding a static busybox and its applet
// links for what the counter runs.
func busyboxRootfs(t *testing.T) string {
	t.Helper()
	bb := os.Getenv("NODED_BUSYBOX")
	if bb == "" {
		bb = filepath.Join(repoRoot(t), "_build", "busybox", "busybox")
	}
	data, err := os.ReadFile(bb)
	if err != nil {
		t.Skipf("no static busybox (%v): run test/images/build-busybox.sh", err)
	}
	rootfs := filepath.Join(t.TempDir(), "rootfs")
	for _, d := range []string{"bin", "proc", "sys", "dev", "tmp", "data"} {
		if err := os.MkdirAll(filepath.Join(rootfs, d), 0o755); err != nil {
			t.Fatal(err)
		}
	}
	if err := os.WriteFile(filepath.Join(rootfs, "bin", "busybox"), data, 0o755); err != nil {
		t.Fatal(err)
	}
	for _, applet := range []string{"sh", "sleep", "echo"} {
		if err := os.Symlink("busybox", filepath.Join(rootfs, "bin", applet)); err != nil {
			t.Fatal(err)
		}
	}
	return rootfs
}

// counterScript keeps the count in the shell's memory and appends each value
// to /data/count: after a restore the file goes on from the dumped value, a
// fresh start would begin at 0 again.
const counterScript = `i=0; while true; do echo $i >>/data/count; i=$((i+1)); sleep 0.1; done`

// newSpec is runc's example spec (every namespace but user, the default
// mounts and devices) with the counter as its process.
func newSpec(id, rootfs string) *specs.Spec {
	spec := specconv.Example()
	spec.Root.Path = rootfs
	spec.Root.Readonly = false
	spec.Process.Terminal = false
	spec.Process.Args = []string{"/bin/sh", "-c", counterScript}
	spec.Hostname = id
	return spec
}

func newConfig(t *testing.T, id string, spec *specs.Spec) *configs.Config {
	t.Helper()
	config, err := specconv.CreateLibcontainerConfig(&specconv.CreateOpts{
		CgroupName:       id,
		UseSystemdCgroup: false,
		Spec:             spec,
	})
	if err != nil {
		t.Fatal(err)
	}
	return config
}

// stdio gives a process pipes for stdin, stdout and stderr, as conmon-go
// does: libcontainer records the pipes in descriptors.json at checkpoint
// and hands the restored process the new ones (CRIU's inherit-fd), so the
// restore needs fresh pipes of its own. What the process prints is kept for
// failure messages.
type stdio struct {
	mu     sync.Mutex
	buf    bytes.Buffer
	child  []*os.File // the ends the container gets
	parent []*os.File
	wg     sync.WaitGroup
}

func newStdio(t *testing.T) *stdio {
	t.Helper()
	s := &stdio{}
	inR, inW, err := os.Pipe()
	if err != nil {
		t.Fatal(err)
	}
	s.child = append(s.child, inR)
	s.parent = append(s.parent, inW)
	for range 2 {
		r, w, err := os.Pipe()
		if err != nil {
			t.Fatal(err)
		}
		s.child = append(s.child, w)
		s.parent = append(s.parent, r)
		s.wg.Add(1)
		go func() {
			defer s.wg.Done()
			sc := bufio.NewScanner(r)
			for sc.Scan() {
				s.mu.Lock()
				s.buf.WriteString(sc.Text() + "\n")
				s.mu.Unlock()
			}
		}()
	}
	t.Cleanup(s.close)
	return s
}

func (s *stdio) process(args, env []string) *libcontainer.Process {
	return &libcontainer.Process{
		Args:   args,
		Env:    env,
		Cwd:    "/",
		Stdin:  s.child[0],
		Stdout: s.child[1],
		Stderr: s.child[2],
		Init:   true,
	}
}

func (s *stdio) output() string {
	s.mu.Lock()
	defer s.mu.Unlock()
	return s.buf.String()
}

func (s *stdio) close() {
	for _, f := range s.child {
		f.Close()
	}
	// Closing the read ends stops the readers even while a container still
	// holds the write ends.
	for _, f := range s.parent {
		f.Close()
	}
	s.wg.Wait()
}

// readCount reads the counter file's values.
func readCount(t *testing.T, rootfs string) []int {
	t.Helper()
	data, err := os.ReadFile(filepath.Join(rootfs, "data", "count"))
	if errors.Is(err, os.ErrNotExist) {
		return nil
	}
	if err != nil {
		t.Fatal(err)
	}
	var vals []int
	for _, l := range strings.Fields(string(data)) {
		v, err := strconv.Atoi(l)
		if err != nil {
			t.Fatalf("counter file holds %q: %v", l, err)
		}
		vals = append(vals, v)
	}
	return vals
}

// waitFor polls cond until it holds; the bound only turns a hang into a
// failure, nothing depends on how fast it gets there.
func waitFor(t *testing.T, what string, cond func() bool) {
	t.Helper()
	deadline := time.Now().Add(60 * time.Second)
	for !cond() {
		if time.Now().After(deadline) {
			t.Fatalf("timed out waiting for %s", what)
		}
		time.Sleep(50 * time.Millisecond)
	}
}

// killed says whether a Process.Wait result is a death by SIGKILL (the
// started init reports it as an *exec.ExitError, the restored one as a
// bare ProcessState).
func killed(ps *os.ProcessState, err error) bool {
	var ee *exec.ExitError
	if errors.As(err, &ee) {
		ps = ee.ProcessState
	} else if err != nil {
		return false
	}
	if ps == nil {
		return false
	}
	ws, ok := ps.Sys().(syscall.WaitStatus)
	return ok && ws.Signaled() && ws.Signal() == syscall.SIGKILL
}

func last(v []int) int {
	if len(v) == 0 {
		return -1
	}
	return v[len(v)-1]
}

// criuLog is the tail of a CRIU log, for failure messages.
func criuLog(dir, name string) string {
	data, err := os.ReadFile(filepath.Join(dir, name))
	if err != nil {
		return fmt.Sprintf("(no %s: %v)", name, err)
	}
	lines := strings.Split(strings.TrimSpace(string(data)), "\n")
	if len(lines) > 30 {
		lines = lines[len(lines)-30:]
	}
	return strings.Join(lines, "\n")
}

func TestCheckpointRestoreCounter(t *testing.T) {
	if os.Geteuid() != 0 {
		t.Skip("needs root (namespaces, cgroups, CRIU)")
	}
	criuPath := findCriu(t)
	ver, _ := exec.Command(criuPath, "--version").CombinedOutput()
	t.Logf("criu: %s (%s)", criuPath, strings.ReplaceAll(strings.TrimSpace(string(ver)), "\n", "; "))

	rootfs := busyboxRootfs(t)
	tmp := t.TempDir()
	stateRoot := filepath.Join(tmp, "state")
	images := filepath.Join(tmp, "checkpoint")
	id := fmt.Sprintf("noded-criu-test-%d", os.Getpid())
	spec := newSpec(id, rootfs)
	config := newConfig(t, id, spec)

	c, err := libcontainer.Create(stateRoot, id, config)
	if err != nil {
		t.Fatal(err)
	}
	// Whatever happens, the container in use (and its cgroups) goes away.
	cur := c
	t.Cleanup(func() {
		_ = cur.Signal(unix.SIGKILL)
		if err := cur.Destroy(); err != nil {
			t.Logf("destroy: %v", err)
		}
	})

	io1 := newStdio(t)
	proc := io1.process(spec.Process.Args, spec.Process.Env)
	if err := c.Run(proc); err != nil {
		t.Fatalf("run: %v", err)
	}
	waitFor(t, "the counter to reach 5", func() bool { return last(readCount(t, rootfs)) >= 5 })

	// Checkpoint without LeaveRunning: CRIU dumps and kills the tree.
	if err := c.Checkpoint(&libcontainer.CriuOpts{
		ImagesDirectory: images,
		WorkDirectory:   filepath.Join(tmp, "dump-work"),
	}); err != nil {
		t.Fatalf("checkpoint: %v\n%s", err, criuLog(filepath.Join(tmp, "dump-work"), "dump.log"))
	}
	if ps, err := proc.Wait(); !killed(ps, err) {
		t.Errorf("the checkpointed process ended with %v, %v; want killed by the dump", ps, err)
	}
	if st, err := c.Status(); err != nil || st != libcontainer.Stopped {
		t.Fatalf("status after checkpoint: %v, %v; want stopped", st, err)
	}
	dumped := readCount(t, rootfs)
	t.Logf("checkpointed at count %d into %s", last(dumped), images)
	if err := c.Destroy(); err != nil {
		t.Fatalf("destroy after checkpoint: %v", err)
	}

	// Restore into a new container of the same id and config, as
	// `runc restore` does.
	c2, err := libcontainer.Create(stateRoot, id, config)
	if err != nil {
		t.Fatal(err)
	}
	cur = c2
	io2 := newStdio(t)
	proc2 := io2.process(spec.Process.Args, spec.Process.Env)
	if err := c2.Restore(proc2, &libcontainer.CriuOpts{
		ImagesDirectory: images,
		WorkDirectory:   filepath.Join(tmp, "restore-work"),
	}); err != nil {
		t.Fatalf("restore: %v\n%s", err, criuLog(filepath.Join(tmp, "restore-work"), "restore.log"))
	}
	// The Container that restored does not know the restored init's start
	// time (libcontainer sets it only on Start or Load), so it would call the
	// process gone; runc's CLI, like conmon-go-runtime, loads the container
	// afresh for every operation, which reads it from state.json.
	c3, err := libcontainer.Load(stateRoot, id)
	if err != nil {
		t.Fatalf("load after restore: %v", err)
	}
	cur = c3
	if st, err := c3.Status(); err != nil || st != libcontainer.Running {
		t.Fatalf("status after restore: %v, %v; want running", st, err)
	}
	want := last(dumped) + 5
	waitFor(t, fmt.Sprintf("the restored counter to reach %d", want), func() bool { return last(readCount(t, rootfs)) >= want })

	// Every value once, in order: the restored shell went on from its
	// count in memory (a fresh start would repeat 0, 1, ...).
	vals := readCount(t, rootfs)
	for i, v := range vals {
		if v != i {
			t.Fatalf("counter file is not 0, 1, 2, ...: value %d at line %d (checkpointed at %d): %v", v, i, last(dumped), vals)
		}
	}
	t.Logf("restored counter went on from %d to %d", last(dumped), last(vals))

	if err := c3.Signal(unix.SIGKILL); err != nil {
		t.Fatalf("kill the restored process: %v", err)
	}
	if ps, err := proc2.Wait(); !killed(ps, err) {
		t.Errorf("the restored process ended with %v, %v; want killed", ps, err)
	}
	if out := io1.output() + io2.output(); out != "" {
		t.Logf("container output:\n%s", out)
	}
}
