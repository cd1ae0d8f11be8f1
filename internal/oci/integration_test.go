package oci

import (
	"bytes"
	"context"
	"debug/elf"
	"encoding/json"
	"errors"
	"fmt"
	"math/rand/v2"
	"os"
	"os/exec"
	"path/filepath"
	"slices"
	"strconv"
	"strings"
	"syscall"
	"testing"
	"time"

	specs "github.com/opencontainers/runtime-spec/specs-go"
	"golang.org/x/sys/unix"

	"github.com/noded-dev/noded/internal/errdefs"
	"github.com/noded-dev/noded/internal/oci/wire"
	"github.com/noded-dev/noded/internal/procfs"
)

// The integration test runs real containers through a real conmon-go. It
// needs root, a static busybox (Debian's busybox-static, or
// _build/busybox/busybox) and cgroups. NODED_CONMON_GO may name a prebuilt
// binary; otherwise the test builds one.

func repoRoot(t *testing.T) string {
	t.Helper()
	wd, err := os.Getwd()
	if err != nil {
		t.Fatal(err)
	}
	return filepath.Clean(filepath.Join(wd, "..", ".."))
}

func findBusybox(t *testing.T) string {
	for _, p := range []string{filepath.Join(repoRoot(t), "_build", "busybox", "busybox"), "/bin/busybox", "/usr/bin/busybox"} {
		if isStaticELF(p) {
			return p
		}
	}
	return ""
}

// isStaticELF reports whether path is an ELF executable without an
// interpreter (it runs in a rootfs that has no libc).
func isStaticELF(path string) bool {
	f, err := elf.Open(path)
	if err != nil {
		return false
	}
	defer f.Close()
	for _, p := range f.Progs {
		if p.Type == elf.PT_INTERP {
			return false
		}
	}
	return f.Type == elf.ET_EXEC || f.Type == elf.ET_DYN
}

// buildConmon builds conmon-go and conmon-go-runtime (with seccomp support
// when libseccomp is installed) and reports whether seccomp is available.
// NODED_CONMON_GO may name a prebuilt conmon-go with conmon-go-runtime
// beside it (NODED_CONMON_GO_SECCOMP=1 if built with -tags seccomp).
func buildConmon(t *testing.T, dir string) (string, bool) {
	if p := os.Getenv("NODED_CONMON_GO"); p != "" {
		return p, os.Getenv("NODED_CONMON_GO_SECCOMP") != ""
	}
	seccomp := exec.Command("pkg-config", "--exists", "libseccomp").Run() == nil
	for _, b := range []struct {
		out, pkg string
		tags     bool
	}{{"conmon-go", "./conmon-go", false}, {"conmon-go-runtime", "./conmon-go/runtime", seccomp}} {
		args := []string{"build", "-o", filepath.Join(dir, b.out)}
		if b.tags {
			args = append(args, "-tags", "seccomp")
		}
		cmd := exec.Command("go", append(args, b.pkg)...)
		cmd.Dir = repoRoot(t)
		if out, err := cmd.CombinedOutput(); err != nil {
			t.Fatalf("building %s: %v\n%s", b.out, err, out)
		}
	}
	return filepath.Join(dir, "conmon-go"), seccomp
}

// makeRootfs makes a read-only-able rootfs with busybox and its applets.
func makeRootfs(t *testing.T, dir, busybox string) string {
	root := filepath.Join(dir, "rootfs")
	for _, d := range []string{"bin", "proc", "sys", "dev", "tmp", "etc"} {
		if err := os.MkdirAll(filepath.Join(root, d), 0o755); err != nil {
			t.Fatal(err)
		}
	}
	b, err := os.ReadFile(busybox)
	if err != nil {
		t.Fatal(err)
	}
	if err := os.WriteFile(filepath.Join(root, "bin", "busybox"), b, 0o755); err != nil {
		t.Fatal(err)
	}
	for _, a := range []string{"sh", "sleep", "echo", "cat", "id", "hostname", "head", "tr", "dd", "printf", "mkdir", "touch", "ls", "yes", "true", "grep", "tty", "stty"} {
		if err := os.Symlink("busybox", filepath.Join(root, "bin", a)); err != nil {
			t.Fatal(err)
		}
	}
	return root
}

var defaultCaps = []string{
	"CAP_CHOWN", "CAP_DAC_OVERRIDE", "CAP_FSETID", "CAP_FOWNER", "CAP_MKNOD", "CAP_NET_RAW",
	"CAP_SETGID", "CAP_SETUID", "CAP_SETFCAP", "CAP_SETPCAP", "CAP_NET_BIND_SERVICE",
	"CAP_SYS_CHROOT", "CAP_KILL", "CAP_AUDIT_WRITE",
}

type testEnv struct {
	t        *testing.T
	rt       *Runtime
	opts     Options
	dir      string
	rootfs   string
	cgParent string // e.g. /noded-test-123
	pod      PodID
	seccomp  bool

	extraPods   []PodID
	monitorPids []int
}

