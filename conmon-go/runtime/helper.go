package main

import (
	"encoding/json"
	"errors"
	"fmt"
	"os"
	"path/filepath"
	"time"

	"github.com/opencontainers/cgroups/manager"
	"github.com/opencontainers/runc/libcontainer"
	"github.com/opencontainers/runc/libcontainer/configs"
	specs "github.com/opencontainers/runtime-spec/specs-go"
	"github.com/sirupsen/logrus"
	"golang.org/x/sys/unix"

	"github.com/noded-dev/noded/conmon-go/internal/helperapi"
	"github.com/noded-dev/noded/internal/oci/wire"
)

// errf returns an error carrying a wire error code.
var errf = helperapi.Errorf

// runHelper performs one libcontainer operation (see helperapi). Its
// stderr is the monitor's log.
func runHelper() int {
	logrus.SetOutput(os.Stderr)
	logrus.SetFormatter(&logrus.TextFormatter{FullTimestamp: true, TimestampFormat: time.RFC3339Nano, DisableColors: true})
	// A warm helper may idle until then: host facts are read meanwhile.
	go host()
	b, files, legacy, err := readRequest(0, warmJSON)
	if errors.Is(err, errNoRequest) {
		return 0 // a warm helper nobody needed
	}
	var req helperapi.Request
	resp := &helperapi.Response{}
	if err == nil {
		err = json.Unmarshal(b, &req)
	}
	switch {
	case err != nil:
	case legacy && req.Version == helperapi.VersionPipe:
		// A monitor started before an upgrade: its files are our fds
		// 3, 4, … already.
	case !legacy && req.Version == helperapi.Version:
		err = mapFiles(&req, files)
	default:
		err = fmt.Errorf("conmon-go-runtime speaks helper protocols %d and %d, the monitor %d: restart the monitor after an upgrade",
			helperapi.VersionPipe, helperapi.Version, req.Version)
	}
	if err == nil {
		if lvl, perr := logrus.ParseLevel(req.LogLevel); perr == nil {
			logrus.SetLevel(lvl)
		}
		log := logrus.WithFields(logrus.Fields{"helper": req.Op, "container": req.ID, "pid": os.Getpid()})
		err = helperDo(&req, resp, log)
	}
	if err != nil {
		resp.Error = err.Error()
		resp.Code = wire.CodeInternal
		var ce *helperapi.CodeError
		if errors.As(err, &ce) {
			resp.Code = ce.Code
		}
	}
	out, _ := json.Marshal(resp)
	os.Stdout.Write(out)
	return 0
}

func fdFile(fd int, name string) *os.File {
	if fd < 0 {
		return nil
	}
	return os.NewFile(uintptr(fd), name)
}

func fillState(lc *libcontainer.Container, resp *helperapi.Response) {
	st, err := lc.State()
	if err != nil {
		return
	}
	resp.Pid = st.InitProcessPid
	resp.PidStartTime = st.InitProcessStartTime
	resp.Created = st.Created.UnixNano()
	if p := st.CgroupPaths["memory"]; p != "" {
		resp.MemCg = p
	} else if p := st.CgroupPaths[""]; p != "" {
		resp.MemCg, resp.CgV2 = p, true
	}
}

func helperDo(req *helperapi.Request, resp *helperapi.Response, log *logrus.Entry) error {
	if !wire.ValidID(req.ID) || !filepath.IsAbs(req.Root) {
		return errf(wire.CodeInvalidArgument, "bad helper request")
	}
	if req.Op == helperapi.OpCreate || req.Op == helperapi.OpRun {
		return helperCreateContainer(req, resp, log)
	}
	if req.Op == helperapi.OpRestore {
		return helperRestore(req, resp, log)
	}
	lc, err := libcontainer.Load(req.Root, req.ID)
	if err != nil {
		// libcontainer says ErrNotExist when the state directory is gone.
		if !errors.Is(err, libcontainer.ErrNotExist) && !errors.Is(err, os.ErrNotExist) {
			return fmt.Errorf("load %s: %w", req.ID, err)
		}
		if req.Bundle != "" && (req.Op == helperapi.OpKill || req.Op == helperapi.OpDestroy) {
			return withoutState(req, log)
		}
		if req.Op == helperapi.OpDestroy {
			return nil // already gone
		}
		return errf(wire.CodeNotFound, "container %s: no runtime state", req.ID)
	}
	switch req.Op {
	case helperapi.OpKill:
		if err := lc.Signal(unix.Signal(req.Signal)); err != nil {
			if errors.Is(err, libcontainer.ErrNotRunning) {
				return errf(wire.CodeFailedPrecondition, "container %s is not running", req.ID)
			}
			return err
		}
	case helperapi.OpExec:
		tr := newTracer(req.Op)
		defer tr.done()
		tr.mark("load")
		return helperExecProcess(lc, req, resp, tr, log)
	case helperapi.OpDestroy:
		if err := lc.Destroy(); err != nil {
			return fmt.Errorf("destroy %s: %w", req.ID, err)
		}
	case helperapi.OpUpdate:
		return helperUpdate(lc, req, log)
	case helperapi.OpCheckpoint:
		return helperCheckpoint(lc, req, log)
	case helperapi.OpPause, helperapi.OpResume:
		return helperFreeze(lc, req)
	case helperapi.OpInspect:
		fillState(lc, resp)
		st, err := lc.Status()
		if err != nil {
			return err
		}
		resp.Status = st.String()
	default:
		return errf(wire.CodeInvalidArgument, "unknown helper operation %q", req.Op)
	}
	return nil
}

