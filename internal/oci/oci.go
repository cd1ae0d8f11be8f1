// Package oci is noded's side of the container monitor, conmon-go: it
// starts one monitor per pod and asks it to create, start, signal, exec in
// and delete the pod's containers.
//
// A monitor runs in its own session and outlives noded (it is noded's
// child only until noded exits), and the protocol is one connection per
// request, so a Runtime keeps no state but its monitors' pids to reap: a
// noded restarted after a crash (even SIGKILL) makes a new Runtime with
// the same Options and carries on; StartMonitor finds the running monitor
// again. The one goroutine a Runtime runs (it reaps the monitors it
// started) ends with Close. The monitor records every container's
// state in <StateDir>/<container>.json when it changes; State falls back to
// that file when the monitor is gone, so an exit is not lost with it.
//
// Errors carry the internal/errdefs classes: NotFound for an unknown
// container, AlreadyExists, InvalidArgument, FailedPrecondition (wrong
// state, e.g. Kill of an exited container), Unavailable when no monitor
// answers, DeadlineExceeded for an ExecSync timeout.
//
// This package does not import libcontainer; conmon-go-runtime, the
// monitor's helper, does (see conmon-go/README.md).
package oci

import (
	"context"
	"errors"
	"fmt"
	"os"
	"path/filepath"
	"slices"
	"strings"
	"sync"
	"syscall"
	"time"

	"github.com/sirupsen/logrus"

	"github.com/noded-dev/noded/internal/callend"
	"github.com/noded-dev/noded/internal/errdefs"
	"github.com/noded-dev/noded/internal/ids"
	"github.com/noded-dev/noded/internal/kmutex"
	"github.com/noded-dev/noded/internal/log"
	"github.com/noded-dev/noded/internal/oci/runclayout"
	"github.com/noded-dev/noded/internal/oci/wire"
	"github.com/noded-dev/noded/internal/procfs"
)

// PodID identifies a pod (sandbox); it names the pod's monitor.
type PodID = ids.SandboxID

// ContainerID identifies a container (the pause container included).
type ContainerID = ids.ContainerID

// Status is a container's lifecycle state.
type Status int

// Statuses.
const (
	StatusUnknown Status = iota
	StatusCreated
	StatusRunning
	StatusExited
)

func (s Status) String() string {
	switch s {
	case StatusCreated:
		return "created"
	case StatusRunning:
		return "running"
	case StatusExited:
		return "exited"
	}
	return "unknown"
}

func parseStatus(s string) Status {
	switch s {
	case wire.StatusCreated:
		return StatusCreated
	case wire.StatusRunning:
		return StatusRunning
	case wire.StatusExited:
		return StatusExited
	}
	return StatusUnknown
}

// State is a container's state as the monitor (or its state file) knows it.
type State struct {
	ID     ContainerID
	Pod    PodID
	Status Status
	// Pid of the container's init in the host PID namespace (0 if none).
	Pid        int
	CreatedAt  time.Time // zero when unset
	StartedAt  time.Time
	FinishedAt time.Time
	// ExitCode is the exit status, or 128+signal when killed by a signal
	// (137 for SIGKILL). 255 with Reason "Unknown" when the exit happened
	// while no monitor watched the container.
	ExitCode  int32
	OOMKilled bool
	// Reason is "Completed", "Error", "OOMKilled" or "Unknown" once exited.
	Reason  string
	Message string
	Bundle  string
	LogPath string
}

func nsTime(ns int64) time.Time {
	if ns == 0 {
		return time.Time{}
	}
	return time.Unix(0, ns)
}

func fromWire(s *wire.ContainerState) State {
	return State{
		ID:         ContainerID(s.ID),
		Pod:        PodID(s.Pod),
		Status:     parseStatus(s.Status),
		Pid:        s.Pid,
		CreatedAt:  nsTime(s.CreatedAt),
		StartedAt:  nsTime(s.StartedAt),
		FinishedAt: nsTime(s.FinishedAt),
		ExitCode:   s.ExitCode,
		OOMKilled:  s.OOMKilled,
		Reason:     s.Reason,
		Message:    s.Message,
		Bundle:     s.Bundle,
		LogPath:    s.LogPath,
	}
}

