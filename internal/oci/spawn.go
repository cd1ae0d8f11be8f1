package oci

import (
	"bufio"
	"context"
	"errors"
	"fmt"
	"os"
	"os/exec"
	"os/signal"
	"strings"
	"sync"
	"syscall"
	"time"

	"github.com/noded-dev/noded/internal/errdefs"
	"github.com/noded-dev/noded/internal/oci/wire"
)

// readyTimeout bounds how long StartMonitor waits for a new monitor to
// listen.
const readyTimeout = 30 * time.Second

// errMonitorRunning: another monitor holds the pod's lock.
var errMonitorRunning = errors.New("a monitor for the pod is already running")

// spawnMonitor starts `conmon-go monitor` for the pod and returns once it
// listens, or failed. The monitor runs in its own session with stdin on
// /dev/null and stdout/stderr on its log file; it reports readiness on fd
// 3 ("ok PID", "running", or "error MSG").
//
// The monitor is noded's child until noded exits (then init or the nearest
// subreaper inherits it): spawning it directly instead of through a
// double-forking launcher saves a whole Go process start per pod, which
// on a paravirtualised node is ~10 ms of CPU. Its exit is collected by the
// reaper, never waited for by a request.
func (r *Runtime) spawnMonitor(ctx context.Context, pod PodID) (pid int, err error) {
	logf, err := os.OpenFile(wire.MonitorLogPath(r.o.RunDir, string(pod)), os.O_WRONLY|os.O_APPEND|os.O_CREATE, 0o600)
	if err != nil {
		return 0, err
	}
	defer logf.Close()
	devnull, err := os.Open(os.DevNull)
	if err != nil {
		return 0, err
	}
	defer devnull.Close()
	rd, wr, err := os.Pipe()
	if err != nil {
		return 0, err
	}
	defer rd.Close()

	// Not CommandContext: the monitor outlives the request.
	cmd := exec.Command(r.o.ConmonPath, "monitor", "--pod", string(pod), "--run-dir", r.o.RunDir,
		"--state-dir", r.o.StateDir, "--log-level", r.o.MonitorLogLevel, "--runtime", r.o.RuntimePath, "--ready-fd", "3")
	cmd.Stdin, cmd.Stdout, cmd.Stderr = devnull, logf, logf
	cmd.ExtraFiles = []*os.File{wr}
	r.sealedMu.RLock()
	if r.sealedRuntime != nil {
		cmd.ExtraFiles = append(cmd.ExtraFiles, r.sealedRuntime)
		cmd.Args = append(cmd.Args, "--runtime-fd", "4")
	}
	cmd.Dir = "/"
	// One P is plenty for a monitor and keeps its footprint small.
	cmd.Env = append(withoutEnv(os.Environ(), "GOMAXPROCS"), "GOMAXPROCS=1")
	cmd.SysProcAttr = &syscall.SysProcAttr{Setsid: true}
	err = cmd.Start()
	r.sealedMu.RUnlock()
	wr.Close()
	if err != nil {
		return 0, err
	}
	pid = cmd.Process.Pid

	lines := make(chan string, 1)
	go func() {
		line, _ := bufio.NewReader(rd).ReadString('\n')
		lines <- strings.TrimSpace(line)
	}()
	timer := time.NewTimer(readyTimeout)
	defer timer.Stop()
	var line string
	select {
	case line = <-lines:
	case <-ctx.Done():
		err = ctx.Err()
	case <-timer.C:
		err = fmt.Errorf("monitor not ready after %s (see %s)", readyTimeout, wire.MonitorLogPath(r.o.RunDir, string(pod)))
	}
	if err != nil {
		_ = cmd.Process.Kill()
		_ = cmd.Wait()
		return 0, err
	}
	switch {
	case strings.HasPrefix(line, "ok "):
		r.reaper.adopt(cmd.Process)
		return pid, nil
	case line == "running":
		_ = cmd.Wait()
		return 0, errMonitorRunning
	default:
		_ = cmd.Wait()
		msg := strings.TrimPrefix(line, "error ")
		if msg == "" {
			logPath := wire.MonitorLogPath(r.o.RunDir, string(pod))
			msg = fmt.Sprintf("monitor exited before it was ready (%s ends with %q)", logPath, lastLine(logPath))
		}
		return 0, errdefs.Unavailable("starting the monitor of pod %s: %s", pod, msg)
	}
}

