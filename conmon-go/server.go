package main

import (
	"bufio"
	"encoding/json"
	"errors"
	"fmt"
	"io"
	"os"
	"os/signal"
	"runtime"
	"runtime/debug"
	"strconv"
	"sync"
	"sync/atomic"
	"time"

	"golang.org/x/sys/unix"

	"github.com/noded-dev/noded/conmon-go/internal/helperapi"
	"github.com/noded-dev/noded/internal/oci/wire"
)

// monitor serves one pod.
type monitor struct {
	pod      string
	runDir   string
	stateDir string
	root     string // libcontainer root
	runtime  string // conmon-go-runtime
	logLevel string
	log      *logger

	// opMu serialises the helpers (libcontainer operations); the reaper
	// reaps strays only while it is free.
	opMu   sync.Mutex
	reaper *reaper
	// warm is a helper started ahead of the next operation (nil if none);
	// guarded by opMu. helperCalls counts the helpers used, so that a
	// late prewarm can tell that the operation it was for has passed.
	warm        *helperProc
	helperCalls atomic.Int64
	quitting    atomic.Bool // shutting down: no more prewarming

	mu   sync.Mutex
	ctrs map[string]*ctr

	trimMu    sync.Mutex
	trimTimer *time.Timer

	listener *os.File
	lock     *os.File // flock'ed while the monitor lives
	quit     chan struct{}
	quitOnce sync.Once
}

// errf returns an error carrying a wire error code.
var errf = helperapi.Errorf

type codeError = helperapi.CodeError

func runMonitor(args []string) int {
	o, err := parseFlags("monitor", args)
	ready := newReadyWriter(-1)
	if o != nil {
		ready = newReadyWriter(o.readyFd)
	}
	if err != nil {
		fmt.Fprintln(os.Stderr, "conmon-go monitor:", err)
		ready.send("error %v", err)
		return exitUsage
	}
	// A monitor must stay small: collect garbage early and give memory
	// back to the kernel (see README.md for the figures).
	debug.SetGCPercent(25)
	debug.SetMemoryLimit(8 << 20)

	log := newLogger(o.logLevel).with("pod", o.pod).with("pid", os.Getpid())

	m := &monitor{
		pod:      o.pod,
		runDir:   o.runDir,
		stateDir: o.stateDir,
		root:     wire.MonitorDir(o.runDir, o.pod),
		runtime:  o.runtime,
		logLevel: o.logLevel,
		log:      log,
		ctrs:     map[string]*ctr{},
		quit:     make(chan struct{}),
	}
	if err := m.setup(); err != nil {
		if errors.Is(err, errRunning) {
			ready.send("running")
			return exitRunning
		}
		log.Errorf("monitor setup failed: %v", err)
		ready.send("error %v", err)
		return exitFailed
	}
	log.Infof("monitor %s listening on %s", version, wire.SocketPath(m.runDir, m.pod))
	ready.ok()
	// The first operation of a new monitor is the pod's pause container.
	m.prewarm()
	m.serve()
	log.Infof("monitor exiting")
	m.lock.Close()
	return exitOK
}

var errRunning = errors.New("a monitor is already running for this pod")

