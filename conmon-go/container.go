package main

import (
	"encoding/json"
	"errors"
	"fmt"
	"os"
	"path/filepath"
	"strconv"
	"strings"
	"sync"
	"time"

	"golang.org/x/sys/unix"

	"github.com/noded-dev/noded/conmon-go/crilog"
	"github.com/noded-dev/noded/conmon-go/internal/helperapi"
	"github.com/noded-dev/noded/internal/oci/runclayout"
	"github.com/noded-dev/noded/internal/oci/wire"
)

// drainTimeout bounds how long, after a container's init exited, we wait
// for the end of its output: processes it left behind (no own PID
// namespace) may keep the pipes open.
const drainTimeout = 2 * time.Second

// ctr is one container of the pod.
type ctr struct {
	id string

	mu    sync.Mutex
	st    wire.ContainerState
	log   *crilog.Writer // nil for an adopted container
	stdin *os.File       // write end of stdin, or the console; nil if none
	// stdinOnce: close stdin after the first attach with stdin ended
	// (attach.go); stdinClosed (under mu) once that happened.
	stdinOnce   bool
	stdinClosed bool
	// console is the pty master of a container with a terminal (nil
	// without one): output, stdin, and the target of an attach's resize.
	console *os.File
	// fan sends the output to the attached clients as well as to the log
	// (attach.go); nil for an adopted container, whose output the monitor
	// does not have.
	fan     *fanout
	readers []*os.File // our ends of the output pipes / console
	pumps   sync.WaitGroup
	exited  chan struct{} // closed once the exit is known (transition)
	// final is the state at the exit, set before exited is closed and
	// never changed after: wait answers with it without taking mu, which
	// transition holds while it writes the exit's state file.
	final   *wire.ContainerState
	memCg   string // memory cgroup directory, for the OOM count
	cgV2    bool
	oomBase uint64
	// ownPidNS: the container has a PID namespace of its own, so killing
	// its init kills all of its processes. Like memCg, it is set at create
	// before the container is published and only read afterwards; false
	// when adopted, which makes every kill go through a helper.
	ownPidNS bool
	adopted  bool
	// recorded: the container has a state file, which every transition
	// updates; from publication (create) or adoption until delete. A
	// container whose creation failed half-way never gets one.
	recorded bool
	// restore: created from a checkpoint, its start restores the init
	// (checkpoint.go); nil otherwise. Set before publication.
	restore *restoreFrom
}

func (c *ctr) snapshot() *wire.ContainerState {
	c.mu.Lock()
	defer c.mu.Unlock()
	st := c.st
	return &st
}

// containers does what happens to the pod's containers, from create to
// delete: it makes a container (its stdio, log and helper run), starts,
// signals, waits for and deletes it, runs processes in it (exec.go) and
// records its init's exit. It owns no state of its own beyond its
// configuration: the containers are in table, their status changes go
// through rec (transition), the libcontainer operations through helpers,
// the processes are tracked by reaper.
//
// Lock rules: a container's mu guards its state (ctr); it may be taken
// with opMu held (helpers.withOpMu), never the other way round. The
// table's lock is never held while a container's is taken.
type containers struct {
	pod      string
	stateDir string
	root     string // libcontainer root
	log      *logger

	table   *ctrTable
	helpers *helperPool
	reaper  *reaper
	rec     *recorder
	trim    *trimmer
}

// create creates a container (wire.OpCreate) or, for wire.OpRun, creates
// and starts it with a single helper run. The steps: check the request,
// open the log and the container's stdio, run the helper and take over the
// init it started, publish the container.
func (cs *containers) create(req *wire.Request) (_ *wire.ContainerState, retErr error) {
	if req.Restore != "" && req.Op == wire.OpCreate {
		return cs.createForRestore(req)
	}
	tty, err := cs.checkCreate(req)
	if err != nil {
		return nil, err
	}
	created, err := cs.table.reserve(req.Container)
	if err != nil {
		return nil, err
	}
	defer created()
	c, err := cs.newCtr(req)
	if err != nil {
		return nil, err
	}
	sio, err := c.openStdio(req.Stdin, tty)
	defer sio.close()
	defer func() {
		if retErr != nil {
			c.closeIO()
		}
	}()
	if err != nil {
		return nil, err
	}
	run := req.Op == wire.OpRun
	consoleErr, err := cs.createInit(c, createRequest(req, tty, sio), sio, run, req.Stdin)
	if err != nil {
		return nil, err
	}
	if run {
		// "run" is the pause container: the pod's first container
		// follows, a helper can start now.
		cs.helpers.prewarm()
	}
	if consoleErr != nil {
		cs.destroyLater(c)
		return nil, fmt.Errorf("receive console: %w", consoleErr)
	}
	cs.publish(c)
	log := cs.log.with("container", c.id)
	if run {
		log.Infof("created and started, pid %d", c.snapshot().Pid)
	} else {
		log.Infof("created, pid %d", c.snapshot().Pid)
	}
	cs.trim.schedule()
	return c.snapshot(), nil
}

