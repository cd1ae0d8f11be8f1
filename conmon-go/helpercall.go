package main

import (
	"encoding/json"
	"fmt"
	"io"
	"os"
	"time"

	"golang.org/x/sys/unix"

	"github.com/noded-dev/noded/conmon-go/internal/helperapi"
	"github.com/noded-dev/noded/internal/oci/wire"
)

var traceHelpers = os.Getenv("NODED_HELPER_TRACE") != ""

// helperTimeout bounds one libcontainer operation.
const helperTimeout = 2 * time.Minute

// A warm helper is used only while younger than warmUse: it gives up
// waiting for its request after helperapi.WarmIdle, and a request must not
// race that.
const warmUse = helperapi.WarmIdle - 2*time.Second

// helperProc is a started helper that waits for its request.
type helperProc struct {
	pid    int
	req    int      // our end of the request socket
	out    *os.File // read end of the helper's stdout
	exited chan struct{}
	born   time.Time
}

func (h *helperProc) close() {
	unix.Close(h.req)
	h.out.Close()
}

// startHelper starts a conmon-go-runtime helper. It gets its request (and
// the files of the request) on a unix socket, fd 0, so that it can start
// before the request is known; it answers on its stdout. The caller holds
// opMu (see callHelper).
func (m *monitor) startHelper() (*helperProc, error) {
	fds, err := unix.Socketpair(unix.AF_UNIX, unix.SOCK_STREAM|unix.SOCK_CLOEXEC, 0)
	if err != nil {
		return nil, err
	}
	child := os.NewFile(uintptr(fds[1]), "helper-request")
	defer child.Close()
	outR, outW, err := os.Pipe()
	if err != nil {
		unix.Close(fds[0])
		return nil, err
	}
	attr := &os.ProcAttr{
		Dir:   "/",
		Env:   os.Environ(),
		Files: []*os.File{child, outW, os.Stderr},
	}
	proc, err := os.StartProcess(m.runtime, []string{"conmon-go-runtime", "helper"}, attr)
	outW.Close()
	if err != nil {
		unix.Close(fds[0])
		outR.Close()
		return nil, fmt.Errorf("starting helper: %w", err)
	}
	h := &helperProc{pid: proc.Pid, req: fds[0], out: outR, exited: make(chan struct{}), born: time.Now()}
	m.reaper.track(h.pid, func(unix.WaitStatus, bool) { close(h.exited) })
	_ = proc.Release()
	return h, nil
}

// prewarm starts a helper for an operation that is about to come (the
// pod's first container after its pause container, say), so that the
// operation does not wait for a process start: ~10–15 ms on this kind of
// host. It runs after the current request was answered and does nothing if
// any helper ran meanwhile (that operation did not wait for the warm one).
func (m *monitor) prewarm() {
	gen := m.helperCalls.Load()
	go func() {
		m.opMu.Lock()
		defer m.opMu.Unlock()
		if m.helperCalls.Load() != gen || m.warm != nil || m.quitting.Load() {
			return
		}
		h, err := m.startHelper()
		if err != nil {
			m.log.Warnf("prewarming a helper: %v", err)
			return
		}
		m.warm = h
		m.reaper.kick()
	}()
}

// takeWarm returns the warm helper if it can still serve a request. The
// caller holds opMu.
func (m *monitor) takeWarm() *helperProc {
	h := m.warm
	m.warm = nil
	if h == nil {
		return nil
	}
	select {
	case <-h.exited:
	default:
		if time.Since(h.born) < warmUse {
			return h
		}
		_ = m.reaper.kill(h.pid, unix.SIGKILL)
	}
	h.close()
	return nil
}

// dropWarm kills the warm helper (at shutdown). The caller holds opMu.
func (m *monitor) dropWarm() {
	if h := m.warm; h != nil {
		m.warm = nil
		_ = m.reaper.kill(h.pid, unix.SIGKILL)
		h.close()
	}
}