// withoutState kills or destroys a container whose libcontainer state is
// gone (removed by hand, say) while its cgroups may still hold processes:
// they are found from the bundle's spec. kill signals every process in the
// container's cgroups (NotFound when there is none); destroy kills them
// and removes the cgroups.
func withoutState(req *helperapi.Request, log *logrus.Entry) error {
	spec, err := loadSpec(req.Bundle, log)
	if err != nil {
		return errf(wire.CodeNotFound, "container %s: no runtime state, and its bundle: %v", req.ID, err)
	}
	config, err := libcontainerConfig(req.ID, req.Bundle, spec)
	if err != nil {
		return errf(wire.CodeNotFound, "container %s: no runtime state, and its bundle: %v", req.ID, err)
	}
	mgr, err := manager.New(config.Cgroups)
	if err != nil {
		return fmt.Errorf("container %s: cgroups: %w", req.ID, err)
	}
	pids, _ := mgr.GetAllPids()
	sig := unix.SIGKILL
	if req.Op == helperapi.OpKill {
		if len(pids) == 0 {
			return errf(wire.CodeNotFound, "container %s: no runtime state and no process", req.ID)
		}
		sig = unix.Signal(req.Signal)
	}
	log.Warnf("runtime state is gone: signalling the %d processes of its cgroups with %v", len(pids), sig)
	for _, pid := range pids {
		_ = unix.Kill(pid, sig)
	}
	if req.Op == helperapi.OpKill {
		return nil
	}
	// Destroy retries while the killed processes leave the cgroups.
	if err := mgr.Destroy(); err != nil {
		return fmt.Errorf("container %s: removing cgroups: %w", req.ID, err)
	}
	return nil
}

// initProcess is the container's init, spec.Process, with the stdio the
// monitor sent along with the request (no file: none).
func initProcess(spec *specs.Spec, req *helperapi.Request) (*libcontainer.Process, error) {
	proc, err := newProcess(spec.Process)
	if err != nil {
		return nil, errf(wire.CodeInvalidArgument, "%v", err)
	}
	proc.Init = true
	if f := fdFile(req.StdinFd, "stdin"); f != nil {
		proc.Stdin = f
	}
	if f := fdFile(req.StdoutFd, "stdout"); f != nil {
		proc.Stdout = f
	}
	if f := fdFile(req.StderrFd, "stderr"); f != nil {
		proc.Stderr = f
	}
	return proc, nil
}

// loadSpec reads the bundle's spec and fits it to this host.
func loadSpec(bundle string, log *logrus.Entry) (*specs.Spec, error) {
	spec, err := readSpec(bundle)
	if err != nil {
		return nil, errf(wire.CodeInvalidArgument, "bundle %s: %v", bundle, err)
	}
	if err := adjustSpec(spec, host(), log); err != nil {
		return nil, errf(wire.CodeInvalidArgument, "%v", err)
	}
	return spec, nil
}

func helperCreateContainer(req *helperapi.Request, resp *helperapi.Response, log *logrus.Entry) error {
	tr := newTracer(req.Op)
	defer tr.done()
	spec, err := loadSpec(req.Bundle, log)
	tr.mark("spec")
	if err != nil {
		return err
	}
	proc, err := initProcess(spec, req)
	if err != nil {
		return err
	}
	proc.ConsoleSocket = fdFile(req.ConsoleFd, "console-socket")
	config, err := libcontainerConfig(req.ID, req.Bundle, spec)
	if err != nil {
		return errf(wire.CodeInvalidArgument, "spec: %v", err)
	}
	tr.mark("config")
	resp.OwnPidNS = config.Namespaces.IsPrivate(configs.NEWPID)
	lc, err := libcontainer.Create(req.Root, req.ID, config)
	tr.mark("lc-create")
	if err != nil {
		if errors.Is(err, libcontainer.ErrExist) {
			return errf(wire.CodeAlreadyExists, "container %s already exists", req.ID)
		}
		return fmt.Errorf("create: %w", err)
	}
	if err := lc.Start(proc); err != nil {
		_ = lc.Destroy()
		return fmt.Errorf("start init: %w", err)
	}
	tr.mark("lc-start")
	fillState(lc, resp)
	tr.mark("state")
	if pid, err := proc.Pid(); err == nil {
		resp.Pid = pid
	}
	if req.Op == helperapi.OpRun {
		// Start in the same helper: saves a whole helper process.
		if err := lc.Exec(); err != nil {
			_ = lc.Signal(unix.SIGKILL)
			_ = lc.Destroy()
			return errf(wire.CodeFailedPrecondition, "start %s: %v", req.ID, err)
		}
		tr.mark("lc-exec")
	}
	return nil
}