// spec returns a spec like the one noded writes for a container. The
// monitor runs a spec as it is: fitting it to what the host allows is
// noded's (internal/specgen), so this spec is fitted as specgen would.
func (e *testEnv) spec(id string, args ...string) *specs.Spec {
	// As the kubelet asks for pause, raised to noded's own as specgen's
	// oomScoreAdj does (lowering it needs CAP_SYS_RESOURCE).
	adj := max(-998, ownOOMScoreAdj(e.t))
	return &specs.Spec{
		Version: specs.Version,
		Process: &specs.Process{
			Args: args,
			Env:  []string{"PATH=/bin", "HOME=/"},
			Cwd:  "/",
			Capabilities: &specs.LinuxCapabilities{
				Bounding: defaultCaps, Effective: defaultCaps, Permitted: defaultCaps,
			},
			NoNewPrivileges: true,
			Rlimits:         []specs.POSIXRlimit{{Type: "RLIMIT_NOFILE", Hard: 1024, Soft: 1024}},
			OOMScoreAdj:     &adj,
		},
		Root:     &specs.Root{Path: e.rootfs, Readonly: true},
		Hostname: "pod-host",
		Mounts: []specs.Mount{
			{Destination: "/proc", Type: "proc", Source: "proc", Options: []string{"nosuid", "noexec", "nodev"}},
			{Destination: "/dev", Type: "tmpfs", Source: "tmpfs", Options: []string{"nosuid", "strictatime", "mode=755", "size=65536k"}},
			{Destination: "/dev/pts", Type: "devpts", Source: "devpts", Options: []string{"nosuid", "noexec", "newinstance", "ptmxmode=0666", "mode=0620"}},
			{Destination: "/dev/shm", Type: "tmpfs", Source: "shm", Options: []string{"nosuid", "noexec", "nodev", "mode=1777", "size=65536k"}},
			{Destination: "/dev/mqueue", Type: "mqueue", Source: "mqueue", Options: []string{"nosuid", "noexec", "nodev"}},
			{Destination: "/sys", Type: "sysfs", Source: "sysfs", Options: []string{"nosuid", "noexec", "nodev", "ro"}},
			{Destination: "/tmp", Type: "tmpfs", Source: "tmpfs", Options: []string{"nosuid", "nodev", "mode=1777"}},
		},
		Linux: &specs.Linux{
			CgroupsPath: e.cgParent + "/pod" + string(e.pod) + "/" + id,
			Namespaces: []specs.LinuxNamespace{
				{Type: specs.PIDNamespace}, {Type: specs.NetworkNamespace}, {Type: specs.IPCNamespace},
				{Type: specs.UTSNamespace}, {Type: specs.MountNamespace},
			},
			Resources: &specs.LinuxResources{
				Devices: []specs.LinuxDeviceCgroup{{Allow: false, Access: "rwm"}},
			},
			MaskedPaths:   []string{"/proc/kcore", "/proc/keys", "/proc/timer_list", "/sys/firmware"},
			ReadonlyPaths: []string{"/proc/bus", "/proc/fs", "/proc/irq", "/proc/sys", "/proc/sysrq-trigger"},
		},
	}
}

// joinPod makes the spec join the pause container's namespaces by path.
func joinPod(s *specs.Spec, pausePid int) {
	p := "/proc/" + strconv.Itoa(pausePid) + "/ns/"
	s.Linux.Namespaces = []specs.LinuxNamespace{
		{Type: specs.PIDNamespace, Path: p + "pid"}, {Type: specs.NetworkNamespace, Path: p + "net"},
		{Type: specs.IPCNamespace, Path: p + "ipc"}, {Type: specs.UTSNamespace, Path: p + "uts"},
		{Type: specs.MountNamespace},
	}
	s.Hostname = "" // the UTS namespace is shared
}

type ctrOpts struct{ tty, stdin, stdinOnce bool }

// create writes the bundle and creates the container.
func (e *testEnv) create(id string, s *specs.Spec, o ...ctrOpts) (State, string) {
	e.t.Helper()
	bundle := filepath.Join(e.dir, "bundles", id)
	if err := os.MkdirAll(bundle, 0o700); err != nil {
		e.t.Fatal(err)
	}
	b, _ := json.Marshal(s)
	if err := os.WriteFile(filepath.Join(bundle, "config.json"), b, 0o600); err != nil {
		e.t.Fatal(err)
	}
	logPath := filepath.Join(e.dir, "logs", id+".log")
	var opt ctrOpts
	if len(o) > 0 {
		opt = o[0]
	}
	st, err := e.rt.Create(context.Background(), CreateRequest{
		Pod: e.pod, ID: ContainerID(id), Bundle: bundle, LogPath: logPath, Tty: opt.tty, Stdin: opt.stdin, StdinOnce: opt.stdinOnce,
	})
	if err != nil {
		e.t.Fatalf("create %s: %v", id, err)
	}
	if st.Status != StatusCreated || st.Pid <= 0 {
		e.t.Fatalf("create %s: state %+v", id, st)
	}
	return st, logPath
}

func (e *testEnv) run(id string, s *specs.Spec, o ...ctrOpts) (State, string) {
	e.t.Helper()
	_, logPath := e.create(id, s, o...)
	if err := e.rt.Start(context.Background(), e.pod, ContainerID(id)); err != nil {
		e.t.Fatalf("start %s: %v", id, err)
	}
	st, err := e.rt.State(context.Background(), e.pod, ContainerID(id))
	if err != nil {
		e.t.Fatal(err)
	}
	return st, logPath
}

// runCombined writes the bundle and creates and starts the container
// with the single "run" operation.
func (e *testEnv) runCombined(id string, s *specs.Spec) (State, string) {
	e.t.Helper()
	bundle := filepath.Join(e.dir, "bundles", id)
	if err := os.MkdirAll(bundle, 0o700); err != nil {
		e.t.Fatal(err)
	}
	b, _ := json.Marshal(s)
	if err := os.WriteFile(filepath.Join(bundle, "config.json"), b, 0o600); err != nil {
		e.t.Fatal(err)
	}
	logPath := filepath.Join(e.dir, "logs", id+".log")
	st, err := e.rt.Run(context.Background(), CreateRequest{Pod: e.pod, ID: ContainerID(id), Bundle: bundle, LogPath: logPath})
	if err != nil {
		e.t.Fatalf("run %s: %v", id, err)
	}
	if st.Pid <= 0 || st.StartedAt.IsZero() || (st.Status != StatusRunning && st.Status != StatusExited) {
		e.t.Fatalf("run %s: state %+v", id, st)
	}
	return st, logPath
}

func (e *testEnv) wait(id string, d time.Duration) State {
	e.t.Helper()
	ctx, cancel := context.WithTimeout(context.Background(), d)
	defer cancel()
	st, err := e.rt.Wait(ctx, e.pod, ContainerID(id))
	if err != nil {
		e.t.Fatalf("wait %s: %v", id, err)
	}
	if st.Status != StatusExited || st.FinishedAt.IsZero() {
		e.t.Fatalf("wait %s: state %+v", id, st)
	}
	return st
}

