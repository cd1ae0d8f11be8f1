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
	// stdinOnce: close stdin after the first attach detaches (attach is
	// not implemented yet; the pipe is kept open).
	stdinOnce bool
	readers   []*os.File // our ends of the output pipes / console
	pumps     sync.WaitGroup
	exited    chan struct{} // closed once the exit is recorded
	memCg     string        // memory cgroup directory, for the OOM count
	cgV2      bool
	oomBase   uint64
	// ownPidNS: the container has a PID namespace of its own, so killing
	// its init kills all of its processes. Like memCg, it is set at create
	// before the container is published and only read afterwards; false
	// when adopted, which makes every kill go through a helper.
	ownPidNS bool
	adopted  bool
	deleted  bool
}

func (c *ctr) snapshot() *wire.ContainerState {
	c.mu.Lock()
	defer c.mu.Unlock()
	st := c.st
	return &st
}

func (m *monitor) get(id string) (*ctr, error) {
	m.mu.Lock()
	defer m.mu.Unlock()
	c := m.ctrs[id]
	if c == nil {
		return nil, errf(wire.CodeNotFound, "container %s not found in pod %s", id, m.pod)
	}
	return c, nil
}

func (m *monitor) writeState(c *ctr) {
	if err := wire.WriteStateFile(m.stateDir, &c.st); err != nil {
		m.log.Errorf("writing state file of %s: %v", c.id, err)
	}
}

// create creates a container (wire.OpCreate) or, for wire.OpRun, creates
// and starts it with a single helper run.
func (m *monitor) create(req *wire.Request) (_ *wire.ContainerState, retErr error) {
	id := req.Container
	if !filepath.IsAbs(req.Bundle) {
		return nil, errf(wire.CodeInvalidArgument, "bundle must be an absolute path")
	}
	if !filepath.IsAbs(req.LogPath) {
		return nil, errf(wire.CodeInvalidArgument, "log path must be an absolute path")
	}
	m.mu.Lock()
	_, exists := m.ctrs[id]
	m.mu.Unlock()
	if exists {
		return nil, errf(wire.CodeAlreadyExists, "container %s already exists", id)
	}
	log := m.log.with("container", id)
	specTty, err := readTerminal(req.Bundle)
	if err != nil {
		return nil, errf(wire.CodeInvalidArgument, "bundle %s: %v", req.Bundle, err)
	}
	tty := req.Tty || specTty
	logw, err := crilog.Open(req.LogPath)
	if err != nil {
		return nil, errf(wire.CodeInvalidArgument, "log file: %v", err)
	}
	c := &ctr{
		id:        id,
		log:       logw,
		stdinOnce: req.StdinOnce,
		exited:    make(chan struct{}),
		st: wire.ContainerState{
			ID:      id,
			Pod:     m.pod,
			Status:  wire.StatusCreated,
			Bundle:  req.Bundle,
			LogPath: req.LogPath,
		},
	}
	// Files handed to the helper (and on to the container), closed on our
	// side once it ran.
	var childFiles []*os.File
	defer func() {
		for _, f := range childFiles {
			f.Close()
		}
		if retErr != nil {
			c.closeIO()
		}
	}()
	run := req.Op == wire.OpRun
	hop := helperapi.OpCreate
	if run {
		hop = helperapi.OpRun
	}
	hreq := &helperapi.Request{Op: hop, ID: id, Bundle: req.Bundle, Tty: tty,
		StdinFd: -1, StdoutFd: -1, StderrFd: -1, ConsoleFd: -1}
	nextFd := func(f *os.File) int {
		childFiles = append(childFiles, f)
		return 2 + len(childFiles)
	}
	var consoleSock *os.File
	if tty {
		fds, err := unix.Socketpair(unix.AF_UNIX, unix.SOCK_STREAM|unix.SOCK_CLOEXEC, 0)
		if err != nil {
			return nil, err
		}
		// Our end is non-blocking so that receiving parks no thread.
		if err := unix.SetNonblock(fds[0], true); err != nil {
			unix.Close(fds[0])
			unix.Close(fds[1])
			return nil, err
		}
		consoleSock = os.NewFile(uintptr(fds[0]), "console-socket")
		defer consoleSock.Close()
		hreq.ConsoleFd = nextFd(os.NewFile(uintptr(fds[1]), "console-socket-child"))
	} else {
		for _, s := range []crilog.Stream{crilog.Stdout, crilog.Stderr} {
			r, w, err := os.Pipe()
			if err != nil {
				return nil, err
			}
			c.readers = append(c.readers, r)
			if s == crilog.Stdout {
				hreq.StdoutFd = nextFd(w)
			} else {
				hreq.StderrFd = nextFd(w)
			}
		}
	}
	if req.Stdin && !tty {
		r, w, err := os.Pipe()
		if err != nil {
			return nil, err
		}
		hreq.StdinFd = nextFd(r)
		c.stdin = w
	}

	// Everything up to tracking the init happens under opMu: the init is
	// our child once the helper exited, and no stray reaping can take its
	// status before the exit handler is in place.
	m.opMu.Lock()
	hresp, err := m.callHelper(hreq, childFiles...)
	if err != nil {
		var ce *codeError
		if !errors.As(err, &ce) || ce.Code != wire.CodeAlreadyExists {
			// A helper that failed half-way (or was killed) may leave
			// runtime state and cgroups behind.
			m.destroyLeftover(id)
		}
		m.opMu.Unlock()
		m.reaper.kick()
		return nil, err
	}
	for _, f := range childFiles {
		f.Close()
	}
	childFiles = nil
	c.st.Pid = hresp.Pid
	c.st.PidStartTime = hresp.PidStartTime
	c.st.CreatedAt = time.Now().UnixNano()
	if run {
		c.st.StartedAt = c.st.CreatedAt
		c.st.Status = wire.StatusRunning
	}
	c.memCg, c.cgV2 = hresp.MemCg, hresp.CgV2
	c.ownPidNS = hresp.OwnPidNS
	c.oomBase = oomCount(c.memCg, c.cgV2)
	var consoleErr error
	if tty {
		// The init sent the console before it reported ready, so the
		// message is queued already.
		console, err := recvFd(consoleSock)
		if err == nil {
			c.readers = append(c.readers, console)
			if req.Stdin {
				c.stdin = console
			}
			c.pump(console, crilog.Stdout, true)
		}
		consoleErr = err
	} else {
		c.pump(c.readers[0], crilog.Stdout, false)
		c.pump(c.readers[1], crilog.Stderr, false)
	}
	m.reaper.track(c.st.Pid, func(ws unix.WaitStatus, ok bool) { m.onExit(c, ws, ok) })
	m.opMu.Unlock()
	m.reaper.kick()
	if run {
		// "run" is the pause container: the pod's first container
		// follows, a helper can start now.
		m.prewarm()
	}
	if consoleErr != nil {
		c.mu.Lock()
		c.deleted = true // no state file for it
		c.mu.Unlock()
		m.destroyLater(c)
		return nil, fmt.Errorf("receive console: %w", consoleErr)
	}

	m.mu.Lock()
	m.ctrs[id] = c
	m.mu.Unlock()
	c.mu.Lock()
	if c.st.Status != wire.StatusExited {
		m.writeState(c)
	}
	c.mu.Unlock()
	if run {
		log.Infof("created and started, pid %d", c.st.Pid)
	} else {
		log.Infof("created, pid %d", c.st.Pid)
	}
	m.scheduleTrim()
	return c.snapshot(), nil
}