func helperExecProcess(lc *libcontainer.Container, req *helperapi.Request, resp *helperapi.Response, tr *tracer, log *logrus.Entry) error {
	sp, err := readProcess(req.Bundle)
	tr.mark("spec")
	if err != nil {
		return errf(wire.CodeInvalidArgument, "bundle %s: %v", req.Bundle, err)
	}
	adjustProcess(sp, log)
	p, err := newProcess(sp)
	if err != nil {
		return errf(wire.CodeInvalidArgument, "%v", err)
	}
	p.Args = req.Args
	p.Env = append(p.Env, req.Env...)
	p.Init = false
	// A stream not given is /dev/null (os/exec's default for a nil one);
	// with a terminal (Tty, ConsoleFd) the process's stdio is the pty
	// libcontainer makes in the container, whose master goes back over
	// the console socket, as for a container's init.
	if f := fdFile(req.StdinFd, "stdin"); f != nil {
		p.Stdin = f
	}
	if f := fdFile(req.StdoutFd, "stdout"); f != nil {
		p.Stdout = f
	}
	if f := fdFile(req.StderrFd, "stderr"); f != nil {
		p.Stderr = f
	}
	if req.Tty {
		if req.ConsoleFd < 0 {
			return errf(wire.CodeInvalidArgument, "exec with a terminal needs a console socket")
		}
		p.ConsoleSocket = fdFile(req.ConsoleFd, "console-socket")
	}
	if err := lc.Run(p); err != nil {
		return errf(wire.CodeFailedPrecondition, "exec in %s: %v", req.ID, err)
	}
	tr.mark("lc-run")
	resp.Pid, _ = p.Pid()
	return nil
}

// warmJSON builds encoding/json's caches of the types an operation
// decodes and encodes (libcontainer's state with its configs.Config, which
// libcontainer also sends to the container's init, and an OCI process):
// reflecting over them is ~1 ms of a fresh process's CPU. Only a warm
// helper runs it, while it waits for its request.
func warmJSON() {
	_, _ = json.Marshal(&libcontainer.State{})
	_, _ = json.Marshal(&specs.Process{})
}

// tracer writes the duration of a helper's phases to stderr (the monitor
// log) when NODED_HELPER_TRACE is set; for profiling.
type tracer struct {
	op    string
	start time.Time
	last  time.Time
	buf   []byte
	flt   int64 // minor page faults so far
}

// minflt returns this process's minor page faults so far: on a
// paravirtualised host each costs tens of microseconds, so they are most
// of a helper's CPU time.
func minflt() int64 {
	var ru unix.Rusage
	_ = unix.Getrusage(unix.RUSAGE_SELF, &ru)
	return ru.Minflt
}

// procStart is when this process started (approximately: package init).
var procStart = time.Now()

func newTracer(op string) *tracer {
	if os.Getenv("NODED_HELPER_TRACE") == "" {
		return nil
	}
	now := time.Now()
	t := &tracer{op: op, start: procStart, last: now}
	t.flt = minflt()
	t.buf = fmt.Appendf(nil, "helper-trace %s pid %d: go-start->main %s/%dflt", op, os.Getpid(), now.Sub(procStart).Round(10*time.Microsecond), t.flt)
	return t
}

func (t *tracer) mark(phase string) {
	if t == nil {
		return
	}
	now := time.Now()
	t.buf = fmt.Appendf(t.buf, " %s %s/%dflt", phase, now.Sub(t.last).Round(10*time.Microsecond), minflt()-t.flt)
	t.flt = minflt()
	t.last = now
}

func (t *tracer) done() {
	if t == nil {
		return
	}
	var ru unix.Rusage
	_ = unix.Getrusage(unix.RUSAGE_CHILDREN, &ru)
	t.buf = fmt.Appendf(t.buf, " total %s/%dflt children %dflt\n", time.Since(t.start).Round(10*time.Microsecond), minflt(), ru.Minflt)
	out := os.Stderr
	if p := os.Getenv("NODED_HELPER_TRACE"); filepath.IsAbs(p) {
		if f, err := os.OpenFile(p, os.O_WRONLY|os.O_APPEND|os.O_CREATE, 0o600); err == nil {
			defer f.Close()
			out = f
		}
	}
	_, _ = out.Write(t.buf)
}
