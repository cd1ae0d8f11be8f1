package main

import (
	"encoding/json"
	"errors"
	"fmt"
	"os"
	"os/signal"
	"runtime"
	"runtime/debug"
	"strconv"
	"sync"
	"time"

	"golang.org/x/sys/unix"

	"github.com/noded-dev/noded/conmon-go/internal/helperapi"
	"github.com/noded-dev/noded/internal/codepages"
	"github.com/noded-dev/noded/internal/oci/wire"
)

// server is the monitor process of one pod: it sets the process up
// (lock, subreaper, signals, adoption), serves the requests on the pod's
// socket and dispatches them to the services below, and at shutdown
// removes the monitor's files. It owns the listener, the lock file and
// quit; the services own their state:
//
//   - helpers (helperPool, helpercall.go): the helper processes, opMu and
//     the warm helper;
//   - reaper (reaper.go): the SIGCHLD loop and the tracked pids;
//   - table (ctrTable, table.go): the pod's containers by id;
//   - ctrs (containers, container.go, exec.go): what happens to a
//     container, from create to delete;
//   - adopter (adopt.go): the containers a previous monitor left;
//   - trim (trimmer): giving freed memory back after a burst.
//
// The server takes no lock of its own: quit is closed once (quitOnce);
// the listener and the lock are set in setup, before the first request.
type server struct {
	pod      string
	runDir   string
	stateDir string
	root     string // libcontainer root
	runtime  string // conmon-go-runtime
	log      *logger

	reaper  *reaper
	helpers *helperPool
	table   *ctrTable
	ctrs    *containers
	adopter *adopter
	trim    *trimmer

	listener *os.File
	lock     *os.File // flock'ed while the monitor lives
	quit     chan struct{}
	quitOnce sync.Once
}

// newServer makes the monitor of o.pod and its services, wired together;
// nothing runs yet (setup starts it).
func newServer(o *options, log *logger) *server {
	root := wire.MonitorDir(o.runDir, o.pod)
	opMu := new(sync.Mutex) // the helpers', see helperPool.opMu
	rp := newReaper(opMu, log)
	trim := newTrimmer()
	helpers := newHelperPool(helperExe(o, log), o.criuRuntime, root, o.logLevel, opMu, rp, trim, log)
	table := newCtrTable(o.pod)
	rec := &recorder{stateDir: o.stateDir, log: log}
	return &server{
		pod:      o.pod,
		runDir:   o.runDir,
		stateDir: o.stateDir,
		root:     root,
		runtime:  o.runtime,
		log:      log,
		reaper:   rp,
		helpers:  helpers,
		table:    table,
		ctrs: &containers{pod: o.pod, stateDir: o.stateDir, root: root, log: log,
			table: table, helpers: helpers, reaper: rp, rec: rec, trim: trim},
		adopter: &adopter{pod: o.pod, root: root, stateDir: o.stateDir, log: log,
			table: table, helpers: helpers, rec: rec},
		trim: trim,
		quit: make(chan struct{}),
	}
}

// monitorMemoryLimit is the monitor's soft memory limit: the only
// trigger of a collection besides the trimmer's.
const monitorMemoryLimit = 8 << 20

// setMemoryPolicy sets the monitor's garbage collection: only at the
// trims (after each burst of calls) and at the memory limit, never on the
// heap's growth or the runtime's two-minute timer. An idle monitor
// allocates nothing (its log pumps reuse their buffers), and each timed
// collection left memory behind that no trim gave back (conmon-go's
// README has the figures).
func setMemoryPolicy() {
	debug.SetGCPercent(-1)
	debug.SetMemoryLimit(monitorMemoryLimit)
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
	setMemoryPolicy()

	log := newLogger(o.logLevel).with("pod", o.pod).with("pid", os.Getpid())

	srv := newServer(o, log)
	if err := srv.setup(); err != nil {
		if errors.Is(err, errRunning) {
			ready.send("running")
			return exitRunning
		}
		log.Errorf("monitor setup failed: %v", err)
		ready.send("error %v", err)
		return exitFailed
	}
	log.Infof("monitor %s listening on %s", version, wire.SocketPath(srv.runDir, srv.pod))
	ready.ok()
	// The first operation of a new monitor is the pod's pause container.
	srv.helpers.prewarm()
	srv.serve()
	srv.reaper.stop()
	log.Infof("monitor exiting")
	srv.lock.Close()
	return exitOK
}

var errRunning = errors.New("a monitor is already running for this pod")