// checkCreate checks a create request and returns whether the container
// gets a terminal (asked for, or set in the bundle's spec).
func (cs *containers) checkCreate(req *wire.Request) (tty bool, _ error) {
	if !filepath.IsAbs(req.Bundle) {
		return false, errf(wire.CodeInvalidArgument, "bundle must be an absolute path")
	}
	if !filepath.IsAbs(req.LogPath) {
		return false, errf(wire.CodeInvalidArgument, "log path must be an absolute path")
	}
	if cs.table.has(req.Container) {
		return false, errf(wire.CodeAlreadyExists, "container %s already exists", req.Container)
	}
	specTty, err := readTerminal(req.Bundle)
	if err != nil {
		return false, errf(wire.CodeInvalidArgument, "bundle %s: %v", req.Bundle, err)
	}
	return req.Tty || specTty, nil
}

// newCtr makes the container of a create request, created and not yet
// published, with its log open.
func (cs *containers) newCtr(req *wire.Request) (*ctr, error) {
	logw, err := crilog.Open(req.LogPath)
	if err != nil {
		return nil, errf(wire.CodeInvalidArgument, "log file: %v", err)
	}
	return &ctr{
		id:        req.Container,
		log:       logw,
		stdinOnce: req.StdinOnce,
		fan:       newFanout(),
		exited:    make(chan struct{}),
		st: wire.ContainerState{
			ID:      req.Container,
			Pod:     cs.pod,
			Status:  wire.StatusCreated,
			Bundle:  req.Bundle,
			LogPath: req.LogPath,
		},
	}, nil
}

// stdio is what create hands to the helper (and on to the container) and
// keeps for itself until the init runs.
type stdio struct {
	// child are the container's ends, sent with the helper request; closed
	// on our side once the helper ran.
	child []*os.File
	// stdinFd, stdoutFd, stderrFd, consoleFd name them in the request:
	// 3 + their index, -1 for none.
	stdinFd, stdoutFd, stderrFd, consoleFd int
	// consoleSock is our end of the socket on which the init sends its
	// console (tty only).
	consoleSock *os.File
}

// openStdio makes the container's stdio: output pipes (whose read ends go
// to c.readers), or a socket to receive the console on, and a stdin pipe
// when asked for without a terminal (its write end is c.stdin). The
// returned stdio is never nil and must be closed.
func (c *ctr) openStdio(stdin, tty bool) (*stdio, error) {
	s := &stdio{stdinFd: -1, stdoutFd: -1, stderrFd: -1, consoleFd: -1}
	if tty {
		sock, child, err := newConsoleSocket()
		if err != nil {
			return s, err
		}
		s.consoleSock = sock
		s.consoleFd = s.add(child)
		return s, nil
	}
	for _, fd := range []*int{&s.stdoutFd, &s.stderrFd} {
		r, w, err := os.Pipe()
		if err != nil {
			return s, err
		}
		c.readers = append(c.readers, r)
		*fd = s.add(w)
	}
	if stdin {
		r, w, err := os.Pipe()
		if err != nil {
			return s, err
		}
		s.stdinFd = s.add(r)
		c.stdin = w
	}
	return s, nil
}

// add appends a file for the child and returns its fd in the request.
func (s *stdio) add(f *os.File) int {
	s.child = append(s.child, f)
	return 2 + len(s.child)
}

// closeChild closes the container's ends: the helper passed them on.
func (s *stdio) closeChild() {
	for _, f := range s.child {
		f.Close()
	}
	s.child = nil
}

func (s *stdio) close() {
	s.closeChild()
	if s.consoleSock != nil {
		s.consoleSock.Close()
	}
}

// createRequest is the helper request of a create or run.
func createRequest(req *wire.Request, tty bool, s *stdio) *helperapi.Request {
	op := helperapi.OpCreate
	if req.Op == wire.OpRun {
		op = helperapi.OpRun
	}
	return &helperapi.Request{Op: op, ID: req.Container, Bundle: req.Bundle, Tty: tty,
		StdinFd: s.stdinFd, StdoutFd: s.stdoutFd, StderrFd: s.stderrFd, ConsoleFd: s.consoleFd}
}

