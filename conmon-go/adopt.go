package main

import (
	"os"
	"time"

	"golang.org/x/sys/unix"

	"github.com/noded-dev/noded/conmon-go/internal/helperapi"
	"github.com/noded-dev/noded/internal/oci/runclayout"
	"github.com/noded-dev/noded/internal/oci/wire"
	"github.com/noded-dev/noded/internal/procfs"
)

// adopter takes over the containers a previous monitor of this pod left
// in the libcontainer root (adoptAll, before the monitor listens) and
// watches the exit of the ones that still run. It owns no state: the
// containers go into table, their status changes through rec, the
// inspection through helpers. It takes a container's mu only (and opMu
// through helpers.run, never while holding it).
type adopter struct {
	pod      string
	root     string // libcontainer root
	stateDir string
	log      *logger

	table   *ctrTable
	helpers *helperPool
	rec     *recorder
}

// adoptAll takes over the containers a previous monitor of this pod left in
// the libcontainer root (it was killed, or crashed). They are not our
// children and their stdio went with the old monitor, so their output is
// lost and their exit status cannot be known: an exit is recorded with
// code 255 and reason "Unknown". Start, kill, exec, state and delete work.
//
// It runs before the monitor listens, so nothing else sees the containers
// yet.
func (a *adopter) adoptAll() {
	ids, err := runclayout.ContainerIDs(a.root)
	if err != nil {
		return
	}
	for _, id := range ids {
		if !wire.ValidID(id) {
			continue
		}
		if c := a.adopt(id); c != nil {
			a.table.add(c)
		}
	}
}

// adopt takes over one container: its state is the state file's (a fresh
// created one without), with the pid libcontainer knows, brought up to date
// with what libcontainer says of it now; a live init is watched. It
// returns nil for a container the helper cannot inspect.
func (a *adopter) adopt(id string) *ctr {
	log := a.log.with("container", id)
	h, err := a.helpers.run(&helperapi.Request{Op: helperapi.OpInspect, ID: id})
	if err != nil {
		log.Warnf("cannot adopt container: %v", err)
		return nil
	}
	c := &ctr{id: id, adopted: true, recorded: true, exited: make(chan struct{}), memCg: h.MemCg, cgV2: h.CgV2}
	if st, err := wire.ReadStateFile(a.stateDir, id); err == nil {
		c.st = *st
		if !knownStatus(st.Status) {
			// Not written by this monitor's code (damaged, or from a newer
			// version): start from created, which every outcome below can
			// leave through a legal transition.
			c.st.Status = wire.StatusCreated
		}
	} else {
		c.st = wire.ContainerState{ID: id, Pod: a.pod, Status: wire.StatusCreated, CreatedAt: h.Created}
	}
	if h.Pid > 0 {
		c.st.Pid, c.st.PidStartTime = h.Pid, h.PidStartTime
	}
	switch {
	case c.st.Status == wire.StatusExited:
		c.closeExited()
	case h.Status == "stopped":
		a.lostExit(c)
	default:
		if h.Status == "running" && c.st.Status == wire.StatusCreated {
			c.mu.Lock()
			_ = a.rec.transition(c, wire.StatusRunning, func(st *wire.ContainerState) {
				if st.StartedAt == 0 {
					st.StartedAt = time.Now().UnixNano()
				}
			})
			c.mu.Unlock()
		}
		if !a.watchAdopted(c) {
			a.lostExit(c)
		}
	}
	st := c.snapshot() // a pidfd watch may record the exit meanwhile
	log.Infof("adopted (%s, pid %d)", st.Status, st.Pid)
	return c
}

// lostExit records an exit whose status is unknown.
func (a *adopter) lostExit(c *ctr) {
	c.mu.Lock()
	defer c.mu.Unlock()
	if c.st.Status == wire.StatusExited {
		return // seen already
	}
	oom := c.memCg != "" && oomCount(c.memCg, c.cgV2) > 0
	_ = a.rec.transition(c, wire.StatusExited, func(st *wire.ContainerState) {
		st.FinishedAt = time.Now().UnixNano()
		st.ExitCode = 255
		st.Reason = "Unknown"
		st.Message = "the container's monitor died; its exit status is unknown"
		if oom {
			st.OOMKilled = true
			st.Reason = "OOMKilled"
		}
	})
}

// watchAdopted notices the exit of a process that is not our child through
// a pidfd, which the runtime's poller watches (no thread is blocked). The
// goroutine belongs to the container: it ends with the process, which
// delete (and so shutdown) kills and waits for.
func (a *adopter) watchAdopted(c *ctr) bool {
	pid, start := c.st.Pid, c.st.PidStartTime
	if pid <= 0 {
		return false
	}
	fd, err := unix.PidfdOpen(pid, unix.PIDFD_NONBLOCK)
	if err != nil {
		return false
	}
	if now, err := procfs.StartTime(pid); start != 0 && (err != nil || now != start) { // recycled pid
		unix.Close(fd)
		return false
	}
	f := os.NewFile(uintptr(fd), "pidfd")
	rc, err := f.SyscallConn()
	if err != nil {
		f.Close()
		return false
	}
	go func() {
		defer f.Close()
		// The poller reports a pidfd readable once the process exited.
		_ = rc.Read(func(fd uintptr) bool { return pollExited(int(fd)) })
		a.lostExit(c)
	}()
	return true
}

// pollExited reports whether a pidfd is readable, i.e. its process exited.
func pollExited(fd int) bool {
	fds := []unix.PollFd{{Fd: int32(fd), Events: unix.POLLIN}}
	n, err := unix.Poll(fds, 0)
	return err == nil && n > 0
}