// Options configure a Runtime.
type Options struct {
	// ConmonPath is the conmon-go binary (the monitor).
	ConmonPath string
	// RuntimePath is conmon-go-runtime, the monitor's libcontainer helper;
	// empty means conmon-go-runtime in the directory of ConmonPath.
	RuntimePath string
	// RunDir holds the monitors' sockets, locks and libcontainer state; a
	// tmpfs such as /run/noded/oci. Keep it short: sockets are
	// <RunDir>/<first 12 characters of the pod id>.sock and a unix socket
	// path has at most 107 bytes.
	RunDir string
	// StateDir holds the container state files; it must survive a restart
	// of noded (e.g. /var/lib/noded/state/oci).
	StateDir string
	// MonitorLogLevel is the monitors' log level (default "info"); they
	// log to <RunDir>/<pod>.log.
	MonitorLogLevel string
	// Logger is the Runtime's logger; nil discards its lines.
	Logger *logrus.Entry
	// CriuPath is the criu binary of checkpoints and restores; empty:
	// criu on the monitors' PATH.
	CriuPath string
}

// Runtime talks to the pods' monitors. It is safe for concurrent use.
type Runtime struct {
	o      Options
	log    *logrus.Entry
	locks  kmutex.KeyedMutex[PodID] // serialises monitor start/stop per pod
	reaper reaper                   // collects the monitors this process started
	// bulkExecs are the slots of ExecSyncs whose output passed
	// bulkOutput: one more waits, its process blocked on its full pipe,
	// so that however many run at once noded holds a few outputs of up to
	// 16 MiB, not all of them.
	bulkExecs chan struct{}
	metrics   *monitorMetrics
	// sealedRuntime is the sealed copy of RuntimePath the monitors start
	// their helpers from (sealed.go); nil if it could not be made (then
	// libcontainer seals a copy for each process) and after Close.
	// sealedMu guards it: a monitor's start holds it for reading.
	sealedMu      sync.RWMutex
	sealedRuntime *os.File
}

// bulkExecSlots ExecSyncs at a time may keep more than bulkOutput, from
// their first byte past it until their answer was sent (callend). One
// answer of 16 MiB costs noded about three times that (the output, its
// encoded copy, the garbage collector's headroom): twelve calls of 100 MB
// at once raised noded's peak RSS by ~120 MiB with one slot of 256 KiB,
// ~190 MiB with two slots of 1 MiB released when the handler returned.
// Probe output is a few bytes, and waiting costs a bulky call nothing but
// time.
const (
	bulkExecSlots = 1
	bulkOutput    = 256 << 10
)

// New checks the options and creates the directories.
func New(o Options) (*Runtime, error) {
	if o.ConmonPath == "" {
		return nil, errdefs.InvalidArgument("oci: conmon path not set")
	}
	if fi, err := os.Stat(o.ConmonPath); err != nil || fi.IsDir() || fi.Mode()&0o111 == 0 {
		return nil, errdefs.InvalidArgument("oci: conmon-go %q is not an executable file", o.ConmonPath)
	}
	if o.RuntimePath == "" {
		o.RuntimePath = filepath.Join(filepath.Dir(o.ConmonPath), "conmon-go-runtime")
	}
	if fi, err := os.Stat(o.RuntimePath); err != nil || fi.IsDir() || fi.Mode()&0o111 == 0 {
		return nil, errdefs.InvalidArgument("oci: conmon-go-runtime %q is not an executable file", o.RuntimePath)
	}
	if !filepath.IsAbs(o.RunDir) || !filepath.IsAbs(o.StateDir) {
		return nil, errdefs.InvalidArgument("oci: run dir and state dir must be absolute paths")
	}
	o.RunDir, o.StateDir = filepath.Clean(o.RunDir), filepath.Clean(o.StateDir)
	if l := len(wire.SocketPath(o.RunDir, "123456789012")); l > wire.MaxSocketPath {
		return nil, errdefs.InvalidArgument("oci: run dir %q is too long for unix socket paths (%d > %d bytes)", o.RunDir, l, wire.MaxSocketPath)
	}
	for _, d := range []string{o.RunDir, o.StateDir} {
		if err := os.MkdirAll(d, 0o700); err != nil {
			return nil, fmt.Errorf("oci: %w", err)
		}
	}
	if o.MonitorLogLevel == "" {
		o.MonitorLogLevel = "info"
	}
	r := &Runtime{
		o: o, log: log.Or(o.Logger).WithField("component", "oci"), bulkExecs: make(chan struct{}, bulkExecSlots),
		metrics: newMonitorMetrics(),
	}
	sealed, err := sealedCopy(o.RuntimePath)
	if err != nil {
		r.log.WithError(err).Warn("no sealed copy of conmon-go-runtime: libcontainer will seal one for every container process (more work per create and exec)")
	}
	r.sealedRuntime = sealed
	return r, nil
}

