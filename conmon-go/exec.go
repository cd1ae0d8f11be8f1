package main

import (
	"encoding/json"
	"fmt"
	"os"
	"time"

	"golang.org/x/sys/unix"

	"github.com/noded-dev/noded/conmon-go/internal/helperapi"
	"github.com/noded-dev/noded/internal/oci/wire"
)

// execExit is the wait status of an exec'd process (ok false: lost).
type execExit struct {
	ws unix.WaitStatus
	ok bool
}

// code is the process's exit code (128 + signal), 255 when lost.
func (e execExit) code() int32 {
	if !e.ok {
		return 255
	}
	return exitCode(e.ws)
}

// execTarget returns the running container an exec request names.
func (cs *containers) execTarget(req *wire.Request) (*ctr, error) {
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
	return c, nil
}

// startExec starts a process in container c through a helper: the helper
// joins the container and starts the process with the container's user,
// capabilities, seccomp, no_new_privs … (read from the bundle); the fd
// fields of hreq name files (3 + index). The process is ours once the
// helper exited; its exit arrives on the returned channel. opMu is held
// only while the helper runs, never while the process does.
func (cs *containers) startExec(c *ctr, hreq *helperapi.Request, files ...*os.File) (int, <-chan execExit, error) {
	hreq.Op = helperapi.OpExec
	hreq.ID = c.id
	hreq.Bundle = c.snapshot().Bundle
	exited := make(chan execExit, 1)
	var (
		pid int
		err error
	)
	cs.helpers.withOpMu(func() {
		var hresp *helperapi.Response
		hresp, err = cs.helpers.call(hreq, files...)
		cs.helpers.execCalled()
		if err == nil {
			pid = hresp.Pid
			cs.reaper.track(pid, func(ws unix.WaitStatus, ok bool) { exited <- execExit{ws, ok} })
		}
	})
	return pid, exited, err
}

// execStream runs a process whose stdio are the client's
// (wire.OpExecStream; the framing is in internal/oci/wire/stream.go):
// without a terminal the client's pipes, passed as fds, go to the helper
// and on to the process, in the order stdin, stdout, stderr of those the
// request names; with one, libcontainer makes a pty in the container and
// its master goes to the client with the first answer. The second answer
// is the exit code. When the client closes the connection first, the
// process is killed. It owns fds; an error is returned only before the
// first answer (the caller answers it).
func (cs *containers) execStream(conn *os.File, req *wire.Request, fds []int) error {
	files := make([]*os.File, 0, len(fds))
	for _, fd := range fds {
		files = append(files, os.NewFile(uintptr(fd), "exec-stdio"))
	}
	closeAll := func() {
		for _, f := range files {
			f.Close()
		}
	}
	defer closeAll()
	c, err := cs.execTarget(req)
	if err != nil {
		return err
	}
	hreq := &helperapi.Request{Args: req.Args, Env: req.Env, Tty: req.Tty, StdinFd: -1, StdoutFd: -1, StderrFd: -1, ConsoleFd: -1}
	var consoleSock *os.File
	if req.Tty {
		if len(files) != 0 {
			return errf(wire.CodeInvalidArgument, "an exec with a terminal takes no files (got %d)", len(files))
		}
		var child *os.File
		if consoleSock, child, err = newConsoleSocket(); err != nil {
			return err
		}
		defer consoleSock.Close()
		files = append(files, child)
		hreq.ConsoleFd = 3
	} else {
		n := 0
		for _, s := range []struct {
			want bool
			fd   *int
		}{{req.Stdin, &hreq.StdinFd}, {req.Stdout, &hreq.StdoutFd}, {req.Stderr, &hreq.StderrFd}} {
			if s.want {
				*s.fd = 3 + n
				n++
			}
		}
		if n != len(files) {
			return errf(wire.CodeInvalidArgument, "exec: %d files for %d streams", len(files), n)
		}
	}
	pid, exited, err := cs.startExec(c, hreq, files...)
	// The process has its ends: the client sees the end of its output
	// when the process (and its children) closed them.
	closeAll()
	if err != nil {
		return err
	}
	defer cs.trim.schedule()
	log := cs.log.with("container", c.id).with("exec", pid)
	kill := func() {
		_ = cs.reaper.kill(pid, unix.SIGKILL)
		<-exited
	}
	var (
		passFds []int
		master  *os.File
	)
	if consoleSock != nil {
		// libcontainer's setns init sent the master before the helper
		// returned: it waits in the socket.
		_ = consoleSock.SetReadDeadline(time.Now().Add(10 * time.Second))
		if master, err = recvFd(consoleSock); err != nil {
			kill()
			return fmt.Errorf("receiving the exec's terminal: %w", err)
		}
		defer master.Close()
		fd, err := rawFd(master)
		if err != nil {
			kill()
			return err
		}
		passFds = []int{fd}
	}
	b, _ := json.Marshal(&wire.Response{Pid: pid})
	_ = conn.SetWriteDeadline(time.Now().Add(30 * time.Second))
	err = sendLine(conn, append(b, '\n'), passFds)
	if master != nil {
		master.Close() // the client has its own now
	}
	if err != nil {
		log.Infof("client gone before the process started: killing it")
		kill()
		return nil
	}
	gone := watchClose(conn)
	select {
	case e := <-exited:
		writeResponse(conn, &wire.Response{Exec: &wire.ExecResult{ExitCode: e.code()}})
	case <-gone:
		log.Infof("client went away: killing the exec'd process")
		kill()
	}
	return nil
}
