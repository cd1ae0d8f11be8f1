package main

import (
	"fmt"
	"slices"

	"github.com/noded-dev/noded/internal/oci/wire"
)

// transitions are the status changes of a container, the only ones
// transition makes:
//
//	created → running   start (the monitor read the init's exec fifo), run
//	                    (the helper created and started it), adoption (a
//	                    container recorded as created that libcontainer
//	                    reports running: started just before the previous
//	                    monitor died)
//	created → exited    the init ended before it was started (killed, or
//	                    failed), or its end was seen with the status lost
//	running → exited    the init exited: reaped by the monitor, or seen
//	                    gone through a pidfd for an adopted container
//
// Nothing leaves exited: an exited container is deleted, never restarted
// (the kubelet creates a new one). A container starts as created (create)
// or with the status its state file recorded (adoption); that is its first
// status, not a transition.
var transitions = map[string][]string{
	wire.StatusCreated: {wire.StatusRunning, wire.StatusExited},
	wire.StatusRunning: {wire.StatusExited},
}

// knownStatus reports whether s is one of the statuses of transitions.
func knownStatus(s string) bool {
	_, ok := transitions[s]
	return ok || s == wire.StatusExited
}

// checkTransition returns an error unless from → to is in transitions.
func checkTransition(from, to string) error {
	if slices.Contains(transitions[from], to) {
		return nil
	}
	return fmt.Errorf("illegal status change %q → %q", from, to)
}

// recorder makes the status changes of the containers and records them
// in their state files in stateDir. It owns nothing but that directory;
// the caller of its methods holds the container's mu.
type recorder struct {
	stateDir string
	log      *logger
}

// transition changes c's status to `to`: mutate (if not nil) first fills
// in the fields that go with the change (times, exit code, reason), then
// the state file records the result if c has one (c.recorded). A change
// to exited also sets c.final and closes c.exited, which wait and delete
// select on. The caller holds c.mu.
//
// An exit is told before its state file is written: c.exited is closed
// first, so that wait answers noded (with c.final, without c.mu) while
// the file's two fsyncs run here, instead of adding them to every exit's
// way to the kubelet. This loses nothing on a kill -9 of either process:
//   - the file is written exactly as early as before (right after the
//     exit is known, still under c.mu), so a monitor killed at any moment
//     leaves the same file as before; what is new is only that noded may
//     have the exit from wait before the file is on disk, one more copy;
//   - a noded killed after wait answered reads the exit again at its
//     restart: from this monitor's memory (State takes c.mu, so it waits
//     for the write), or, with the monitor gone too, from the file;
//   - nothing can remove the file before this write: delete checks the
//     status and removes the file under c.mu, after this returns.
//
// An illegal change is refused, logged and returned, and c is left as it
// was. A state file that cannot be written is logged but does not undo
// the change: the status is a fact about the process (it runs, it
// exited), the file only its record, and the next write repeats it.
func (r *recorder) transition(c *ctr, to string, mutate func(*wire.ContainerState)) error {
	if err := checkTransition(c.st.Status, to); err != nil {
		err = fmt.Errorf("container %s: %w", c.id, err)
		r.log.with("container", c.id).Errorf("%v", err)
		return err
	}
	if mutate != nil {
		mutate(&c.st)
	}
	c.st.Status = to
	if to == wire.StatusExited {
		c.closeExited()
	}
	if c.recorded {
		r.record(c)
	}
	return nil
}

// record writes c's state file; the caller holds c.mu.
func (r *recorder) record(c *ctr) {
	if err := wire.WriteStateFile(r.stateDir, &c.st); err != nil {
		r.log.Errorf("writing state file of %s: %v", c.id, err)
	}
}

// closeExited sets c.final to the exited state and closes c.exited, once;
// the caller holds c.mu.
func (c *ctr) closeExited() {
	select {
	case <-c.exited:
	default:
		final := c.st
		c.final = &final
		close(c.exited)
	}
}