// Close ends the Runtime's background work: the goroutine that reaps the
// monitors it started (it stops listening for SIGCHLD, and Close returns
// once it has ended). The monitors keep running: they outlive noded by
// design, and the next Runtime finds them. Call Close when noded stops
// using the Runtime, at shutdown; a monitor that exits after it, or that a
// later call starts, stays a zombie until noded exits (then init reaps
// it), and starts its helpers from conmon-go-runtime's path (the sealed
// copy is closed). Close may be called more than once and returns nil.
func (r *Runtime) Close() error {
	r.reaper.close()
	r.sealedMu.Lock()
	if r.sealedRuntime != nil {
		r.sealedRuntime.Close()
		r.sealedRuntime = nil
	}
	r.sealedMu.Unlock()
	return nil
}

// CreateRequest describes a container to create.
type CreateRequest struct {
	Pod PodID
	ID  ContainerID
	// Bundle is a directory with the OCI config.json; the rootfs is
	// spec.Root.Path (relative paths are relative to the bundle).
	Bundle string
	// LogPath is the CRI log file the container's output goes to.
	LogPath string
	// Stdin keeps a stdin pipe open for a later attach; StdinOnce closes
	// it after the first attach ends. Tty gives the container a terminal
	// (its output is logged as stdout).
	Stdin, StdinOnce, Tty bool
	// Restore, when set, is a directory of CRIU images (checkpoint.go):
	// the container is created without a process, and Start restores
	// its init from them (RestoreWork: CRIU's work directory).
	Restore, RestoreWork string
}

func checkIDs(pod PodID, id ContainerID) error {
	if !wire.ValidID(string(pod)) {
		return errdefs.InvalidArgument("invalid pod id %q", pod)
	}
	if !wire.ValidID(string(id)) {
		return errdefs.InvalidArgument("invalid container id %q", id)
	}
	return nil
}

// Create creates the container: its init process exists, in its
// namespaces and cgroup, but the user's program does not run before Start.
func (r *Runtime) Create(ctx context.Context, c CreateRequest) (State, error) {
	if err := checkIDs(c.Pod, c.ID); err != nil {
		return State{}, err
	}
	if !filepath.IsAbs(c.Bundle) || !filepath.IsAbs(c.LogPath) {
		return State{}, errdefs.InvalidArgument("bundle and log path must be absolute paths")
	}
	resp, err := r.callStarting(ctx, c.Pod, &wire.Request{
		Op: wire.OpCreate, Container: string(c.ID), Bundle: c.Bundle, LogPath: c.LogPath,
		Stdin: c.Stdin, StdinOnce: c.StdinOnce, Tty: c.Tty,
		Restore: c.Restore, WorkDir: c.RestoreWork, CriuPath: r.criuPath(c.Restore),
	})
	if err != nil {
		return State{}, err
	}
	return stateOf(resp)
}