// lastLine returns the last non-empty line of a (log) file's last KiB.
func lastLine(path string) string {
	f, err := os.Open(path)
	if err != nil {
		return ""
	}
	defer f.Close()
	buf := make([]byte, 1024)
	off := int64(0)
	if fi, err := f.Stat(); err == nil && fi.Size() > int64(len(buf)) {
		off = fi.Size() - int64(len(buf))
	}
	n, _ := f.ReadAt(buf, off)
	text := strings.TrimRight(string(buf[:n]), "\n")
	return text[strings.LastIndexByte(text, '\n')+1:]
}

func withoutEnv(env []string, key string) []string {
	out := env[:0:0]
	for _, kv := range env {
		if !strings.HasPrefix(kv, key+"=") {
			out = append(out, kv)
		}
	}
	return out
}

// reaper collects the exit status of the monitors this process started,
// so that none stays a zombie. One goroutine serves all of them, woken by
// SIGCHLD; it waits only for the pids it was given, never for any child
// (other code, such as os/exec for the CNI plugins, waits for its own).
//
// The goroutine is the Runtime's: it starts with the first monitor the
// Runtime spawns and ends at Runtime.Close (close), which waits for it.
//
// Lock rule: mu guards pids, closed and the loop's channels; it is never
// held across a blocking call (wait4 is called with WNOHANG).
type reaper struct {
	mu     sync.Mutex
	pids   map[int]struct{}
	kick   chan struct{}
	quit   chan struct{} // closed by close
	done   chan struct{} // closed when the loop has ended; nil until it started
	closed bool
}

// adopt hands a running child to the reaper. After close it is only
// released: noded is shutting down, and once it exits init reaps it.
func (rp *reaper) adopt(p *os.Process) {
	rp.mu.Lock()
	if rp.closed {
		rp.mu.Unlock()
		_ = p.Release()
		return
	}
	if rp.done == nil {
		rp.startLocked()
	}
	rp.pids[p.Pid] = struct{}{}
	rp.mu.Unlock()
	// The handle (a pidfd) is not needed: the pid stays ours until reaped.
	_ = p.Release()
	// The child may have exited before it was registered: look now.
	select {
	case rp.kick <- struct{}{}:
	default:
	}
}

// startLocked starts the loop; the caller holds mu.
func (rp *reaper) startLocked() {
	rp.pids = map[int]struct{}{}
	rp.kick = make(chan struct{}, 1)
	rp.quit = make(chan struct{})
	rp.done = make(chan struct{})
	sig := make(chan os.Signal, 1)
	signal.Notify(sig, syscall.SIGCHLD)
	go rp.loop(sig)
}

// close ends the loop, if it runs, and waits until it has; it may be
// called more than once.
func (rp *reaper) close() {
	rp.mu.Lock()
	if !rp.closed {
		rp.closed = true
		if rp.quit != nil {
			close(rp.quit)
		}
	}
	done := rp.done
	rp.mu.Unlock()
	if done != nil {
		<-done
	}
}

func (rp *reaper) loop(sig chan os.Signal) {
	defer close(rp.done)
	defer signal.Stop(sig)
	for {
		select {
		case <-rp.quit:
			// A last pass: a monitor that exited just now is no zombie.
			rp.reap()
			return
		case <-sig:
		case <-rp.kick:
		}
		rp.reap()
	}
}

// reap collects every adopted monitor that has exited.
func (rp *reaper) reap() {
	rp.mu.Lock()
	defer rp.mu.Unlock()
	for pid := range rp.pids {
		var ws syscall.WaitStatus
		got, err := syscall.Wait4(pid, &ws, syscall.WNOHANG, nil)
		if got == pid || errors.Is(err, syscall.ECHILD) {
			delete(rp.pids, pid)
		}
	}
}