// createInit runs the create (or run) helper and takes over the init it
// started: its pid and cgroup, its output, its exit. Everything up to
// tracking the init happens under opMu: the init is our child once the
// helper exited, and no stray reaping may take its status before the exit
// handler is in place. A console that could not be received is returned
// apart: the container exists then, and must be destroyed.
func (cs *containers) createInit(c *ctr, hreq *helperapi.Request, s *stdio, run, stdin bool) (consoleErr, err error) {
	cs.helpers.withOpMu(func() {
		var hresp *helperapi.Response
		hresp, err = cs.helpers.call(hreq, s.child...)
		if err != nil {
			var ce *codeError
			if !errors.As(err, &ce) || ce.Code != wire.CodeAlreadyExists {
				// A helper that failed half-way (or was killed) may leave
				// runtime state and cgroups behind.
				cs.destroyLeftover(c.id)
			}
			return
		}
		s.closeChild()
		c.mu.Lock()
		defer c.mu.Unlock()
		c.takeInit(hresp)
		consoleErr = c.startOutput(s, stdin)
		if run {
			// The helper released the init already; not recorded yet
			// (publish writes the first state file).
			_ = cs.rec.transition(c, wire.StatusRunning, func(st *wire.ContainerState) { st.StartedAt = st.CreatedAt })
		}
		cs.reaper.track(c.st.Pid, func(ws unix.WaitStatus, ok bool) { cs.onExit(c, ws, ok) })
	})
	return consoleErr, err
}

// takeInit records what the helper says about the init it started. The
// memory cgroup and ownPidNS are set once, before the container is shared,
// and only read afterwards.
func (c *ctr) takeInit(h *helperapi.Response) {
	c.st.Pid = h.Pid
	c.st.PidStartTime = h.PidStartTime
	c.st.CreatedAt = time.Now().UnixNano()
	c.memCg, c.cgV2 = h.MemCg, h.CgV2
	c.ownPidNS = h.OwnPidNS
	c.oomBase = oomCount(c.memCg, c.cgV2)
}

// startOutput starts copying the container's output to its log: from the
// console, which the init sent before it reported ready (so the message is
// queued already), or from the output pipes.
func (c *ctr) startOutput(s *stdio, stdin bool) error {
	if s.consoleSock == nil {
		c.pump(c.readers[0], crilog.Stdout, false)
		c.pump(c.readers[1], crilog.Stderr, false)
		return nil
	}
	console, err := recvFd(s.consoleSock)
	if err != nil {
		return err
	}
	c.readers = append(c.readers, console)
	c.console = console
	if stdin {
		c.stdin = console
	}
	c.pump(console, crilog.Stdout, true)
	return nil
}

// publish makes a created container known to requests and writes its
// first state file, with whatever status it reached meanwhile (running for
// a run; exited if it ended already); from then on every transition is
// recorded.
func (cs *containers) publish(c *ctr) {
	cs.table.add(c)
	c.mu.Lock()
	c.recorded = true
	cs.rec.record(c)
	c.mu.Unlock()
}

// destroyLater kills and removes a container whose creation failed
// half-way.
func (cs *containers) destroyLater(c *ctr) {
	go func() {
		_ = cs.signal(c, int(unix.SIGKILL))
		select {
		case <-c.exited:
		case <-time.After(10 * time.Second):
		}
		_, _ = cs.helpers.run(&helperapi.Request{Op: helperapi.OpDestroy, ID: c.id, Bundle: c.snapshot().Bundle})
		_ = os.Remove(wire.StateFilePath(cs.stateDir, c.id))
	}()
}

// destroyLeftover destroys the libcontainer state of a container the
// monitor does not track, if there is any; the caller holds opMu.
func (cs *containers) destroyLeftover(id string) bool {
	if !runclayout.Exists(cs.root, id) {
		return false
	}
	if _, err := cs.helpers.call(&helperapi.Request{Op: helperapi.OpDestroy, ID: id}); err != nil {
		cs.log.with("container", id).Warnf("removing leftover runtime state: %v", err)
	}
	return true
}

// pump copies one output stream to the log, and to the attached clients,
// until EOF.
func (c *ctr) pump(r *os.File, s crilog.Stream, tty bool) {
	c.pumps.Add(1)
	cp := c.log.NewCopier(s, tty)
	src := &teeReader{r: r, fan: c.fan, stream: streamIndex(s)}
	go func() {
		defer c.pumps.Done()
		_, _ = cp.ReadFrom(src)
		r.Close()
	}()
}

// closeIO closes the log and our ends of the stdio, and detaches the
// attached clients.
func (c *ctr) closeIO() {
	if c.fan != nil {
		c.fan.end()
	}
	for _, r := range c.readers {
		r.Close()
	}
	if c.stdin != nil {
		c.stdin.Close()
	}
	if c.log != nil {
		c.log.Close()
	}
}