// Run creates and starts the container in one monitor call (one
// conmon-go-runtime helper instead of two, so it is cheaper than Create
// followed by Start); the returned state is running, or exited if the
// program already ended. A monitor that predates the operation gets Create
// then Start. On error nothing is left running (a container that was
// created but failed to start has been destroyed by the monitor, except
// with an old monitor, where Start's error is returned after Create).
func (r *Runtime) Run(ctx context.Context, c CreateRequest) (State, error) {
	if err := checkIDs(c.Pod, c.ID); err != nil {
		return State{}, err
	}
	if !filepath.IsAbs(c.Bundle) || !filepath.IsAbs(c.LogPath) {
		return State{}, errdefs.InvalidArgument("bundle and log path must be absolute paths")
	}
	resp, err := r.callStarting(ctx, c.Pod, &wire.Request{
		Op: wire.OpRun, Container: string(c.ID), Bundle: c.Bundle, LogPath: c.LogPath,
		Stdin: c.Stdin, StdinOnce: c.StdinOnce, Tty: c.Tty,
	})
	if err != nil && errdefs.IsInvalidArgument(err) && strings.Contains(err.Error(), "unknown operation") {
		if _, err := r.Create(ctx, c); err != nil {
			return State{}, err
		}
		if err := r.Start(ctx, c.Pod, c.ID); err != nil {
			return State{}, err
		}
		return r.State(ctx, c.Pod, c.ID)
	}
	if err != nil {
		return State{}, err
	}
	return stateOf(resp)
}

// Start runs the user's program of a created container.
func (r *Runtime) Start(ctx context.Context, pod PodID, id ContainerID) error {
	if err := checkIDs(pod, id); err != nil {
		return err
	}
	_, err := r.callStarting(ctx, pod, &wire.Request{Op: wire.OpStart, Container: string(id)})
	return err
}

// Kill sends sig to the container's init (SIGKILL also kills every process
// of a container without its own PID namespace). It fails with
// FailedPrecondition once the container has exited.
func (r *Runtime) Kill(ctx context.Context, pod PodID, id ContainerID, sig syscall.Signal) error {
	if err := checkIDs(pod, id); err != nil {
		return err
	}
	_, err := r.callStarting(ctx, pod, &wire.Request{Op: wire.OpKill, Container: string(id), Signal: int(sig)})
	return err
}

// State returns the container's state. Without a monitor it reads the
// state file: a container recorded as created or running whose process is
// gone is reported exited with code 255 and reason "Unknown".
func (r *Runtime) State(ctx context.Context, pod PodID, id ContainerID) (State, error) {
	if err := checkIDs(pod, id); err != nil {
		return State{}, err
	}
	resp, err := r.call(ctx, pod, &wire.Request{Op: wire.OpState, Container: string(id)})
	if err == nil {
		return stateOf(resp)
	}
	if !errdefs.IsNotFound(err) && !isUnavailable(err) {
		return State{}, err
	}
	st, ferr := r.stateFromFile(id)
	if ferr != nil {
		if errdefs.IsNotFound(ferr) {
			return State{}, ferr
		}
		return State{}, err
	}
	return st, nil
}

// List returns the states of the pod's containers known to its monitor.
func (r *Runtime) List(ctx context.Context, pod PodID) ([]State, error) {
	if !wire.ValidID(string(pod)) {
		return nil, errdefs.InvalidArgument("invalid pod id %q", pod)
	}
	resp, err := r.call(ctx, pod, &wire.Request{Op: wire.OpList})
	if err != nil {
		return nil, err
	}
	out := make([]State, 0, len(resp.States))
	for i := range resp.States {
		out = append(out, fromWire(&resp.States[i]))
	}
	return out, nil
}

// Wait blocks until the container exited, then returns its state; it
// returns the context's error when ctx ends first. Without a monitor it
// polls the state file.
func (r *Runtime) Wait(ctx context.Context, pod PodID, id ContainerID) (State, error) {
	if err := checkIDs(pod, id); err != nil {
		return State{}, err
	}
	for {
		resp, err := r.call(ctx, pod, &wire.Request{Op: wire.OpWait, Container: string(id)})
		if err == nil {
			st, err := stateOf(resp)
			if err == nil && st.OOMKilled {
				r.metrics.oomKilled.Inc()
			}
			return st, err
		}
		if ctx.Err() != nil {
			return State{}, ctx.Err()
		}
		if !isUnavailable(err) {
			return State{}, err
		}
		st, ferr := r.stateFromFile(id)
		if ferr != nil {
			return State{}, err
		}
		if st.Status == StatusExited {
			if st.OOMKilled {
				r.metrics.oomKilled.Inc()
			}
			return st, nil
		}
		select {
		case <-ctx.Done():
			return State{}, ctx.Err()
		case <-time.After(250 * time.Millisecond):
		}
	}
}

