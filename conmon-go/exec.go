package main

import (
	"os"
	"time"

	"golang.org/x/sys/unix"

	"github.com/noded-dev/noded/conmon-go/internal/helperapi"
	"github.com/noded-dev/noded/internal/oci/wire"
)

// execGrace bounds how long the output of an exec'd process is read after
// it exited (a background child may hold the pipes).
const execGrace = time.Second

// exec runs a process in a running container (ExecSync): it captures
// stdout and stderr, kills the process with SIGKILL when the timeout
// expires (TimedOut is then set and the exit code is 137), and returns
// its exit code.
func (cs *containers) exec(req *wire.Request) (*wire.ExecResult, error) {
	c, err := cs.table.get(req.Container)
	if err != nil {
		return nil, err
	}
	if st := c.snapshot().Status; st != wire.StatusRunning {
		return nil, errf(wire.CodeFailedPrecondition, "container %s is %s, not running", c.id, st)
	}
	if len(req.Args) == 0 {
		return nil, errf(wire.CodeInvalidArgument, "empty command")
	}
	outR, outW, err := os.Pipe()
	if err != nil {
		return nil, err
	}
	errR, errW, err := os.Pipe()
	if err != nil {
		outR.Close()
		outW.Close()
		return nil, err
	}
	type exit struct {
		ws unix.WaitStatus
		ok bool
	}
	exited := make(chan exit, 1)
	// The helper joins the container and starts the process (with the
	// container's user, capabilities, seccomp, …, read from the bundle);
	// the process is ours once the helper exited.
	var pid int
	cs.helpers.withOpMu(func() {
		var hresp *helperapi.Response
		hresp, err = cs.helpers.call(&helperapi.Request{Op: helperapi.OpExec, ID: c.id, Bundle: c.snapshot().Bundle,
			Args: req.Args, Env: req.Env, StdinFd: -1, StdoutFd: 3, StderrFd: 4, ConsoleFd: -1}, outW, errW)
		if err == nil {
			pid = hresp.Pid
			cs.reaper.track(pid, func(ws unix.WaitStatus, ok bool) { exited <- exit{ws, ok} })
		}
	})
	outW.Close()
	errW.Close()
	if err != nil {
		outR.Close()
		errR.Close()
		return nil, err
	}
	defer cs.trim.schedule()

	res := &wire.ExecResult{}
	var outTrunc, errTrunc bool
	outDone := capture(outR, &res.Stdout, &outTrunc)
	errDone := capture(errR, &res.Stderr, &errTrunc)

	var timeout <-chan time.Time
	if req.TimeoutMs > 0 {
		t := time.NewTimer(time.Duration(req.TimeoutMs) * time.Millisecond)
		defer t.Stop()
		timeout = t.C
	}
	var e exit
	select {
	case e = <-exited:
	case <-timeout:
		res.TimedOut = true
		_ = cs.reaper.kill(pid, unix.SIGKILL)
		e = <-exited
	}
	grace := time.NewTimer(execGrace)
	defer grace.Stop()
	for _, d := range []chan struct{}{outDone, errDone} {
		select {
		case <-d:
		case <-grace.C:
			outR.Close()
			errR.Close()
			<-d
		}
	}
	outR.Close()
	errR.Close()
	res.Truncated = outTrunc || errTrunc
	res.ExitCode = 255
	if e.ok {
		res.ExitCode = exitCode(e.ws)
	}
	return res, nil
}

// capture reads r into *dst, keeping at most wire.MaxExecOutput bytes.
func capture(r *os.File, dst *[]byte, truncated *bool) chan struct{} {
	done := make(chan struct{})
	go func() {
		defer close(done)
		buf := make([]byte, 4096)
		for {
			n, err := r.Read(buf)
			if n > 0 {
				room := wire.MaxExecOutput - len(*dst)
				if n > room {
					n = room
					*truncated = true
				}
				*dst = append(*dst, buf[:n]...)
			}
			if err != nil { // io.EOF, or closed by us after the grace period
				return
			}
		}
	}()
	return done
}