func (m *monitor) setup() error {
	if err := os.Chdir("/"); err != nil {
		return err
	}
	for _, d := range []string{m.runDir, m.stateDir} {
		if err := os.MkdirAll(d, 0o700); err != nil {
			return err
		}
	}
	// The lock is held (fd kept open, CLOEXEC) for the monitor's life: it
	// tells a live monitor from a stale socket.
	lock, err := os.OpenFile(wire.LockPath(m.runDir, m.pod), os.O_RDWR|os.O_CREATE, 0o600)
	if err != nil {
		return err
	}
	if err := unix.Flock(int(lock.Fd()), unix.LOCK_EX|unix.LOCK_NB); err != nil {
		lock.Close()
		if errors.Is(err, unix.EWOULDBLOCK) {
			return errRunning
		}
		return fmt.Errorf("lock: %w", err)
	}
	m.lock = lock // referenced for the monitor's life: its finalizer would unlock
	if err := unix.Prctl(unix.PR_SET_CHILD_SUBREAPER, 1, 0, 0, 0); err != nil {
		return fmt.Errorf("set child subreaper: %w", err)
	}
	// Our lifetime is controlled by the shutdown request; a stray signal
	// to noded's process group or session must not take the pod down.
	signal.Ignore(unix.SIGHUP, unix.SIGINT, unix.SIGTERM, unix.SIGPIPE)
	if err := os.MkdirAll(m.root, 0o700); err != nil {
		return err
	}
	if err := unix.Access(m.runtime, unix.X_OK); err != nil {
		return fmt.Errorf("runtime helper %s: %w", m.runtime, err)
	}
	m.reaper = newReaper(&m.opMu, m.log)
	go m.reaper.run()

	m.adoptAll()

	sock := wire.SocketPath(m.runDir, m.pod)
	_ = os.Remove(sock) // stale: we hold the lock, so nobody listens on it
	l, err := listenUnix(sock)
	if err != nil {
		return err
	}
	m.listener = l
	_ = os.WriteFile(wire.PidPath(m.runDir, m.pod), []byte(strconv.Itoa(os.Getpid())+"\n"), 0o600)
	m.scheduleTrim()
	return nil
}

func (m *monitor) serve() {
	go func() {
		<-m.quit
		m.listener.Close()
	}()
	for {
		conn, err := accept(m.listener)
		if err != nil {
			select {
			case <-m.quit:
				return
			default:
			}
			m.log.Warnf("accept: %v", err)
			time.Sleep(100 * time.Millisecond)
			continue
		}
		go m.handle(conn)
	}
}

// handle serves one connection: one request line, one response line.
func (m *monitor) handle(conn *os.File) {
	defer conn.Close()
	_ = conn.SetReadDeadline(time.Now().Add(30 * time.Second))
	line, err := bufio.NewReaderSize(io.LimitReader(conn, wire.MaxRequestSize+1), 4096).ReadBytes('\n')
	if err != nil {
		if len(line) > wire.MaxRequestSize {
			writeResponse(conn, &wire.Response{Code: wire.CodeInvalidArgument, Error: "request too large"})
		}
		return
	}
	_ = conn.SetReadDeadline(time.Time{})
	var req wire.Request
	if err := json.Unmarshal(line, &req); err != nil {
		writeResponse(conn, &wire.Response{Code: wire.CodeInvalidArgument, Error: "bad request: " + err.Error()})
		return
	}
	resp, err := m.dispatch(conn, &req)
	if resp == nil {
		resp = &wire.Response{}
	}
	if err != nil {
		resp.Error = err.Error()
		resp.Code = wire.CodeInternal
		var ce *codeError
		if errors.As(err, &ce) {
			resp.Code = ce.Code
		}
		if resp.Code == wire.CodeInternal {
			m.log.Warnf("%s %s failed: %v", req.Op, req.Container, err)
		}
	}
	writeResponse(conn, resp)
	if req.Op == wire.OpShutdown && err == nil {
		m.quitOnce.Do(func() { close(m.quit) })
	}
}

func writeResponse(conn *os.File, resp *wire.Response) {
	b, err := json.Marshal(resp)
	if err != nil {
		b, _ = json.Marshal(&wire.Response{Code: wire.CodeInternal, Error: err.Error()})
	}
	_ = conn.SetWriteDeadline(time.Now().Add(30 * time.Second))
	_, _ = conn.Write(append(b, '\n'))
}

