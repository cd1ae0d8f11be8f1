package main

import (
	"os"
	"time"

	"golang.org/x/sys/unix"

	"github.com/noded-dev/noded/conmon-go/internal/helperapi"
	"github.com/noded-dev/noded/internal/oci/wire"
)

// adoptAll takes over the containers a previous monitor of this pod left in
// the libcontainer root (it was killed, or crashed). They are not our
// children and their stdio went with the old monitor, so their output is
// lost and their exit status cannot be known: an exit is recorded with
// code 255 and reason "Unknown". Start, kill, exec, state and delete work.
func (m *monitor) adoptAll() {
	entries, err := os.ReadDir(m.root)
	if err != nil {
		return
	}
	for _, e := range entries {
		if !e.IsDir() || !wire.ValidID(e.Name()) {
			continue
		}
		id := e.Name()
		log := m.log.with("container", id)
		m.opMu.Lock()
		h, err := m.callHelper(&helperapi.Request{Op: helperapi.OpInspect, ID: id})
		m.opMu.Unlock()
		if err != nil {
			log.Warnf("cannot adopt container: %v", err)
			continue
		}
		c := &ctr{id: id, adopted: true, exited: make(chan struct{}), memCg: h.MemCg, cgV2: h.CgV2}
		if st, err := wire.ReadStateFile(m.stateDir, id); err == nil {
			c.st = *st
		} else {
			c.st = wire.ContainerState{ID: id, Pod: m.pod, Status: wire.StatusCreated, CreatedAt: h.Created}
		}
		if h.Pid > 0 {
			c.st.Pid, c.st.PidStartTime = h.Pid, h.PidStartTime
		}
		switch {
		case c.st.Status == wire.StatusExited:
			close(c.exited)
		case h.Status == "stopped":
			m.lostExit(c)
		default:
			if h.Status == "running" && c.st.Status == wire.StatusCreated {
				c.st.Status = wire.StatusRunning
				if c.st.StartedAt == 0 {
					c.st.StartedAt = time.Now().UnixNano()
				}
			}
			if !m.watchAdopted(c) {
				m.lostExit(c)
			}
		}
		m.ctrs[id] = c
		log.Infof("adopted (%s, pid %d)", c.st.Status, c.st.Pid)
	}
}

// lostExit records an exit whose status is unknown.
func (m *monitor) lostExit(c *ctr) {
	c.mu.Lock()
	defer c.mu.Unlock()
	if c.st.Status == wire.StatusExited {
		return
	}
	c.st.Status = wire.StatusExited
	c.st.FinishedAt = time.Now().UnixNano()
	c.st.ExitCode = 255
	c.st.Reason = "Unknown"
	c.st.Message = "the container's monitor died; its exit status is unknown"
	if c.memCg != "" && oomCount(c.memCg, c.cgV2) > 0 {
		c.st.OOMKilled = true
		c.st.Reason = "OOMKilled"
	}
	m.writeState(c)
	select {
	case <-c.exited:
	default:
		close(c.exited)
	}
}

// watchAdopted notices the exit of a process that is not our child through
// a pidfd, which the runtime's poller watches (no thread is blocked).
func (m *monitor) watchAdopted(c *ctr) bool {
	pid, start := c.st.Pid, c.st.PidStartTime
	if pid <= 0 {
		return false
	}
	fd, err := unix.PidfdOpen(pid, unix.PIDFD_NONBLOCK)
	if err != nil {
		return false
	}
	if start != 0 && pidStartTime(pid) != start { // recycled pid
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
		m.lostExit(c)
	}()
	return true
}

// pollExited reports whether a pidfd is readable, i.e. its process exited.
func pollExited(fd int) bool {
	fds := []unix.PollFd{{Fd: int32(fd), Events: unix.POLLIN}}
	n, err := unix.Poll(fds, 0)
	return err == nil && n > 0
}
