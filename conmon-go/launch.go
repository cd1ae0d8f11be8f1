package main

import (
	"bufio"
	"fmt"
	"os"
	"os/exec"
	"strconv"
	"strings"
	"syscall"
	"time"

	"github.com/noded-dev/noded/internal/oci/wire"
)

// Exit codes of "conmon-go start".
const (
	exitOK      = 0
	exitFailed  = 1
	exitUsage   = 2
	exitRunning = 3 // a monitor for this pod already holds its lock
)

// readyTimeout bounds how long the launcher waits for the monitor.
const readyTimeout = 30 * time.Second

// launch is the first half of a double fork: it starts the monitor in a new
// session, with stdio on the monitor log file, waits until the monitor
// listens (or fails), prints the monitor's pid and exits. The monitor is then
// reparented to init (or the nearest subreaper), so noded only waits for
// this short-lived launcher and never for a monitor.
func launch(args []string) int {
	o, err := parseFlags("start", args)
	if err != nil {
		fmt.Fprintln(os.Stderr, "conmon-go start:", err)
		return exitUsage
	}
	for _, d := range []string{o.runDir, o.stateDir} {
		if err := os.MkdirAll(d, 0o700); err != nil {
			fmt.Fprintln(os.Stderr, "conmon-go start:", err)
			return exitFailed
		}
	}
	logf, err := os.OpenFile(wire.MonitorLogPath(o.runDir, o.pod), os.O_WRONLY|os.O_APPEND|os.O_CREATE, 0o600)
	if err != nil {
		fmt.Fprintln(os.Stderr, "conmon-go start:", err)
		return exitFailed
	}
	defer logf.Close()
	devnull, err := os.Open(os.DevNull)
	if err != nil {
		fmt.Fprintln(os.Stderr, "conmon-go start:", err)
		return exitFailed
	}
	defer devnull.Close()
	r, w, err := os.Pipe()
	if err != nil {
		fmt.Fprintln(os.Stderr, "conmon-go start:", err)
		return exitFailed
	}
	self, err := os.Executable()
	if err != nil {
		self = "/proc/self/exe"
	}
	cmd := exec.Command(self, "monitor", "--pod", o.pod, "--run-dir", o.runDir,
		"--state-dir", o.stateDir, "--log-level", o.logLevel, "--runtime", o.runtime, "--ready-fd", "3")
	cmd.Stdin = devnull
	cmd.Stdout = logf
	cmd.Stderr = logf
	cmd.ExtraFiles = []*os.File{w}
	cmd.Dir = "/"
	// One P is plenty for a monitor and keeps its footprint small.
	cmd.Env = append(withoutEnv(os.Environ(), "GOMAXPROCS"), "GOMAXPROCS=1")
	cmd.SysProcAttr = &syscall.SysProcAttr{Setsid: true}
	if err := cmd.Start(); err != nil {
		fmt.Fprintln(os.Stderr, "conmon-go start:", err)
		return exitFailed
	}
	w.Close()

	type result struct {
		line string
		err  error
	}
	ch := make(chan result, 1)
	go func() {
		line, err := bufio.NewReader(r).ReadString('\n')
		ch <- result{strings.TrimSpace(line), err}
	}()
	var res result
	select {
	case res = <-ch:
	case <-time.After(readyTimeout):
		_ = cmd.Process.Kill()
		_, _ = cmd.Process.Wait()
		fmt.Fprintf(os.Stderr, "conmon-go start: monitor not ready after %s\n", readyTimeout)
		return exitFailed
	}
	switch {
	case strings.HasPrefix(res.line, "ok "):
		// Do not wait: the monitor outlives us.
		_ = cmd.Process.Release()
		fmt.Println(strings.TrimPrefix(res.line, "ok "))
		return exitOK
	case strings.HasPrefix(res.line, "running"):
		_, _ = cmd.Process.Wait()
		fmt.Fprintf(os.Stderr, "conmon-go start: a monitor for pod %s is already running\n", o.pod)
		return exitRunning
	default:
		_, _ = cmd.Process.Wait()
		msg := strings.TrimPrefix(res.line, "error ")
		if msg == "" {
			msg = "monitor exited before it was ready (see " + wire.MonitorLogPath(o.runDir, o.pod) + ")"
		}
		fmt.Fprintln(os.Stderr, "conmon-go start:", msg)
		return exitFailed
	}
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

// readyWriter reports the monitor's readiness to the launcher.
type readyWriter struct{ f *os.File }

func newReadyWriter(fd int) *readyWriter {
	if fd < 0 {
		return &readyWriter{}
	}
	return &readyWriter{f: os.NewFile(uintptr(fd), "ready")}
}

func (r *readyWriter) send(format string, args ...any) {
	if r.f == nil {
		return
	}
	fmt.Fprintf(r.f, format+"\n", args...)
	r.f.Close()
	r.f = nil
}

func (r *readyWriter) ok() { r.send("ok %s", strconv.Itoa(os.Getpid())) }