func (e *testEnv) delete(id string) {
	e.t.Helper()
	if err := e.rt.Delete(context.Background(), e.pod, ContainerID(id)); err != nil {
		e.t.Fatalf("delete %s: %v", id, err)
	}
}

// logEntries returns "stream tag content" of each entry, checking the
// timestamps.
func logEntries(t *testing.T, path string) []string {
	t.Helper()
	b, err := os.ReadFile(path)
	if err != nil {
		t.Fatal(err)
	}
	var out []string
	for _, l := range strings.Split(strings.TrimSuffix(string(b), "\n"), "\n") {
		if l == "" {
			continue
		}
		ts, rest, ok := strings.Cut(l, " ")
		if !ok {
			t.Fatalf("bad log line %q", l)
		}
		if _, err := time.Parse(time.RFC3339Nano, ts); err != nil || !strings.HasSuffix(ts, "Z") {
			t.Fatalf("bad timestamp in %q: %v", l, err)
		}
		out = append(out, rest)
	}
	return out
}

func nsInode(t *testing.T, pid int, ns string) string {
	t.Helper()
	l, err := os.Readlink(fmt.Sprintf("/proc/%d/ns/%s", pid, ns))
	if err != nil {
		t.Fatal(err)
	}
	return l
}

func cgroupProcs(hier, path string) ([]string, error) {
	b, err := os.ReadFile(filepath.Join("/sys/fs/cgroup", hier, path, "cgroup.procs"))
	if err != nil {
		return nil, err
	}
	return strings.Fields(string(b)), nil
}

// catches reports whether process pid runs the program name and has a
// handler for sig (SigCgt).
func catches(pid int, name string, sig syscall.Signal) bool {
	b, err := os.ReadFile(fmt.Sprintf("/proc/%d/status", pid))
	if err != nil {
		return false
	}
	named, caught := false, false
	for _, line := range strings.Split(string(b), "\n") {
		if v, ok := strings.CutPrefix(line, "Name:"); ok {
			named = strings.TrimSpace(v) == name
		}
		if v, ok := strings.CutPrefix(line, "SigCgt:"); ok {
			mask, err := strconv.ParseUint(strings.TrimSpace(v), 16, 64)
			caught = err == nil && mask&(1<<(uint(sig)-1)) != 0
		}
	}
	return named && caught
}

// helperCalls is how many helpers the pod's monitor has run.
func helperCalls(t *testing.T, e *testEnv) int64 {
	t.Helper()
	resp, err := e.rt.call(context.Background(), e.pod, &wire.Request{Op: wire.OpStats})
	if err != nil {
		t.Fatal(err)
	}
	return resp.Stats["helper_calls"]
}

// helpersOf lists the conmon-go-runtime processes whose parent is pid.
func helpersOf(pid int) []int {
	var out []int
	entries, _ := os.ReadDir("/proc")
	for _, ent := range entries {
		p, err := strconv.Atoi(ent.Name())
		if err != nil {
			continue
		}
		if st, err := procfs.ReadStat(p); err != nil || st.PPid != pid {
			continue
		}
		// Not /proc/PID/exe: helpers run from a sealed memfd copy.
		if cmdline, _ := os.ReadFile(fmt.Sprintf("/proc/%d/cmdline", p)); strings.HasPrefix(string(cmdline), "conmon-go-runtime\x00helper") {
			out = append(out, p)
		}
	}
	return out
}

func monitorPid(t *testing.T, e *testEnv) int {
	t.Helper()
	resp, err := e.rt.hello(context.Background(), e.pod)
	if err != nil {
		t.Fatal(err)
	}
	return resp.Pid
}

// newTestEnv prepares a conmon-go, a rootfs and a Runtime, or skips. The
// cleanup stops the pod's monitor and removes cgroups and directories;
// monitor pids added to *e.monitorPids are SIGKILLed.
func newTestEnv(t *testing.T) *testEnv {
	if os.Geteuid() != 0 {
		t.Skip("needs root")
	}
	if testing.Short() {
		t.Skip("integration test")
	}
	busybox := findBusybox(t)
	if busybox == "" {
		t.Skip("no static busybox: apt-get install busybox-static")
	}
	if _, err := os.Stat("/sys/fs/cgroup"); err != nil {
		t.Skip("no cgroup filesystem")
	}
	dir := t.TempDir()
	conmon, seccomp := buildConmon(t, dir)
	// Short run dir: socket paths are limited to 107 bytes.
	run, err := os.MkdirTemp("/tmp", "oci")
	if err != nil {
		t.Fatal(err)
	}
	e := &testEnv{
		t:        t,
		dir:      dir,
		rootfs:   makeRootfs(t, dir, busybox),
		cgParent: fmt.Sprintf("/noded-test-%d", rand.Uint32()),
		pod:      PodID(fmt.Sprintf("%016x%016x", rand.Uint64(), rand.Uint64())),
		seccomp:  seccomp,
	}
	if err := os.MkdirAll(filepath.Join(dir, "logs"), 0o755); err != nil {
		t.Fatal(err)
	}
	e.opts = Options{ConmonPath: conmon, RunDir: run, StateDir: filepath.Join(dir, "state"), MonitorLogLevel: "debug"}
	e.rt, err = New(e.opts)
	if err != nil {
		t.Fatal(err)
	}
	t.Cleanup(func() {
		// Whatever happened, leave no monitor, process, mount or cgroup.
		rt, _ := New(e.opts)
		for _, pod := range append([]PodID{e.pod}, e.extraPods...) {
			_ = rt.StopMonitor(context.Background(), pod)
		}
		for _, pid := range e.monitorPids {
			_ = syscall.Kill(pid, syscall.SIGKILL)
		}
		if b, err := os.ReadFile(wire.MonitorLogPath(run, string(e.pod))); err == nil && t.Failed() {
			t.Logf("monitor log:\n%s", b)
		}
		removeCgroups(t, e.cgParent)
		os.RemoveAll(run)
		if mi, _ := os.ReadFile("/proc/self/mountinfo"); bytes.Contains(mi, []byte(dir)) {
			t.Errorf("mounts left under %s", dir)
		}
	})
	return e
}