// onExit records the exit of a container's init (called by the reaper).
func (cs *containers) onExit(c *ctr, ws unix.WaitStatus, ok bool) {
	finished := time.Now().UnixNano()
	code, reason, msg := int32(255), "Error", ""
	if ok {
		code = exitCode(ws)
		if code == 0 {
			reason = "Completed"
		}
	} else {
		reason, msg = "Unknown", "the exit status was lost"
	}
	oom := c.memCg != "" && oomCount(c.memCg, c.cgV2) > c.oomBase
	if oom {
		reason = "OOMKilled"
	}
	go func() {
		// Let the output drain so the log is complete when the exit is seen.
		done := make(chan struct{})
		go func() { c.pumps.Wait(); close(done) }()
		select {
		case <-done:
		case <-time.After(drainTimeout):
			for _, r := range c.readers {
				r.Close()
			}
			<-done
		}
		if c.fan != nil {
			c.fan.end() // the attached clients see the end of the output
		}
		c.mu.Lock()
		err := cs.rec.transition(c, wire.StatusExited, func(st *wire.ContainerState) {
			st.FinishedAt = finished
			st.ExitCode = code
			st.OOMKilled = oom
			st.Reason = reason
			st.Message = msg
		})
		c.mu.Unlock()
		if err == nil {
			cs.log.with("container", c.id).Infof("exited with %d (%s)", code, reason)
		}
		cs.trim.scheduleCode() // recording the exit woke an idle monitor
	}()
}

func (cs *containers) start(id string) (*wire.ContainerState, error) {
	c, err := cs.table.get(id)
	if err != nil {
		return nil, err
	}
	c.mu.Lock()
	if c.st.Status != wire.StatusCreated || c.st.StartedAt != 0 {
		st := c.st.Status
		c.mu.Unlock()
		return nil, errf(wire.CodeFailedPrecondition, "container %s is %s, not created", id, st)
	}
	// A start time set on a created container marks a start in progress:
	// a second start is refused meanwhile.
	c.st.StartedAt = time.Now().UnixNano()
	pid := c.st.Pid
	restoring := c.restore != nil
	c.mu.Unlock()
	if restoring {
		return cs.startRestore(c)
	}

	cs.helpers.withOpMu(func() { err = startViaFifo(cs.root, id, pid) })
	if errors.Is(err, errNotStartable) {
		err = errf(wire.CodeFailedPrecondition, "container %s: %v", id, err)
	}
	c.mu.Lock()
	defer c.mu.Unlock()
	if err != nil {
		if c.st.Status == wire.StatusCreated {
			c.st.StartedAt = 0
		}
		return nil, err
	}
	// The init may have exited right after it was released: then the
	// container is exited already and stays so.
	if c.st.Status == wire.StatusCreated {
		if err := cs.rec.transition(c, wire.StatusRunning, nil); err != nil {
			return nil, err
		}
	}
	cs.log.with("container", id).Infof("started")
	st := c.st
	return &st, nil
}

func (cs *containers) kill(id string, sig int) error {
	c, err := cs.table.get(id)
	if err != nil {
		return err
	}
	if sig <= 0 || sig >= 65 {
		return errf(wire.CodeInvalidArgument, "invalid signal %d", sig)
	}
	if c.snapshot().Status == wire.StatusExited {
		return errf(wire.CodeFailedPrecondition, "container %s is not running", id)
	}
	return cs.signal(c, sig)
}

// signal sends sig to the container. libcontainer would only signal the
// init, except for SIGKILL to a container without a PID namespace of its
// own (then it kills every process in the container's cgroups); so the
// monitor signals the init itself, without a helper process, unless that
// is the case. The init is the monitor's unreaped child, so its pid cannot
// have been reused. Otherwise a helper signals: should the container's
// runtime state be gone (removed by hand), it finds the processes in the
// cgroups the bundle names; without the bundle either, the init the
// monitor tracks is signalled directly.
func (cs *containers) signal(c *ctr, sig int) error {
	if c.pendingRestore() {
		return errf(wire.CodeFailedPrecondition, "container %s has not been started: no process", c.id)
	}
	snap := c.snapshot()
	direct := c.ownPidNS || unix.Signal(sig) != unix.SIGKILL
	if direct && snap.Status != wire.StatusExited && cs.reaper.kill(snap.Pid, unix.Signal(sig)) == nil {
		return nil
	}
	_, err := cs.helpers.run(&helperapi.Request{Op: helperapi.OpKill, ID: c.id, Bundle: snap.Bundle, Signal: sig})
	var ce *codeError
	if errors.As(err, &ce) && ce.Code == wire.CodeNotFound && cs.reaper.kill(snap.Pid, unix.Signal(sig)) == nil {
		cs.log.with("container", c.id).Warnf("no runtime state: signalled its init %d directly", snap.Pid)
		return nil
	}
	return err
}

