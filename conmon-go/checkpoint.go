package main

import (
	"path/filepath"
	"time"

	"golang.org/x/sys/unix"

	"github.com/noded-dev/noded/conmon-go/internal/helperapi"
	"github.com/noded-dev/noded/internal/oci/wire"
)

// restoreFrom is what a container created for a restore keeps until its
// start: no process exists before then, the start restores one.
type restoreFrom struct {
	dir, workDir, criuPath string
	stdin                  bool
}

// pendingRestore says the container was created from a checkpoint and
// not started yet: it has no process to signal or wait for.
func (c *ctr) pendingRestore() bool {
	c.mu.Lock()
	defer c.mu.Unlock()
	return c.restore != nil && c.st.Pid == 0
}

// checkpoint dumps a running container with CRIU (wire.OpCheckpoint); the
// helper does it, the container's init stays the monitor's child. With
// Exit, CRIU kills the container once dumped and the reaper records its
// exit as for any other kill. A container with a terminal is refused:
// its pty master is the monitor's, which a restore could not give back.
func (cs *containers) checkpoint(req *wire.Request) error {
	c, snap, err := cs.running(req.Container)
	if err != nil {
		return err
	}
	if c.console != nil {
		return errf(wire.CodeFailedPrecondition, "container %s has a terminal: checkpointing it is not supported", req.Container)
	}
	if !filepath.IsAbs(req.Dir) || !filepath.IsAbs(req.WorkDir) {
		return errf(wire.CodeInvalidArgument, "checkpoint directories must be absolute paths")
	}
	_, err = cs.helpers.run(&helperapi.Request{Op: helperapi.OpCheckpoint, ID: req.Container, Bundle: snap.Bundle,
		Dir: req.Dir, WorkDir: req.WorkDir, Exit: req.Exit, CriuPath: req.CriuPath})
	if err == nil {
		cs.log.with("container", req.Container).Infof("checkpointed (exit: %v)", req.Exit)
	}
	return err
}

// freeze pauses or resumes a running container (wire.OpPause,
// wire.OpResume) through a helper; the monitor's status stays running (the
// CRI knows no paused state). One that exited is FailedPrecondition, which
// a pod checkpoint's recovery takes as nothing left to resume.
func (cs *containers) freeze(req *wire.Request) error {
	_, snap, err := cs.running(req.Container)
	if err != nil {
		return err
	}
	op := helperapi.OpPause
	if req.Op == wire.OpResume {
		op = helperapi.OpResume
	}
	_, err = cs.helpers.run(&helperapi.Request{Op: op, ID: req.Container, Bundle: snap.Bundle})
	return err
}

// createForRestore records a container that its start restores from the
// CRIU images in req.Restore (wire.OpCreate with Restore): nothing runs
// yet, so no helper either; the state file says created, without a pid.
func (cs *containers) createForRestore(req *wire.Request) (*wire.ContainerState, error) {
	tty, err := cs.checkCreate(req)
	if err != nil {
		return nil, err
	}
	if tty {
		return nil, errf(wire.CodeInvalidArgument, "a container with a terminal cannot be restored")
	}
	if !filepath.IsAbs(req.Restore) || !filepath.IsAbs(req.WorkDir) {
		return nil, errf(wire.CodeInvalidArgument, "restore directories must be absolute paths")
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
	c.restore = &restoreFrom{dir: req.Restore, workDir: req.WorkDir, criuPath: req.CriuPath, stdin: req.Stdin}
	c.st.CreatedAt = time.Now().UnixNano()
	cs.publish(c)
	cs.log.with("container", c.id).Infof("created for a restore from %s", req.Restore)
	return c.snapshot(), nil
}

// startRestore is the start of a container created for a restore (the
// caller, start, has marked the start in progress): new stdio pipes, a
// restore helper, then the restored init is taken over as create takes
// over a new one. A failed restore leaves the container created, so a
// start can try again.
func (cs *containers) startRestore(c *ctr) (*wire.ContainerState, error) {
	c.mu.Lock()
	r := c.restore
	sio, err := c.openStdio(r.stdin, false)
	c.mu.Unlock()
	defer sio.close()
	fail := func(err error) (*wire.ContainerState, error) {
		c.mu.Lock()
		defer c.mu.Unlock()
		for _, f := range c.readers {
			f.Close()
		}
		c.readers = nil
		if c.stdin != nil {
			c.stdin.Close()
			c.stdin = nil
		}
		c.st.StartedAt = 0
		return nil, err
	}
	if err != nil {
		return fail(err)
	}
	hreq := &helperapi.Request{Op: helperapi.OpRestore, ID: c.id, Bundle: c.snapshot().Bundle,
		Dir: r.dir, WorkDir: r.workDir, CriuPath: r.criuPath,
		StdinFd: sio.stdinFd, StdoutFd: sio.stdoutFd, StderrFd: sio.stderrFd, ConsoleFd: -1}
	cs.helpers.withOpMu(func() {
		var hresp *helperapi.Response
		hresp, err = cs.helpers.call(hreq, sio.child...)
		if err != nil {
			cs.destroyLeftover(c.id)
			return
		}
		sio.closeChild()
		c.mu.Lock()
		defer c.mu.Unlock()
		createdAt := c.st.CreatedAt
		c.takeInit(hresp)
		c.st.CreatedAt = createdAt
		_ = c.startOutput(sio, r.stdin)
		if terr := cs.rec.transition(c, wire.StatusRunning, nil); terr != nil {
			cs.log.with("container", c.id).Warnf("restored: %v", terr)
		}
		cs.reaper.track(c.st.Pid, func(ws unix.WaitStatus, ok bool) { cs.onExit(c, ws, ok) })
	})
	if err != nil {
		return fail(err)
	}
	cs.log.with("container", c.id).Infof("restored, pid %d", c.snapshot().Pid)
	cs.trim.schedule()
	return c.snapshot(), nil
}

// running returns a running container and its state, else NotFound or
// FailedPrecondition.
func (cs *containers) running(id string) (*ctr, *wire.ContainerState, error) {
	c, err := cs.table.get(id)
	if err != nil {
		return nil, nil, err
	}
	snap := c.snapshot()
	if snap.Status != wire.StatusRunning {
		return nil, nil, errf(wire.CodeFailedPrecondition, "container %s is %s, not running", id, snap.Status)
	}
	return c, snap, nil
}