func TestIntegration(t *testing.T) {
	e := newTestEnv(t)
	ctx := context.Background()
	run := e.opts.RunDir
	dir := e.dir
	_ = dir
	if err := e.rt.StartMonitor(ctx, e.pod); err != nil {
		t.Fatal(err)
	}
	mpid := monitorPid(t, e)
	e.monitorPids = append(e.monitorPids, mpid)
	if err := e.rt.StartMonitor(ctx, e.pod); err != nil {
		t.Fatalf("StartMonitor is not idempotent: %v", err)
	}
	if got := monitorPid(t, e); got != mpid {
		t.Fatalf("second StartMonitor started another monitor (%d, %d)", mpid, got)
	}
	// The monitor is detached from our session.
	if sid, _ := getsid(mpid); sid != mpid {
		t.Errorf("monitor session %d, want %d", sid, mpid)
	}

	// The pause container.
	pause, _ := e.runCombined("pause", e.spec("pause", "sleep", "1000000"))
	if pause.Status != StatusRunning || pause.StartedAt.IsZero() {
		t.Fatalf("pause: %+v", pause)
	}
	// After the pause container the monitor starts a helper for the pod's
	// next container; it waits for its request.
	waitFor(t, func() bool { return len(helpersOf(mpid)) == 1 })
	// A warm helper that dies (killed by hand, say) is replaced by a new
	// one when the operation comes (the "run op" below).
	warm := helpersOf(mpid)[0]
	// It runs from noded's sealed copy of conmon-go-runtime (sealed.go),
	// so libcontainer starts the containers' init without sealing one.
	if exe, _ := os.Readlink(fmt.Sprintf("/proc/%d/exe", warm)); !strings.HasPrefix(exe, "/memfd:conmon-go-runtime") {
		t.Errorf("the helper runs from %q, not the sealed memfd", exe)
	}
	// It names itself as it starts (else ps would show "4").
	waitFor(t, func() bool {
		comm, _ := os.ReadFile(fmt.Sprintf("/proc/%d/comm", warm))
		return string(comm) == "conmon-go-runti\n"
	})
	if err := syscall.Kill(warm, syscall.SIGKILL); err != nil {
		t.Fatal(err)
	}
	// Until the monitor reaped it, kill(0) still finds the zombie.
	waitFor(t, func() bool { return syscall.Kill(warm, 0) != nil })

	t.Run("run op", func(t *testing.T) {
		_, logPath := e.runCombined("runop", e.spec("runop", "sh", "-c", "echo combined"))
		st := e.wait("runop", 10*time.Second)
		if st.ExitCode != 0 || st.Reason != "Completed" {
			t.Errorf("runop: %+v", st)
		}
		if got := logEntries(t, logPath); len(got) != 1 || got[0] != "stdout F combined" {
			t.Errorf("runop log %q", got)
		}
		if _, err := e.rt.Run(ctx, CreateRequest{Pod: e.pod, ID: "runop", Bundle: filepath.Join(e.dir, "bundles", "runop"), LogPath: logPath}); !errdefs.IsAlreadyExists(err) {
			t.Errorf("second run: %v, want already exists", err)
		}
		e.delete("runop")
	})

	t.Run("join pod namespaces", func(t *testing.T) {
		s := e.spec("joiner", "sh", "-c", "hostname; sleep 1000000")
		joinPod(s, pause.Pid)
		st, logPath := e.run("joiner", s)
		for _, ns := range []string{"net", "ipc", "uts", "pid"} {
			if a, b := nsInode(t, pause.Pid, ns), nsInode(t, st.Pid, ns); a != b {
				t.Errorf("%s namespace %s, pause has %s", ns, b, a)
			}
		}
		if a, b := nsInode(t, pause.Pid, "mnt"), nsInode(t, st.Pid, "mnt"); a == b {
			t.Errorf("mount namespace shared")
		}
		waitFor(t, func() bool { e := logEntries(t, logPath); return len(e) > 0 && e[0] == "stdout F pod-host" })
	})

	t.Run("exec", func(t *testing.T) {
		tests := []struct {
			name           string
			cmd            []string
			timeout        time.Duration
			stdout, stderr string
			code           int32
			timedOut       bool
		}{
			{name: "output", cmd: []string{"sh", "-c", "echo out; echo err >&2; exit 5"}, stdout: "out\n", stderr: "err\n", code: 5},
			{name: "uid", cmd: []string{"id", "-u"}, stdout: "0\n"},
			{name: "timeout", cmd: []string{"sleep", "100"}, timeout: 500 * time.Millisecond, code: 137, timedOut: true},
		}
		for _, tc := range tests {
			t.Run(tc.name, func(t *testing.T) {
				start := time.Now()
				out, errOut, code, err := e.rt.ExecSync(ctx, e.pod, "joiner", tc.cmd, tc.timeout)
				if tc.timedOut {
					if !errors.Is(err, errdefs.ErrDeadlineExceeded) {
						t.Fatalf("want a deadline error, got %v", err)
					}
					if d := time.Since(start); d > 5*time.Second {
						t.Fatalf("timeout enforced after %s", d)
					}
				} else if err != nil {
					t.Fatal(err)
				}
				if string(out) != tc.stdout || string(errOut) != tc.stderr || code != tc.code {
					t.Fatalf("got %q %q %d, want %q %q %d", out, errOut, code, tc.stdout, tc.stderr, tc.code)
				}
			})
		}
		// The timed-out sleep is gone: only the joiner's init is left in
		// its cgroup.
		waitFor(t, func() bool {
			p, err := cgroupProcs("pids", e.cgParent+"/pod"+string(e.pod)+"/joiner")
			return err == nil && len(p) == 1
		})
		if _, _, _, err := e.rt.ExecSync(ctx, e.pod, "nope", []string{"true"}, 0); !errdefs.IsNotFound(err) {
			t.Fatalf("exec in unknown container: %v", err)
		}
	})

	t.Run("streaming exec", func(t *testing.T) {
		testStreamExec(t, e, "joiner", e.cgParent+"/pod"+string(e.pod)+"/joiner")
	})

	t.Run("attach", func(t *testing.T) { testAttach(t, e, "joiner") })

	t.Run("logs", func(t *testing.T) {
		long := 40000
		s := e.spec("echo", "sh", "-c", fmt.Sprintf("echo hello; echo err >&2; head -c %d /dev/zero | tr '\\0' a; echo; printf partial", long))
		_, logPath := e.run("echo", s)
		st := e.wait("echo", 10*time.Second)
		if st.ExitCode != 0 || st.Reason != "Completed" {
			t.Fatalf("state %+v", st)
		}
		got := logEntries(t, logPath)
		var stdout, stderr []string
		for _, l := range got {
			if strings.HasPrefix(l, "stderr ") {
				stderr = append(stderr, l)
			} else {
				stdout = append(stdout, l)
			}
		}
		if len(stderr) != 1 || stderr[0] != "stderr F err" {
			t.Errorf("stderr entries %q", stderr)
		}
		a16 := strings.Repeat("a", 16384)
		want := []string{"stdout F hello", "stdout P " + a16, "stdout P " + a16, "stdout F " + strings.Repeat("a", long-2*16384), "stdout P partial"}
		if strings.Join(stdout, "\n") != strings.Join(want, "\n") {
			t.Errorf("stdout entries:\n%.200q\nwant\n%.200q", stdout, want)
		}
		e.delete("echo")
	})

	t.Run("tty", func(t *testing.T) {
		s := e.spec("tty", "sh", "-c", "echo on-a-tty; [ -t 1 ] && echo is-a-tty")
		s.Process.Terminal = true
		_, logPath := e.run("tty", s, ctrOpts{tty: true, stdin: true})
		e.wait("tty", 10*time.Second)
		got := strings.Join(logEntries(t, logPath), "\n")
		if got != "stdout F on-a-tty\nstdout F is-a-tty" {
			t.Errorf("tty log %q", got)
		}
		e.delete("tty")
	})

	t.Run("process spec", func(t *testing.T) {
		s := e.spec("spec", "sh", "-c", "id -u; id -G; ulimit -n; hostname; cat /proc/sys/net/ipv4/ip_unprivileged_port_start; "+
			"grep -q ' / [^ ]* ro[, ]' /proc/self/mounts && echo ro-root; [ -c /proc/timer_list ] && echo masked; "+
			"grep -E '^(NoNewPrivs|CapBnd)' /proc/self/status; pwd")
		s.Process.User = specs.User{UID: 1000, GID: 1000, AdditionalGids: []uint32{2000, 3000}}
		s.Process.Cwd = "/tmp"
		s.Linux.Sysctl = map[string]string{"net.ipv4.ip_unprivileged_port_start": "80"}
		_, logPath := e.run("spec", s)
		if st := e.wait("spec", 10*time.Second); st.ExitCode != 0 {
			t.Errorf("exit %d", st.ExitCode)
		}
		got := strings.Join(logEntries(t, logPath), "\n")
		want := strings.Join([]string{"1000", "1000 2000 3000", "1024", "pod-host", "80", "ro-root", "masked",
			"CapBnd:\t00000000a80425fb", "NoNewPrivs:\t1", "/tmp"}, "\n")
		if got != "stdout F "+strings.ReplaceAll(want, "\n", "\nstdout F ") {
			t.Errorf("got\n%s\nwant\n%s", got, want)
		}
		e.delete("spec")
	})

	t.Run("seccomp", func(t *testing.T) {
		if !e.seccomp {
			t.Skip("conmon-go built without seccomp (no libseccomp-dev)")
		}
		s := e.spec("seccomp", "sh", "-c", "mkdir /tmp/d && echo made")
		eperm := uint(syscall.EPERM)
		s.Linux.Seccomp = &specs.LinuxSeccomp{
			DefaultAction: specs.ActAllow,
			Architectures: []specs.Arch{specs.ArchX86_64, specs.ArchX86, specs.ArchAARCH64},
			Syscalls:      []specs.LinuxSyscall{{Names: []string{"mkdir", "mkdirat"}, Action: specs.ActErrno, ErrnoRet: &eperm}},
		}
		_, logPath := e.run("seccomp", s)
		if st := e.wait("seccomp", 10*time.Second); st.ExitCode != 1 {
			t.Errorf("exit %d, want 1 (mkdir denied)", st.ExitCode)
		}
		if got := strings.Join(logEntries(t, logPath), "\n"); strings.Contains(got, "made") {
			t.Errorf("mkdir was allowed: %q", got)
		}
		e.delete("seccomp")
	})

	t.Run("exit codes", func(t *testing.T) {
		tests := []struct {
			name   string
			args   []string
			join   bool
			kill   []syscall.Signal
			code   int32
			reason string
		}{
			{name: "exit 3", args: []string{"sh", "-c", "exit 3"}, code: 3, reason: "Error"},
			{name: "sigkill", args: []string{"sleep", "1000"}, kill: []syscall.Signal{syscall.SIGKILL}, code: 137, reason: "Error"},
			// Stop: SIGTERM is ignored by a PID 1 without a handler, so
			// SIGKILL follows, as noded does after the grace period.
			{name: "stop pid 1", args: []string{"sleep", "1000"}, kill: []syscall.Signal{syscall.SIGTERM, syscall.SIGKILL}, code: 137, reason: "Error"},
			{name: "sigterm in pod pid namespace", args: []string{"sleep", "1000"}, join: true, kill: []syscall.Signal{syscall.SIGTERM}, code: 143, reason: "Error"},
		}
		for i, tc := range tests {
			t.Run(tc.name, func(t *testing.T) {
				id := fmt.Sprintf("exit%d", i)
				s := e.spec(id, tc.args...)
				if tc.join {
					joinPod(s, pause.Pid)
				}
				st0, _ := e.run(id, s)
				if len(tc.kill) > 0 {
					// Signal the program, not the runtime's init in the
					// instant before its exec: that init is a Go process,
					// which has a SIGTERM handler even as PID 1.
					waitFor(t, func() bool {
						comm, err := os.ReadFile(fmt.Sprintf("/proc/%d/comm", st0.Pid))
						return err != nil || strings.TrimSpace(string(comm)) == tc.args[0]
					})
				}
				for j, sig := range tc.kill {
					if err := e.rt.Kill(ctx, e.pod, ContainerID(id), sig); err != nil {
						t.Fatal(err)
					}
					if j < len(tc.kill)-1 {
						wctx, cancel := context.WithTimeout(ctx, 500*time.Millisecond)
						_, err := e.rt.Wait(wctx, e.pod, ContainerID(id))
						cancel()
						if !errors.Is(err, context.DeadlineExceeded) {
							t.Fatalf("still running after signal %d: want a timeout, got %v", sig, err)
						}
					}
				}
				st := e.wait(id, 10*time.Second)
				if st.ExitCode != tc.code || st.Reason != tc.reason || st.OOMKilled {
					t.Fatalf("got %d %q oom=%v, want %d %q", st.ExitCode, st.Reason, st.OOMKilled, tc.code, tc.reason)
				}
				if err := e.rt.Kill(ctx, e.pod, ContainerID(id), syscall.SIGKILL); !errors.Is(err, errdefs.ErrFailedPrecondition) {
					t.Fatalf("kill after exit: %v", err)
				}
				// The record survives in the state file.
				fst, err := e.rt.stateFromFile(ContainerID(id))
				if err != nil || fst.ExitCode != tc.code || fst.Status != StatusExited {
					t.Fatalf("state file: %+v %v", fst, err)
				}
				e.delete(id)
				if _, err := e.rt.State(ctx, e.pod, ContainerID(id)); !errdefs.IsNotFound(err) {
					t.Fatalf("state after delete: %v", err)
				}
			})
		}
	})

	t.Run("errors", func(t *testing.T) {
		if _, err := e.rt.Create(ctx, CreateRequest{Pod: e.pod, ID: "pause", Bundle: filepath.Join(e.dir, "bundles", "pause"), LogPath: "/tmp/x.log"}); !errdefs.IsAlreadyExists(err) {
			t.Errorf("create existing: %v", err)
		}
		if _, err := e.rt.Create(ctx, CreateRequest{Pod: e.pod, ID: "nobundle", Bundle: "/nonexistent", LogPath: "/tmp/x.log"}); !errdefs.IsInvalidArgument(err) {
			t.Errorf("create without bundle: %v", err)
		}
		if err := e.rt.Start(ctx, e.pod, "pause"); !errors.Is(err, errdefs.ErrFailedPrecondition) {
			t.Errorf("start running: %v", err)
		}
		// A process that cannot start: the create fails and leaves nothing.
		bad := e.spec("bad", "/nope")
		b, _ := json.Marshal(bad)
		if err := os.MkdirAll(filepath.Join(e.dir, "bundles", "bad"), 0o700); err != nil {
			t.Fatal(err)
		}
		if err := os.WriteFile(filepath.Join(e.dir, "bundles", "bad", "config.json"), b, 0o600); err != nil {
			t.Fatal(err)
		}
		if _, err := e.rt.Create(ctx, CreateRequest{Pod: e.pod, ID: "bad", Bundle: filepath.Join(e.dir, "bundles", "bad"), LogPath: filepath.Join(e.dir, "logs", "bad.log")}); err == nil {
			t.Errorf("create of a missing program succeeded")
		} else if !strings.Contains(err.Error(), "nope") {
			t.Errorf("create error does not name the program: %v", err)
		}
		if _, err := os.Stat(filepath.Join(wire.MonitorDir(run, string(e.pod)), "bad")); !os.IsNotExist(err) {
			t.Errorf("runtime state left after a failed create: %v", err)
		}
		if err := e.rt.Delete(ctx, e.pod, "bad"); !errdefs.IsNotFound(err) {
			t.Errorf("delete after a failed create: %v", err)
		}
		// The monitor does not fit a spec to the host (noded's specgen
		// does): a capability it cannot grant fails the create, loudly,
		// and leaves nothing.
		if !holdsCapability(t, unix.CAP_SYS_RESOURCE) {
			greedy := e.spec("greedy", "true")
			c := greedy.Process.Capabilities
			c.Effective = append(slices.Clone(c.Effective), "CAP_SYS_RESOURCE")
			c.Permitted = append(slices.Clone(c.Permitted), "CAP_SYS_RESOURCE")
			c.Bounding = append(slices.Clone(c.Bounding), "CAP_SYS_RESOURCE")
			b, _ := json.Marshal(greedy)
			dir := filepath.Join(e.dir, "bundles", "greedy")
			if err := os.MkdirAll(dir, 0o700); err != nil {
				t.Fatal(err)
			}
			if err := os.WriteFile(filepath.Join(dir, "config.json"), b, 0o600); err != nil {
				t.Fatal(err)
			}
			if _, err := e.rt.Create(ctx, CreateRequest{Pod: e.pod, ID: "greedy", Bundle: dir, LogPath: filepath.Join(e.dir, "logs", "greedy.log")}); err == nil {
				t.Errorf("create with a capability the monitor lacks succeeded")
				e.delete("greedy")
			}
			if _, err := os.Stat(filepath.Join(wire.MonitorDir(run, string(e.pod)), "greedy")); !os.IsNotExist(err) {
				t.Errorf("runtime state left after a refused create: %v", err)
			}
		}
		// Deleting a created (or running) container kills it first.
		e.create("doomed", e.spec("doomed", "sleep", "1000"))
		e.delete("doomed")
		if _, err := e.rt.State(ctx, e.pod, "doomed"); !errdefs.IsNotFound(err) {
			t.Errorf("state after delete: %v", err)
		}
		if err := e.rt.Kill(ctx, e.pod, "nope", syscall.SIGTERM); !errdefs.IsNotFound(err) {
			t.Errorf("kill unknown: %v", err)
		}
	})

	t.Run("oom", func(t *testing.T) {
		if _, err := os.Stat("/sys/fs/cgroup/memory/memory.oom_control"); err != nil {
			if _, err := os.Stat("/sys/fs/cgroup/cgroup.controllers"); err != nil {
				t.Skip("no memory cgroup")
			}
		}
		limit := int64(32 << 20)
		s := e.spec("oom", "sh", "-c", "echo start; exec dd if=/dev/zero of=/dev/null bs=256M count=1")
		s.Linux.Resources.Memory = &specs.LinuxMemory{Limit: &limit}
		if _, err := os.Stat("/sys/fs/cgroup/memory/memory.memsw.limit_in_bytes"); err == nil {
			s.Linux.Resources.Memory.Swap = &limit // no swap to escape to
		}
		e.run("oom", s)
		st := e.wait("oom", 20*time.Second)
		if !st.OOMKilled || st.Reason != "OOMKilled" || st.ExitCode != 137 {
			t.Fatalf("state %+v", st)
		}
		e.delete("oom")
	})

	t.Run("reopen log", func(t *testing.T) {
		_, logPath := e.run("ticker", e.spec("ticker", "sh", "-c", "while true; do echo tick; sleep 0.05; done"))
		waitFor(t, func() bool { return len(logEntries(t, logPath)) > 0 })
		if err := os.Rename(logPath, logPath+".1"); err != nil {
			t.Fatal(err)
		}
		if err := e.rt.ReopenLog(ctx, e.pod, "ticker"); err != nil {
			t.Fatal(err)
		}
		waitFor(t, func() bool { _, err := os.Stat(logPath); return err == nil && len(logEntries(t, logPath)) > 1 })
		for _, l := range logEntries(t, logPath) {
			if l != "stdout F tick" {
				t.Fatalf("entry %q", l)
			}
		}
		if err := e.rt.Kill(ctx, e.pod, "ticker", syscall.SIGKILL); err != nil {
			t.Fatal(err)
		}
		e.wait("ticker", 10*time.Second)
		e.delete("ticker")
	})

	t.Run("noded restart", func(t *testing.T) {
		late, _ := e.run("late", e.spec("late", "sh", "-c", "sleep 1; exit 7"))
		// "noded" goes away: drop the Runtime; the exit happens meanwhile.
		e.rt = nil
		waitFor(t, func() bool { return !procfs.Alive(late.Pid, 0) })
		rt2, err := New(e.opts)
		if err != nil {
			t.Fatal(err)
		}
		e.rt = rt2
		if err := rt2.StartMonitor(ctx, e.pod); err != nil {
			t.Fatal(err)
		}
		if got := monitorPid(t, e); got != mpid {
			t.Fatalf("a new monitor was started (%d, was %d)", got, mpid)
		}
		var st State
		waitFor(t, func() bool {
			st, err = rt2.State(ctx, e.pod, "late")
			return err == nil && st.Status == StatusExited
		})
		if st.ExitCode != 7 || st.Reason != "Error" {
			t.Fatalf("late: %+v", st)
		}
		list, err := rt2.List(ctx, e.pod)
		if err != nil || len(list) != 3 { // pause, joiner, late
			t.Fatalf("list: %v %v", list, err)
		}
		if st, err := rt2.State(ctx, e.pod, "pause"); err != nil || st.Status != StatusRunning {
			t.Fatalf("pause: %+v %v", st, err)
		}
	})

	t.Run("monitor killed", func(t *testing.T) {
		// A container that exits while no monitor runs, and one that
		// exited before the monitor was killed.
		e.run("orphan", e.spec("orphan", "sh", "-c", "sleep 1; exit 9"))
		if err := syscall.Kill(mpid, syscall.SIGKILL); err != nil {
			t.Fatal(err)
		}
		waitFor(t, func() bool { return syscall.Kill(mpid, 0) != nil })
		st, err := e.rt.State(ctx, e.pod, "late")
		if err != nil || st.Status != StatusExited || st.ExitCode != 7 {
			t.Fatalf("late from the state file: %+v %v", st, err)
		}
		if st, err := e.rt.State(ctx, e.pod, "pause"); err != nil || st.Status != StatusRunning {
			t.Fatalf("pause outlives its monitor: %+v %v", st, err)
		}
		waitFor(t, func() bool {
			st, err = e.rt.State(ctx, e.pod, "orphan")
			return err == nil && st.Status == StatusExited
		})
		if st.Reason != "Unknown" || st.ExitCode != 255 {
			t.Fatalf("orphan: %+v", st)
		}
		// A new monitor adopts what is left and can clean it up.
		if err := e.rt.StartMonitor(ctx, e.pod); err != nil {
			t.Fatal(err)
		}
		mpid = monitorPid(t, e)
		e.monitorPids = append(e.monitorPids, mpid)
		if st, err := e.rt.State(ctx, e.pod, "late"); err != nil || st.ExitCode != 7 {
			t.Fatalf("late after adoption: %+v %v", st, err)
		}
		if st, err := e.rt.State(ctx, e.pod, "pause"); err != nil || st.Status != StatusRunning {
			t.Fatalf("pause after adoption: %+v %v", st, err)
		}
		out, _, code, err := e.rt.ExecSync(ctx, e.pod, "pause", []string{"echo", "adopted"}, 5*time.Second)
		if err != nil || code != 0 || string(out) != "adopted\n" {
			t.Fatalf("exec in adopted container: %q %d %v", out, code, err)
		}
		for _, id := range []ContainerID{"late", "orphan"} {
			if err := e.rt.Delete(ctx, e.pod, id); err != nil {
				t.Fatal(err)
			}
		}
	})

	t.Run("stop without a helper", func(t *testing.T) {
		// A container with a PID namespace of its own is stopped by
		// signalling its init: the monitor does it, no helper process.
		// (As PID 1 of its namespace it gets only signals it handles:
		// wait until the shell, not libcontainer's init before it, has
		// set its trap.)
		qs, _ := e.run("quick", e.spec("quick", "sh", "-c", "trap 'exit 143' TERM; sleep 1000 & wait"))
		waitFor(t, func() bool { return catches(qs.Pid, "sh", syscall.SIGTERM) })
		before := helperCalls(t, e)
		if err := e.rt.Kill(ctx, e.pod, "quick", syscall.SIGTERM); err != nil {
			t.Fatal(err)
		}
		if st := e.wait("quick", 10*time.Second); st.ExitCode != 128+int32(syscall.SIGTERM) {
			t.Fatalf("quick: %+v", st)
		}
		if after := helperCalls(t, e); after != before {
			t.Errorf("kill ran %d helpers, want none", after-before)
		}
		e.delete("quick")
	})

	t.Run("runtime state removed by hand", func(t *testing.T) {
		// An operator (or a cleanup script) removes libcontainer's state
		// of a running container: stop and delete still work, through the
		// cgroups the bundle names, and leave no process or cgroup.
		st, _ := e.run("lost", e.spec("lost", "sh", "-c", "trap '' TERM; sleep 1000 & wait"))
		if err := os.RemoveAll(filepath.Join(wire.MonitorDir(run, string(e.pod)), "lost")); err != nil {
			t.Fatal(err)
		}
		if err := e.rt.Kill(ctx, e.pod, "lost", syscall.SIGKILL); err != nil {
			t.Fatalf("kill without runtime state: %v", err)
		}
		if got := e.wait("lost", 10*time.Second); got.ExitCode != 137 {
			t.Fatalf("lost: %+v", got)
		}
		if err := e.rt.Delete(ctx, e.pod, "lost"); err != nil {
			t.Fatalf("delete without runtime state: %v", err)
		}
		if procfs.Alive(st.Pid, 0) {
			t.Errorf("init %d still alive", st.Pid)
		}
		for _, h := range []string{"memory", "pids", "cpu", "devices", "freezer"} {
			if _, err := os.Stat(filepath.Join("/sys/fs/cgroup", h, e.cgParent, "pod"+string(e.pod), "lost")); err == nil {
				t.Errorf("cgroup left in %s", h)
			}
		}
	})

	t.Run("cleanup", func(t *testing.T) {
		for _, id := range []ContainerID{"joiner", "pause"} {
			if err := e.rt.Kill(ctx, e.pod, id, syscall.SIGKILL); err != nil {
				t.Fatal(err)
			}
			e.wait(string(id), 10*time.Second)
			e.delete(string(id))
		}
		if err := e.rt.StopMonitor(ctx, e.pod); err != nil {
			t.Fatal(err)
		}
		waitFor(t, func() bool { return syscall.Kill(mpid, 0) != nil })
		if _, err := os.Stat(wire.SocketPath(run, string(e.pod))); !os.IsNotExist(err) {
			t.Errorf("socket left: %v", err)
		}
		if _, err := os.Stat(wire.MonitorDir(run, string(e.pod))); !os.IsNotExist(err) {
			t.Errorf("monitor dir left: %v", err)
		}
		if files, _ := os.ReadDir(e.opts.StateDir); len(files) != 0 {
			t.Errorf("state files left: %v", files)
		}
		for _, h := range []string{"memory", "pids", "cpu", "devices", "freezer"} {
			if _, err := os.Stat(filepath.Join("/sys/fs/cgroup", h, e.cgParent, "pod"+string(e.pod), "pause")); err == nil {
				t.Errorf("cgroup left in %s", h)
			}
		}
	})
}