// ExecSync runs cmd in the running container and returns its output and
// exit code. The output comes through pipes straight to this side (Exec):
// the two streams keep at most wire.MaxExecOutput bytes together and the
// rest is read and dropped. The monitor holds none of it: a
// command printing 100 MB took noded from 27 to 105 MB and the monitor
// as much again when the output came back in the monitor's JSON answer
// (captured, base64-encoded, decoded). When timeout (> 0) expires the
// process is killed and the error is of class DeadlineExceeded, with the
// output so far and exit code 137.
func (r *Runtime) ExecSync(ctx context.Context, pod PodID, id ContainerID, cmd []string, timeout time.Duration) (stdout, stderr []byte, exitCode int32, err error) {
	ectx := ctx
	if timeout > 0 {
		var cancel context.CancelFunc
		ectx, cancel = context.WithTimeout(ctx, timeout)
		defer cancel()
	}
	kept := &execOutput{room: wire.MaxExecOutput, ctx: ectx, slots: r.bulkExecs}
	// The bulk slot is held until the answer was sent, when there is an
	// RPC (callend): the output stays in memory until then.
	if !callend.Defer(ctx, kept.release) {
		defer kept.release()
	}
	out, errOut := &cappedBuffer{kept: kept}, &cappedBuffer{kept: kept}
	code, err := r.Exec(ectx, pod, id, cmd, Stdio{Out: out, Err: errOut})
	if err != nil {
		if timeout > 0 && ctx.Err() == nil && errors.Is(ectx.Err(), context.DeadlineExceeded) {
			return out.b, errOut.b, 137, errdefs.DeadlineExceeded("command %q in container %s timed out after %s", strings.Join(cmd, " "), id, timeout)
		}
		return nil, nil, -1, err
	}
	return out.b, errOut.b, code, nil
}

// execOutput is the room left for an ExecSync's output, both streams
// together (the CRI caps the whole response at 16 MiB, and the kubelet's
// client refuses a larger message), and its bulk slot: past bulkOutput,
// the output waits for one of the runtime's slots, with the process
// blocked on its pipe, until the call's context ends.
type execOutput struct {
	ctx   context.Context
	slots chan struct{}

	mu   sync.Mutex
	room int
	used int
	slot bool // holds one of slots
}

// take returns how many of n more bytes fit, after waiting for a slot
// when they make the output bulky (bulk is then true, and room what may
// still come); 0 once the context ended meanwhile.
func (o *execOutput) take(n int) (fit int, bulk bool, room int) {
	o.mu.Lock()
	defer o.mu.Unlock()
	if !o.slot && o.used+n > bulkOutput && o.room > 0 {
		select {
		case o.slots <- struct{}{}:
			o.slot, bulk = true, true
		case <-o.ctx.Done():
			o.room = 0
		}
	}
	n = min(n, o.room)
	o.room -= n
	o.used += n
	return n, bulk, o.room
}

// release gives the slot back (when the call is over).
func (o *execOutput) release() {
	o.mu.Lock()
	defer o.mu.Unlock()
	if o.slot {
		<-o.slots
		o.slot = false
	}
}

// cappedBuffer keeps what fits of what is written to it and drops the
// rest: a full ExecSync never blocks its process, a bulky one waits for
// a slot (execOutput).
type cappedBuffer struct {
	kept *execOutput
	b    []byte
}

func (c *cappedBuffer) Write(p []byte) (int, error) {
	n, bulk, room := c.kept.take(len(p))
	if bulk {
		// One allocation for what may come, rather than doublings up to
		// 16 MiB, whose garbage doubled the call's memory.
		c.b = slices.Grow(c.b, n+room)
	}
	if n > 0 {
		c.b = append(c.b, p[:n]...)
	}
	return len(p), nil
}