func (srv *server) setup() error {
	if err := os.Chdir("/"); err != nil {
		return err
	}
	for _, d := range []string{srv.runDir, srv.stateDir} {
		if err := os.MkdirAll(d, 0o700); err != nil {
			return err
		}
	}
	// The lock is held (fd kept open, CLOEXEC) for the monitor's life: it
	// tells a live monitor from a stale socket.
	lock, err := os.OpenFile(wire.LockPath(srv.runDir, srv.pod), os.O_RDWR|os.O_CREATE, 0o600)
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
	srv.lock = lock // referenced for the monitor's life: its finalizer would unlock
	if err := unix.Prctl(unix.PR_SET_CHILD_SUBREAPER, 1, 0, 0, 0); err != nil {
		return fmt.Errorf("set child subreaper: %w", err)
	}
	// Our lifetime is controlled by the shutdown request; a stray signal
	// to noded's process group or session must not take the pod down.
	signal.Ignore(unix.SIGHUP, unix.SIGINT, unix.SIGTERM, unix.SIGPIPE)
	if err := os.MkdirAll(srv.root, 0o700); err != nil {
		return err
	}
	if err := unix.Access(srv.runtime, unix.X_OK); err != nil {
		return fmt.Errorf("runtime helper %s: %w", srv.runtime, err)
	}
	srv.reaper.start()

	srv.adopter.adoptAll()

	sock := wire.SocketPath(srv.runDir, srv.pod)
	_ = os.Remove(sock) // stale: we hold the lock, so nobody listens on it
	l, err := listenUnix(sock)
	if err != nil {
		return err
	}
	srv.listener = l
	_ = os.WriteFile(wire.PidPath(srv.runDir, srv.pod), []byte(strconv.Itoa(os.Getpid())+"\n"), 0o600)
	srv.trim.schedule()
	return nil
}

func (srv *server) serve() {
	go func() {
		<-srv.quit
		srv.listener.Close()
	}()
	for {
		conn, err := accept(srv.listener)
		if err != nil {
			select {
			case <-srv.quit:
				return
			default:
			}
			srv.log.Warnf("accept: %v", err)
			time.Sleep(100 * time.Millisecond)
			continue
		}
		go srv.handle(conn)
	}
}

// handle serves one connection: one request line, one response line (the
// streaming operations, exec_stream and attach, answer more and keep the
// connection open: stream). The request is read with recvmsg, so that the
// files a streaming request passes come with it.
func (srv *server) handle(conn *os.File) {
	defer conn.Close()
	_ = conn.SetReadDeadline(time.Now().Add(30 * time.Second))
	lr := newConnReader(conn)
	line, fds, err := lr.ReadLine()
	if err != nil {
		wire.CloseFds(fds)
		if errors.Is(err, wire.ErrLineTooLong) {
			writeResponse(conn, &wire.Response{Code: wire.CodeInvalidArgument, Error: "request too large"})
		}
		return
	}
	_ = conn.SetReadDeadline(time.Time{})
	var req wire.Request
	if err := json.Unmarshal(line, &req); err != nil {
		wire.CloseFds(fds)
		writeResponse(conn, &wire.Response{Code: wire.CodeInvalidArgument, Error: "bad request: " + err.Error()})
		return
	}
	if req.Op == wire.OpExecStream || req.Op == wire.OpAttach {
		srv.stream(conn, &req, fds, lr)
		return
	}
	wire.CloseFds(fds)
	resp, err := srv.dispatch(conn, &req)
	if resp == nil {
		resp = &wire.Response{}
	}
	if err != nil {
		srv.setError(resp, &req, err)
	}
	writeResponse(conn, resp)
	if req.Op == wire.OpShutdown && err == nil {
		srv.quitOnce.Do(func() { close(srv.quit) })
	}
}

// setError puts err in resp, with its code.
func (srv *server) setError(resp *wire.Response, req *wire.Request, err error) {
	resp.Error = err.Error()
	resp.Code = wire.CodeInternal
	var ce *codeError
	if errors.As(err, &ce) {
		resp.Code = ce.Code
	}
	if resp.Code == wire.CodeInternal {
		srv.log.Warnf("%s %s failed: %v", req.Op, req.Container, err)
	}
}