// wait answers once the container exited, or gives up when the client
// closes the connection.
func (cs *containers) wait(conn *os.File, id string) (*wire.ContainerState, error) {
	c, err := cs.table.get(id)
	if err != nil {
		return nil, err
	}
	gone := make(chan struct{})
	go func() {
		var b [1]byte
		_, _ = conn.Read(b[:]) // returns when the client closes
		close(gone)
	}()
	select {
	case <-c.exited:
		st := *c.final
		return &st, nil
	case <-gone:
		return nil, errf(wire.CodeUnavailable, "client went away")
	}
}

func (cs *containers) reopenLog(id string) error {
	c, err := cs.table.get(id)
	if err != nil {
		return err
	}
	if c.log == nil {
		return errf(wire.CodeFailedPrecondition, "container %s has no log (adopted by a restarted monitor)", id)
	}
	if err := c.log.Reopen(); err != nil {
		return fmt.Errorf("reopen log %s: %w", c.log.Path(), err)
	}
	return nil
}

// delete destroys the container (cgroups, libcontainer state) and removes
// its state file. A container that has not exited is refused unless force,
// which kills it first.
func (cs *containers) delete(id string, force bool) error {
	cs.table.waitCreated(id)
	c, err := cs.table.get(id)
	if err != nil {
		// Not ours, but libcontainer state may be left by a failed create.
		var found bool
		cs.helpers.withOpMu(func() { found = cs.destroyLeftover(id) })
		if found {
			return nil
		}
		return err
	}
	if c.snapshot().Status != wire.StatusExited && !c.pendingRestore() {
		if !force {
			return errf(wire.CodeFailedPrecondition, "container %s has not exited", id)
		}
		_ = cs.signal(c, int(unix.SIGKILL))
		select {
		case <-c.exited:
		case <-time.After(10 * time.Second):
			return errf(wire.CodeDeadlineExceeded, "container %s did not exit after SIGKILL", id)
		}
	}
	if _, err := cs.helpers.run(&helperapi.Request{Op: helperapi.OpDestroy, ID: id, Bundle: c.snapshot().Bundle}); err != nil {
		return err
	}
	c.mu.Lock()
	c.recorded = false
	c.closeIO()
	c.mu.Unlock()
	if err := os.Remove(wire.StateFilePath(cs.stateDir, id)); err != nil && !os.IsNotExist(err) {
		cs.log.Warnf("removing state file: %v", err)
	}
	cs.table.remove(id)
	cs.log.with("container", id).Infof("deleted")
	cs.trim.schedule()
	return nil
}

// deleteAll kills and deletes every container (shutdown).
func (cs *containers) deleteAll() error {
	var errs []error
	for _, id := range cs.table.ids() {
		if err := cs.delete(id, true); err != nil {
			errs = append(errs, fmt.Errorf("%s: %w", id, err))
		}
	}
	return errors.Join(errs...)
}

// oomCount reads the number of OOM kills in a memory cgroup (v1:
// memory.oom_control, since Linux 4.13; v2: memory.events).
func oomCount(dir string, v2 bool) uint64 {
	if dir == "" {
		return 0
	}
	file := "memory.oom_control"
	if v2 {
		file = "memory.events"
	}
	b, err := os.ReadFile(filepath.Join(dir, file))
	if err != nil {
		return 0
	}
	for _, line := range strings.Split(string(b), "\n") {
		if v, ok := strings.CutPrefix(line, "oom_kill "); ok {
			n, _ := strconv.ParseUint(strings.TrimSpace(v), 10, 64)
			return n
		}
	}
	return 0
}

// readTerminal reads process.terminal from the bundle's config.json; the
// helper reads and checks the whole spec.
func readTerminal(bundle string) (bool, error) {
	b, err := os.ReadFile(filepath.Join(bundle, "config.json"))
	if err != nil {
		return false, err
	}
	var spec struct {
		Process *struct {
			Terminal bool `json:"terminal"`
		} `json:"process"`
	}
	if err := json.Unmarshal(b, &spec); err != nil {
		return false, fmt.Errorf("config.json: %w", err)
	}
	if spec.Process == nil {
		return false, fmt.Errorf("config.json: no process")
	}
	return spec.Process.Terminal, nil
}