// ReopenLog makes the monitor reopen the container's log file (after the
// kubelet rotated it).
func (r *Runtime) ReopenLog(ctx context.Context, pod PodID, id ContainerID) error {
	if err := checkIDs(pod, id); err != nil {
		return err
	}
	_, err := r.callStarting(ctx, pod, &wire.Request{Op: wire.OpReopenLog, Container: string(id)})
	return err
}

// Update applies the cgroup resources of the container's bundle, which
// the caller rewrote, to the created or running container (its cgroups
// and its runtime state), and returns once they are written.
// FailedPrecondition when it is not running or a lowered memory limit is
// below its usage; nothing is changed then.
func (r *Runtime) Update(ctx context.Context, pod PodID, id ContainerID) error {
	if err := checkIDs(pod, id); err != nil {
		return err
	}
	_, err := r.callStarting(ctx, pod, &wire.Request{Op: wire.OpUpdate, Container: string(id)})
	// A monitor started by a noded that had no resizes does not know the
	// operation, and its answer is fixed (invalid_argument, "unknown
	// operation"): the request is not at fault, the pod's monitor is.
	if errdefs.IsInvalidArgument(err) && strings.Contains(err.Error(), "unknown operation") {
		return errdefs.FailedPrecondition("the monitor of pod %s predates in-place resize (an older noded started it): recreate the pod to resize its containers", pod.Short())
	}
	return err
}

// Delete removes the container: a container that has not exited is killed
// with SIGKILL first (as CRI's RemoveContainer requires), then its cgroups,
// runtime state and state file are removed. Its log file stays (the kubelet
// owns it). Deleting an unknown container gives NotFound.
func (r *Runtime) Delete(ctx context.Context, pod PodID, id ContainerID) error {
	if err := checkIDs(pod, id); err != nil {
		return err
	}
	req := &wire.Request{Op: wire.OpDelete, Container: string(id), Force: true}
	_, err := r.call(ctx, pod, req)
	if isUnavailable(err) && r.hasLeftovers(pod, id) {
		// The monitor died with the container still set up: a new
		// monitor adopts it and can destroy it.
		if err := r.StartMonitor(ctx, pod); err != nil {
			return err
		}
		_, err = r.call(ctx, pod, req)
	}
	switch {
	case err == nil:
		return nil
	case errdefs.IsNotFound(err) || isUnavailable(err):
		// Unknown to the monitor (e.g. after a reboot): only the state
		// file may be left.
		rmErr := os.Remove(wire.StateFilePath(r.o.StateDir, string(id)))
		if rmErr == nil {
			return nil
		}
		if os.IsNotExist(rmErr) {
			return errdefs.NotFound("container %s not found", id)
		}
		return rmErr
	}
	return err
}

// hasLeftovers reports whether libcontainer state of the container exists
// under the pod's monitor directory (the monitor's libcontainer root).
func (r *Runtime) hasLeftovers(pod PodID, id ContainerID) bool {
	return runclayout.Exists(wire.MonitorDir(r.o.RunDir, string(pod)), string(id))
}

func stateOf(resp *wire.Response) (State, error) {
	if resp.State == nil {
		return State{}, fmt.Errorf("monitor answered without a state")
	}
	return fromWire(resp.State), nil
}

// stateFromFile reads the state file, checking that a process recorded as
// alive still is.
func (r *Runtime) stateFromFile(id ContainerID) (State, error) {
	ws, err := wire.ReadStateFile(r.o.StateDir, string(id))
	if err != nil {
		if os.IsNotExist(err) {
			return State{}, errdefs.NotFound("container %s not found", id)
		}
		return State{}, err
	}
	st := fromWire(ws)
	if st.Status != StatusExited && !procfs.Alive(ws.Pid, ws.PidStartTime) {
		st.Status = StatusExited
		st.ExitCode = 255
		st.Reason = "Unknown"
		st.Message = "the container exited while no monitor watched it; its exit status is unknown"
	}
	return st, nil
}