// ownOOMScoreAdj is this process's oom_score_adj, which noded's specgen
// uses as the floor of a container's.
func ownOOMScoreAdj(t *testing.T) int {
	t.Helper()
	b, err := os.ReadFile("/proc/self/oom_score_adj")
	if err != nil {
		t.Fatal(err)
	}
	v, err := strconv.Atoi(strings.TrimSpace(string(b)))
	if err != nil {
		t.Fatal(err)
	}
	return v
}

// holdsCapability reports whether capability c is in this process's
// bounding set (and so in the monitor's, which inherits it).
func holdsCapability(t *testing.T, c int) bool {
	t.Helper()
	b, err := os.ReadFile("/proc/self/status")
	if err != nil {
		t.Fatal(err)
	}
	for _, line := range strings.Split(string(b), "\n") {
		if v, ok := strings.CutPrefix(line, "CapBnd:"); ok {
			mask, err := strconv.ParseUint(strings.TrimSpace(v), 16, 64)
			if err != nil {
				t.Fatal(err)
			}
			return mask&(1<<uint(c)) != 0
		}
	}
	t.Fatal("no CapBnd in /proc/self/status")
	return false
}

func waitFor(t *testing.T, cond func() bool) {
	t.Helper()
	deadline := time.Now().Add(10 * time.Second)
	for !cond() {
		if time.Now().After(deadline) {
			t.Fatal("condition not met in 10s")
		}
		time.Sleep(50 * time.Millisecond)
	}
}

func getsid(pid int) (int, error) {
	sid, _, errno := syscall.RawSyscall(syscall.SYS_GETSID, uintptr(pid), 0, 0)
	if errno != 0 {
		return 0, errno
	}
	return int(sid), nil
}

// removeCgroups removes the test's cgroup tree from every hierarchy,
// deepest first.
func removeCgroups(t *testing.T, parent string) {
	roots, _ := filepath.Glob("/sys/fs/cgroup/*")
	roots = append(roots, "/sys/fs/cgroup")
	for _, r := range roots {
		top := filepath.Join(r, parent)
		if _, err := os.Stat(top); err != nil {
			continue
		}
		var dirs []string
		if err := filepath.WalkDir(top, func(p string, d os.DirEntry, err error) error {
			if err == nil && d.IsDir() {
				dirs = append(dirs, p)
			}
			return nil
		}); err != nil {
			t.Errorf("walking cgroup %s: %v", top, err)
		}
		for i := len(dirs) - 1; i >= 0; i-- {
			if err := os.Remove(dirs[i]); err != nil && !os.IsNotExist(err) {
				t.Errorf("cgroup %s left: %v", dirs[i], err)
			}
		}
	}
}