// stream serves a streaming request (exec_stream, attach), which owns fds
// and answers itself once it got going; an error before that is answered
// here.
func (srv *server) stream(conn *os.File, req *wire.Request, fds []int, lr *wire.LineReader) {
	var err error
	switch {
	case !wire.ValidID(req.Container):
		wire.CloseFds(fds)
		err = errf(wire.CodeInvalidArgument, "invalid container id %q", req.Container)
	case req.Op == wire.OpExecStream:
		err = srv.ctrs.execStream(conn, req, fds)
	default:
		err = srv.ctrs.attach(conn, req, fds, lr)
	}
	if err != nil {
		resp := &wire.Response{}
		srv.setError(resp, req, err)
		writeResponse(conn, resp)
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

func (srv *server) dispatch(conn *os.File, req *wire.Request) (*wire.Response, error) {
	switch req.Op {
	case wire.OpHello:
		return &wire.Response{Pod: srv.pod, Pid: os.Getpid(), Version: wire.Version}, nil
	case wire.OpList:
		return &wire.Response{States: srv.table.list()}, nil
	case wire.OpShutdown:
		return nil, srv.shutdown()
	case wire.OpStats:
		st := memStats()
		st["helper_calls"] = srv.helpers.used()
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
		st, err = srv.ctrs.create(req)
	case wire.OpStart:
		st, err = srv.ctrs.start(req.Container)
	case wire.OpKill:
		err = srv.ctrs.kill(req.Container, req.Signal)
	case wire.OpState:
		st, err = srv.table.state(req.Container)
	case wire.OpWait:
		st, err = srv.ctrs.wait(conn, req.Container)
	case wire.OpReopenLog:
		err = srv.ctrs.reopenLog(req.Container)
	case wire.OpDelete:
		err = srv.ctrs.delete(req.Container, req.Force)
	case wire.OpUpdate:
		err = srv.ctrs.update(req.Container)
	case wire.OpCheckpoint:
		err = srv.ctrs.checkpoint(req)
	case wire.OpPause, wire.OpResume:
		err = srv.ctrs.freeze(req)
	default:
		err = errf(wire.CodeInvalidArgument, "unknown operation %q", req.Op)
	}
	if err != nil {
		return nil, err
	}
	return &wire.Response{State: st}, nil
}

// trimmer returns freed memory to the kernel shortly after a burst of
// work (creating a container touches a lot of libcontainer code and heap
// that the idle monitor never needs again). Calls schedule a whole trim:
// a collection that gives the heap's free pages back, then the drop of
// the mappings of the monitor's own code (internal/codepages). What the
// reaper does outside any call (a container's exit, a warm helper that
// exited unused) maps code back too, and schedules only the drop: it
// frees little heap, and a collection itself leaves memory behind (an
// idle monitor's anonymous memory grew by 264 KiB at such a collection,
// and a monitor's by ~440 KiB over its first few: conmon-go's README);
// the next call's trim collects anyway.
//
// It owns its timer; mu guards timer and heap. free and drop are set
// once.
type trimmer struct {
	free, drop func()
	mu         sync.Mutex
	timer      *time.Timer
	heap       bool // the pending trim also collects
}

// trimDelay is how long after the last of a burst the trimmer trims.
const trimDelay = 500 * time.Millisecond

func newTrimmer() *trimmer {
	return &trimmer{free: debug.FreeOSMemory, drop: func() { codepages.Drop() }}
}

// schedule trims heap and code trimDelay after the last of a burst of
// calls.
func (t *trimmer) schedule() { t.arm(true) }

// scheduleCode drops the code's mappings trimDelay after the last of a
// burst, collecting only if a call asked for it meanwhile.
func (t *trimmer) scheduleCode() { t.arm(false) }

func (t *trimmer) arm(heap bool) {
	t.mu.Lock()
	defer t.mu.Unlock()
	t.heap = t.heap || heap
	if t.timer == nil {
		t.timer = time.AfterFunc(trimDelay, t.run)
		return
	}
	t.timer.Reset(trimDelay)
}

func (t *trimmer) run() {
	t.mu.Lock()
	heap := t.heap
	t.heap = false
	t.mu.Unlock()
	if heap {
		t.free()
	}
	t.drop() // last: a collection maps back what it reads
}

// shutdown kills and deletes the containers that are left, and removes the
// monitor's files; the caller closes quit after answering.
func (srv *server) shutdown() error {
	srv.helpers.stop()
	if err := srv.ctrs.deleteAll(); err != nil {
		return err
	}
	_ = os.Remove(wire.SocketPath(srv.runDir, srv.pod))
	_ = os.Remove(wire.PidPath(srv.runDir, srv.pod))
	_ = os.Remove(srv.root) // empty once every container is destroyed
	_ = os.Remove(wire.LockPath(srv.runDir, srv.pod))
	_ = os.Remove(wire.MonitorLogPath(srv.runDir, srv.pod))
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