func (m *monitor) dispatch(conn *os.File, req *wire.Request) (*wire.Response, error) {
	switch req.Op {
	case wire.OpHello:
		return &wire.Response{Pod: m.pod, Pid: os.Getpid(), Version: wire.Version}, nil
	case wire.OpList:
		return &wire.Response{States: m.list()}, nil
	case wire.OpShutdown:
		return nil, m.shutdown()
	case wire.OpStats:
		st := memStats()
		st["helper_calls"] = m.helperCalls.Load()
		return &wire.Response{Stats: st}, nil
	}
	if !wire.ValidID(req.Container) {
		return nil, errf(wire.CodeInvalidArgument, "invalid container id %q", req.Container)
	}
	var (
		st  *wire.ContainerState
		err error
	)
	switch req.Op {
	case wire.OpCreate, wire.OpRun:
		st, err = m.create(req)
	case wire.OpStart:
		st, err = m.start(req.Container)
	case wire.OpKill:
		err = m.kill(req.Container, req.Signal)
	case wire.OpState:
		st, err = m.state(req.Container)
	case wire.OpWait:
		st, err = m.wait(conn, req.Container)
	case wire.OpExec:
		var res *wire.ExecResult
		res, err = m.exec(req)
		if res != nil {
			return &wire.Response{Exec: res}, err
		}
	case wire.OpReopenLog:
		err = m.reopenLog(req.Container)
	case wire.OpDelete:
		err = m.delete(req.Container, req.Force)
	default:
		err = errf(wire.CodeInvalidArgument, "unknown operation %q", req.Op)
	}
	if err != nil {
		return nil, err
	}
	return &wire.Response{State: st}, nil
}

// scheduleTrim returns freed memory to the kernel shortly after a burst of
// operations (creating a container touches a lot of libcontainer code and
// heap that the idle monitor never needs again).
func (m *monitor) scheduleTrim() {
	m.trimMu.Lock()
	defer m.trimMu.Unlock()
	if m.trimTimer == nil {
		m.trimTimer = time.AfterFunc(500*time.Millisecond, debug.FreeOSMemory)
		return
	}
	m.trimTimer.Reset(500 * time.Millisecond)
}

// shutdown kills and deletes the containers that are left, and removes the
// monitor's files; the caller closes quit after answering.
func (m *monitor) shutdown() error {
	m.quitting.Store(true)
	m.opMu.Lock()
	m.dropWarm()
	m.opMu.Unlock()
	m.reaper.kick()
	m.mu.Lock()
	ids := make([]string, 0, len(m.ctrs))
	for id := range m.ctrs {
		ids = append(ids, id)
	}
	m.mu.Unlock()
	var errs []error
	for _, id := range ids {
		if err := m.delete(id, true); err != nil {
			errs = append(errs, fmt.Errorf("%s: %w", id, err))
		}
	}
	if len(errs) > 0 {
		return errors.Join(errs...)
	}
	_ = os.Remove(wire.SocketPath(m.runDir, m.pod))
	_ = os.Remove(wire.PidPath(m.runDir, m.pod))
	_ = os.Remove(m.root) // empty once every container is destroyed
	_ = os.Remove(wire.LockPath(m.runDir, m.pod))
	_ = os.Remove(wire.MonitorLogPath(m.runDir, m.pod))
	return nil
}

// memStats reports the Go runtime's view of the monitor's memory, in bytes.
func memStats() map[string]int64 {
	var ms runtime.MemStats
	runtime.ReadMemStats(&ms)
	return map[string]int64{
		"heap_alloc":    int64(ms.HeapAlloc),
		"heap_inuse":    int64(ms.HeapInuse),
		"heap_idle":     int64(ms.HeapIdle),
		"heap_released": int64(ms.HeapReleased),
		"stack_inuse":   int64(ms.StackInuse),
		"mspan_inuse":   int64(ms.MSpanInuse),
		"gc_sys":        int64(ms.GCSys),
		"other_sys":     int64(ms.OtherSys),
		"sys":           int64(ms.Sys),
		"goroutines":    int64(runtime.NumGoroutine()),
		"num_gc":        int64(ms.NumGC),
	}
}