// callHelper runs one libcontainer operation in a helper: the warm one if
// there is one, else a new one. files go with the request; its fd fields
// name them as 3 + their index (see helperapi.Request). The
// caller holds opMu (no stray is reaped meanwhile) and, once callHelper
// returned, tracks the pids the helper started: they are our children by
// then, because callHelper waits for the helper's exit.
func (m *monitor) callHelper(req *helperapi.Request, files ...*os.File) (*helperapi.Response, error) {
	t0 := time.Now()
	m.helperCalls.Add(1)
	req.Version = helperapi.Version
	req.Root = m.root
	req.LogLevel = m.logLevel
	b, _ := json.Marshal(req)
	warm := "warm"
	h := m.takeWarm()
	if h != nil {
		if err := sendRequest(h.req, b, files); err != nil {
			// The warm helper died (killed by hand, say): use a new one.
			m.log.Warnf("warm helper %d did not take the request: %v", h.pid, err)
			_ = m.reaper.kill(h.pid, unix.SIGKILL)
			h.close()
			h = nil
		}
	}
	if h == nil {
		warm = "cold"
		var err error
		if h, err = m.startHelper(); err != nil {
			return nil, err
		}
		if err := sendRequest(h.req, b, files); err != nil {
			_ = m.reaper.kill(h.pid, unix.SIGKILL)
			<-h.exited
			h.close()
			return nil, fmt.Errorf("helper %s: sending the request: %w", req.Op, err)
		}
	}
	defer h.close()
	tSent := time.Now()
	m.reaper.kick()

	_ = h.out.SetReadDeadline(time.Now().Add(helperTimeout))
	out, rerr := io.ReadAll(io.LimitReader(h.out, 1<<20))
	tAnswer := time.Now()
	if rerr != nil {
		_ = m.reaper.kill(h.pid, unix.SIGKILL)
	}
	select {
	case <-h.exited:
	case <-time.After(helperTimeout):
		_ = m.reaper.kill(h.pid, unix.SIGKILL)
		<-h.exited
	}
	if traceHelpers {
		traceHelper(fmt.Sprintf("monitor-trace %s (%s): sent %s answer %s reaped %s\n", req.Op, warm, tSent.Sub(t0), tAnswer.Sub(t0), time.Since(t0)))
	}
	if rerr != nil {
		return nil, fmt.Errorf("helper %s: %w", req.Op, rerr)
	}
	var resp helperapi.Response
	if err := json.Unmarshal(out, &resp); err != nil {
		return nil, fmt.Errorf("helper %s died without an answer (see the monitor log)", req.Op)
	}
	if resp.Error != "" {
		code := resp.Code
		if code == "" {
			code = wire.CodeInternal
		}
		return &resp, errf(code, "%s", resp.Error)
	}
	return &resp, nil
}

// sendRequest writes the request on the helper's socket, the files going
// along as SCM_RIGHTS with the first bytes, then shuts the socket for
// writing: end of request.
func sendRequest(sock int, b []byte, files []*os.File) error {
	fds := make([]int, len(files))
	for i, f := range files {
		fds[i] = int(f.Fd())
	}
	var oob []byte
	if len(fds) > 0 {
		oob = unix.UnixRights(fds...)
	}
	for len(b) > 0 || oob != nil {
		n, err := unix.SendmsgN(sock, b, oob, nil, unix.MSG_NOSIGNAL)
		if err == unix.EINTR {
			continue
		}
		if err != nil {
			return err
		}
		b, oob = b[n:], nil
	}
	return unix.Shutdown(sock, unix.SHUT_WR)
}

// traceHelper appends a line to the file NODED_HELPER_TRACE names
// (profiling).
func traceHelper(line string) {
	f, err := os.OpenFile(os.Getenv("NODED_HELPER_TRACE"), os.O_WRONLY|os.O_APPEND|os.O_CREATE, 0o600)
	if err != nil {
		return
	}
	_, _ = f.WriteString(line)
	f.Close()
}
