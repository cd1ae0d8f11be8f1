package main

import (
	"encoding/json"
	"fmt"
	"io"
	"os"
	"sync"
	"sync/atomic"
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

// helperPool runs the monitor's libcontainer operations, each in a
// conmon-go-runtime helper process, one at a time.
//
// It owns opMu, the warm helper and the count of helpers used. It does not
// own the reaper: it is given it, to track the helpers it starts, kill
// them, and kick a reaping pass once an operation is over.
//
// Lock rules: opMu is taken only through withOpMu; the fn it runs may take
// a container's mu and the reaper's lock (track, kill), never the
// container table's. The reaper only TryLocks opMu, while holding its own
// lock, so it never waits for it. warm is guarded by opMu; calls and
// quitting are atomic.
type helperPool struct {
	runtime string // conmon-go-runtime
	// criuRuntime is conmon-go-runtime-criu, the helper built with
	// checkpoint/restore: started (never warm) for those operations only.
	criuRuntime string
	root        string // libcontainer root, sent with every request
	logLevel    string // the helpers' log level, sent with every request
	log         *logger
	reaper      *reaper
	trim        *trimmer

	// opMu serialises the helpers (libcontainer operations); the reaper
	// reaps strays only while it is free (it shares the mutex, and only
	// TryLocks it). Everything that starts or ends processes the reaper
	// must not take for strays holds it, through withOpMu.
	opMu *sync.Mutex
	// warm is a helper started ahead of the next operation (nil if none);
	// guarded by opMu. calls counts the helpers used, so that a late
	// prewarm can tell that the operation it was for has passed.
	warm     *helperProc
	calls    atomic.Int64
	quitting atomic.Bool // shutting down: no more prewarming
	// lastExec is when the last exec's helper was called; guarded by opMu.
	lastExec time.Time
}

// execBurst: an exec this soon after the one before is taken as part of a
// burst (probes of several containers, a script of kubectl execs, a
// readiness loop), and the next exec's helper is started ahead. A lone
// exec leaves no helper behind; after a burst one idles at most
// helperapi.WarmIdle (its memory is the price: ~1.5 MiB private).
const execBurst = time.Second

// execCalled is told of each exec's helper call, and prewarms a helper in
// a burst (when call did not already start one ahead). The caller holds
// opMu.
func (p *helperPool) execCalled() {
	now := time.Now()
	if now.Sub(p.lastExec) < execBurst {
		p.prewarm()
	}
	p.lastExec = now
}

// spawnAhead starts the next exec's helper while this exec's helper works,
// in a burst: a helper started after the exec (prewarm) is still starting
// its Go runtime when the next request of a back-to-back burst arrives
// (~1–2 ms of a 10 ms ExecSync), and its fork and exec hold opMu meanwhile;
// started here, both happen while the monitor only waits for an answer.
// The caller holds opMu.
func (p *helperPool) spawnAhead(op string) {
	if startsAhead(op, p.warm != nil, p.quitting.Load(), time.Since(p.lastExec)) {
		p.spawnWarm("starting the next exec's helper")
	}
}

// spawnWarm starts a helper and keeps it as the warm one; a failure is
// only logged (the operation starts its own). The caller holds opMu.
func (p *helperPool) spawnWarm(what string) {
	h, err := p.spawn()
	if err != nil {
		p.log.Warnf("%s: %v", what, err)
		return
	}
	p.warm = h
}

// startsAhead reports whether a call of op starts the next helper while
// its own works: only an exec in a burst (the one before was called less
// than execBurst ago), when no helper is warm and the monitor is not
// shutting down.
func startsAhead(op string, warm, quitting bool, sinceLastExec time.Duration) bool {
	return op == helperapi.OpExec && !warm && !quitting && sinceLastExec < execBurst
}

// newHelperPool returns the pool of the helpers at path runtime; opMu is
// the mutex r was made with (newReaper), so that no stray is reaped while
// a helper runs.
func newHelperPool(runtime, criuRuntime, root, logLevel string, opMu *sync.Mutex, r *reaper, trim *trimmer, log *logger) *helperPool {
	return &helperPool{runtime: runtime, criuRuntime: criuRuntime, root: root, logLevel: logLevel, opMu: opMu, reaper: r, trim: trim, log: log}
}

// needsCRIU reports whether op runs in the helper with checkpoint/restore.
func needsCRIU(op string) bool {
	return op == helperapi.OpCheckpoint || op == helperapi.OpRestore
}

// spawn starts a conmon-go-runtime helper. It gets its request (and
// the files of the request) on a unix socket, fd 0, so that it can start
// before the request is known; it answers on its stdout. The caller holds
// opMu (see call).
func (p *helperPool) spawn() (*helperProc, error) {
	return p.spawnOf(p.runtime)
}

// spawnOf starts the helper binary at path (spawn's).
func (p *helperPool) spawnOf(path string) (*helperProc, error) {
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
	proc, err := os.StartProcess(path, []string{"conmon-go-runtime", "helper"}, attr)
	outW.Close()
	if err != nil {
		unix.Close(fds[0])
		outR.Close()
		return nil, fmt.Errorf("starting helper: %w", err)
	}
	h := &helperProc{pid: proc.Pid, req: fds[0], out: outR, exited: make(chan struct{}), born: time.Now()}
	p.reaper.track(h.pid, func(unix.WaitStatus, bool) {
		close(h.exited)
		// A warm helper that waited in vain exits by itself, and its
		// reaping (outside any call) maps code back: ~260 KiB that would
		// stay until the next operation, which for a pod in
		// ImagePullBackOff may not come for long. After a call a whole
		// trim is already scheduled; this only moves it.
		p.trim.scheduleCode()
	})
	_ = proc.Release()
	return h, nil
}

// prewarm starts a helper for an operation that is about to come (the
// pod's first container after its pause container, the next exec of a
// burst), so that the
// operation does not wait for a process start: ~10–15 ms on this kind of
// host. It runs after the current request was answered and does nothing if
// any helper ran meanwhile (that operation did not wait for the warm one).
func (p *helperPool) prewarm() {
	gen := p.calls.Load()
	go p.withOpMu(func() {
		if p.calls.Load() == gen && p.warm == nil && !p.quitting.Load() {
			p.spawnWarm("prewarming a helper")
		}
	})
}

// takeWarm returns the warm helper if it can still serve a request. The
// caller holds opMu.
func (p *helperPool) takeWarm() *helperProc {
	h := p.warm
	p.warm = nil
	if h == nil {
		return nil
	}
	select {
	case <-h.exited:
	default:
		if time.Since(h.born) < warmUse {
			return h
		}
		_ = p.reaper.kill(h.pid, unix.SIGKILL)
	}
	h.close()
	return nil
}

// dropWarm kills the warm helper. The caller holds opMu.
func (p *helperPool) dropWarm() {
	if h := p.warm; h != nil {
		p.warm = nil
		_ = p.reaper.kill(h.pid, unix.SIGKILL)
		h.close()
	}
}

// stop ends prewarming and kills the warm helper (at shutdown).
func (p *helperPool) stop() {
	p.quitting.Store(true)
	p.withOpMu(p.dropWarm)
}

// used returns how many helpers have been used (the stats request).
func (p *helperPool) used() int64 { return p.calls.Load() }

// withOpMu runs fn with opMu held, then kicks the reaper. Everything that
// starts or ends processes the reaper must not take for strays goes through
// it: the helpers (which start container inits and exec'd processes), the
// release of a created container through its exec fifo, the warm helper.
// While opMu is held no stray is reaped, so fn can track a process a
// helper started before its exit status could be taken; the kick after the
// unlock reaps what exited meanwhile, strays included (a pass asked for
// while opMu is held cannot reap them).
func (p *helperPool) withOpMu(fn func()) {
	p.opMu.Lock()
	defer p.reaper.kick()
	defer p.opMu.Unlock()
	fn()
}

// run runs one libcontainer operation in a helper (call) under withOpMu,
// for the operations that start no process of their own to track (kill,
// destroy, inspect).
func (p *helperPool) run(req *helperapi.Request, files ...*os.File) (*helperapi.Response, error) {
	var (
		resp *helperapi.Response
		err  error
	)
	p.withOpMu(func() { resp, err = p.call(req, files...) })
	return resp, err
}

// call runs one libcontainer operation in a helper: the warm one if
// there is one, else a new one. files go with the request; its fd fields
// name them as 3 + their index (see helperapi.Request). The
// caller holds opMu (withOpMu: no stray is reaped meanwhile) and, once
// call returned, tracks the pids the helper started: they are our
// children by then, because call waits for the helper's exit.
func (p *helperPool) call(req *helperapi.Request, files ...*os.File) (*helperapi.Response, error) {
	t0 := time.Now()
	p.calls.Add(1)
	req.Version = helperapi.Version
	req.Root = p.root
	req.LogLevel = p.logLevel
	b, _ := json.Marshal(req)
	warm := "warm"
	var h *helperProc
	if !needsCRIU(req.Op) {
		h = p.takeWarm()
	}
	if h != nil {
		if err := sendRequest(h.req, b, files); err != nil {
			// The warm helper died (killed by hand, say): use a new one.
			p.log.Warnf("warm helper %d did not take the request: %v", h.pid, err)
			_ = p.reaper.kill(h.pid, unix.SIGKILL)
			h.close()
			h = nil
		}
	}
	if h == nil {
		warm = "cold"
		bin := p.runtime
		if needsCRIU(req.Op) {
			bin = p.criuRuntime
		}
		var err error
		if h, err = p.spawnOf(bin); err != nil {
			return nil, err
		}
		if err := sendRequest(h.req, b, files); err != nil {
			_ = p.reaper.kill(h.pid, unix.SIGKILL)
			<-h.exited
			h.close()
			return nil, fmt.Errorf("helper %s: sending the request: %w", req.Op, err)
		}
	}
	defer h.close()
	tSent := time.Now()
	p.reaper.kick()
	p.spawnAhead(req.Op)

	_ = h.out.SetReadDeadline(time.Now().Add(helperTimeout))
	out, rerr := io.ReadAll(io.LimitReader(h.out, 1<<20))
	tAnswer := time.Now()
	if rerr != nil {
		_ = p.reaper.kill(h.pid, unix.SIGKILL)
	}
	select {
	case <-h.exited:
	case <-time.After(helperTimeout):
		_ = p.reaper.kill(h.pid, unix.SIGKILL)
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