// destroyLater kills and removes a container whose creation failed
// half-way.
func (m *monitor) destroyLater(c *ctr) {
	go func() {
		_ = m.signal(c, int(unix.SIGKILL))
		select {
		case <-c.exited:
		case <-time.After(10 * time.Second):
		}
		m.opMu.Lock()
		_, _ = m.callHelper(&helperapi.Request{Op: helperapi.OpDestroy, ID: c.id, Bundle: c.snapshot().Bundle})
		m.opMu.Unlock()
		m.reaper.kick()
		_ = os.Remove(wire.StateFilePath(m.stateDir, c.id))
	}()
}

// destroyLeftover destroys the libcontainer state of a container the
// monitor does not track, if there is any; the caller holds opMu.
func (m *monitor) destroyLeftover(id string) bool {
	if _, err := os.Stat(filepath.Join(m.root, id)); err != nil {
		return false
	}
	if _, err := m.callHelper(&helperapi.Request{Op: helperapi.OpDestroy, ID: id}); err != nil {
		m.log.with("container", id).Warnf("removing leftover runtime state: %v", err)
	}
	return true
}

// pump copies one output stream to the log until EOF.
func (c *ctr) pump(r *os.File, s crilog.Stream, tty bool) {
	c.pumps.Add(1)
	cp := c.log.NewCopier(s, tty)
	go func() {
		defer c.pumps.Done()
		_, _ = cp.ReadFrom(r)
		r.Close()
	}()
}

// closeIO closes the log and our ends of the stdio.
func (c *ctr) closeIO() {
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
func (m *monitor) onExit(c *ctr, ws unix.WaitStatus, ok bool) {
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
		c.mu.Lock()
		c.st.Status = wire.StatusExited
		c.st.FinishedAt = finished
		c.st.ExitCode = code
		c.st.OOMKilled = oom
		c.st.Reason = reason
		c.st.Message = msg
		if !c.deleted {
			m.writeState(c)
		}
		c.mu.Unlock()
		close(c.exited)
		m.log.with("container", c.id).Infof("exited with %d (%s)", code, reason)
	}()
}

func (m *monitor) start(id string) (*wire.ContainerState, error) {
	c, err := m.get(id)
	if err != nil {
		return nil, err
	}
	c.mu.Lock()
	if c.st.Status != wire.StatusCreated || c.st.StartedAt != 0 {
		st := c.st.Status
		c.mu.Unlock()
		return nil, errf(wire.CodeFailedPrecondition, "container %s is %s, not created", id, st)
	}
	c.st.StartedAt = time.Now().UnixNano()
	c.mu.Unlock()

	c.mu.Lock()
	pid := c.st.Pid
	c.mu.Unlock()
	m.opMu.Lock()
	err = startViaFifo(m.root, id, pid)
	m.opMu.Unlock()
	if errors.Is(err, errNotStartable) {
		err = errf(wire.CodeFailedPrecondition, "container %s: %v", id, err)
	}
	m.reaper.kick()
	c.mu.Lock()
	defer c.mu.Unlock()
	if err != nil {
		if c.st.Status == wire.StatusCreated {
			c.st.StartedAt = 0
		}
		return nil, err
	}
	if c.st.Status == wire.StatusCreated {
		c.st.Status = wire.StatusRunning
		m.writeState(c)
	}
	m.log.with("container", id).Infof("started")
	st := c.st
	return &st, nil
}

func (m *monitor) kill(id string, sig int) error {
	c, err := m.get(id)
	if err != nil {
		return err
	}
	if sig <= 0 || sig >= 65 {
		return errf(wire.CodeInvalidArgument, "invalid signal %d", sig)
	}
	if c.snapshot().Status == wire.StatusExited {
		return errf(wire.CodeFailedPrecondition, "container %s is not running", id)
	}
	return m.signal(c, sig)
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
func (m *monitor) signal(c *ctr, sig int) error {
	snap := c.snapshot()
	direct := c.ownPidNS || unix.Signal(sig) != unix.SIGKILL
	if direct && snap.Status != wire.StatusExited && m.reaper.kill(snap.Pid, unix.Signal(sig)) == nil {
		return nil
	}
	m.opMu.Lock()
	_, err := m.callHelper(&helperapi.Request{Op: helperapi.OpKill, ID: c.id, Bundle: snap.Bundle, Signal: sig})
	m.opMu.Unlock()
	m.reaper.kick()
	var ce *codeError
	if errors.As(err, &ce) && ce.Code == wire.CodeNotFound && m.reaper.kill(snap.Pid, unix.Signal(sig)) == nil {
		m.log.with("container", c.id).Warnf("no runtime state: signalled its init %d directly", snap.Pid)
		return nil
	}
	return err
}

func (m *monitor) state(id string) (*wire.ContainerState, error) {
	c, err := m.get(id)
	if err != nil {
		return nil, err
	}
	return c.snapshot(), nil
}

func (m *monitor) list() []wire.ContainerState {
	m.mu.Lock()
	cs := make([]*ctr, 0, len(m.ctrs))
	for _, c := range m.ctrs {
		cs = append(cs, c)
	}
	m.mu.Unlock()
	out := make([]wire.ContainerState, 0, len(cs))
	for _, c := range cs {
		out = append(out, *c.snapshot())
	}
	return out
}

// wait answers once the container exited, or gives up when the client
// closes the connection.
func (m *monitor) wait(conn *os.File, id string) (*wire.ContainerState, error) {
	c, err := m.get(id)
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
		return c.snapshot(), nil
	case <-gone:
		return nil, errf(wire.CodeUnavailable, "client went away")
	}
}

func (m *monitor) reopenLog(id string) error {
	c, err := m.get(id)
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
func (m *monitor) delete(id string, force bool) error {
	c, err := m.get(id)
	if err != nil {
		// Not ours, but libcontainer state may be left by a failed create.
		m.opMu.Lock()
		found := m.destroyLeftover(id)
		m.opMu.Unlock()
		m.reaper.kick()
		if found {
			return nil
		}
		return err
	}
	if c.snapshot().Status != wire.StatusExited {
		if !force {
			return errf(wire.CodeFailedPrecondition, "container %s has not exited", id)
		}
		_ = m.signal(c, int(unix.SIGKILL))
		select {
		case <-c.exited:
		case <-time.After(10 * time.Second):
			return errf(wire.CodeDeadlineExceeded, "container %s did not exit after SIGKILL", id)
		}
	}
	m.opMu.Lock()
	_, err = m.callHelper(&helperapi.Request{Op: helperapi.OpDestroy, ID: id, Bundle: c.snapshot().Bundle})
	m.opMu.Unlock()
	m.reaper.kick()
	if err != nil {
		return err
	}
	c.mu.Lock()
	c.deleted = true
	c.closeIO()
	c.mu.Unlock()
	if err := os.Remove(wire.StateFilePath(m.stateDir, id)); err != nil && !os.IsNotExist(err) {
		m.log.Warnf("removing state file: %v", err)
	}
	m.mu.Lock()
	delete(m.ctrs, id)
	m.mu.Unlock()
	m.log.with("container", id).Infof("deleted")
	m.scheduleTrim()
	return nil
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

// pidStartTime returns field 22 of /proc/PID/stat (0 if unknown).
func pidStartTime(pid int) uint64 {
	b, err := os.ReadFile("/proc/" + strconv.Itoa(pid) + "/stat")
	if err != nil {
		return 0
	}
	s := string(b)
	i := strings.LastIndexByte(s, ')')
	if i < 0 {
		return 0
	}
	f := strings.Fields(s[i+1:])
	// f[0] is field 3 (state); start time is field 22.
	if len(f) < 20 {
		return 0
	}
	v, _ := strconv.ParseUint(f[19], 10, 64)
	return v
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
