package main

import (
	"os"
	"os/signal"
	"sync"

	"golang.org/x/sys/unix"
)

// reaper collects the exit status of the monitor's children from a single
// SIGCHLD loop, without one blocked thread per process.
//
// The monitor is a child subreaper, so besides the processes it tracks
// (container inits and exec'd processes, which libcontainer makes our direct
// children) it also inherits orphans of containers that share the host PID
// namespace; those are reaped as strays. libcontainer itself waits for its
// short-lived helper processes ("runc init" stages) while it creates a
// container or an exec: strays are only reaped when no such operation is in
// flight (opMu is free), so that we never steal a status libcontainer waits
// for.
//
// The SIGCHLD loop is the monitor's: start begins it, stop ends it (after
// the last request, when the monitor exits).
type reaper struct {
	opMu  *sync.Mutex // helperPool.opMu: held by every libcontainer call that forks
	kickc chan struct{}
	quit  chan struct{} // closed by stop
	done  chan struct{} // closed when the loop has ended
	log   *logger

	mu      sync.Mutex
	waiters map[int]func(unix.WaitStatus, bool)
}

func newReaper(opMu *sync.Mutex, log *logger) *reaper {
	return &reaper{
		opMu:    opMu,
		kickc:   make(chan struct{}, 1),
		quit:    make(chan struct{}),
		done:    make(chan struct{}),
		log:     log,
		waiters: make(map[int]func(unix.WaitStatus, bool)),
	}
}

// track calls fn once pid has been reaped; ok is false when the status was
// lost (the process was not our child). Call it with opMu held, right after
// the process was started, then kick.
func (r *reaper) track(pid int, fn func(ws unix.WaitStatus, ok bool)) {
	r.mu.Lock()
	r.waiters[pid] = fn
	r.mu.Unlock()
}

// kick asks for a reaping pass (after an operation released opMu).
func (r *reaper) kick() {
	select {
	case r.kickc <- struct{}{}:
	default:
	}
}

// kill signals a tracked process that has not been reaped yet. The check and
// the kill happen under the lock that reaping takes, so a recycled pid is
// never signalled.
func (r *reaper) kill(pid int, sig unix.Signal) error {
	r.mu.Lock()
	defer r.mu.Unlock()
	if _, ok := r.waiters[pid]; !ok {
		return unix.ESRCH
	}
	return unix.Kill(pid, sig)
}

// start begins the SIGCHLD loop. SIGCHLD is subscribed to before start
// returns, so no child's exit can go unnoticed.
func (r *reaper) start() {
	sigc := make(chan os.Signal, 8)
	signal.Notify(sigc, unix.SIGCHLD)
	go r.loop(sigc)
}

// stop ends the SIGCHLD loop and waits for it; tracked processes are no
// longer reaped.
func (r *reaper) stop() {
	close(r.quit)
	<-r.done
}

func (r *reaper) loop(sigc chan os.Signal) {
	defer close(r.done)
	defer signal.Stop(sigc)
	for {
		select {
		case <-r.quit:
			return
		case <-sigc:
		case <-r.kickc:
		}
		r.reap()
	}
}

type reaped struct {
	fn func(unix.WaitStatus, bool)
	ws unix.WaitStatus
	ok bool
}

func (r *reaper) reap() {
	var done []reaped
	r.mu.Lock()
	for pid, fn := range r.waiters {
		var ws unix.WaitStatus
		wpid, err := unix.Wait4(pid, &ws, unix.WNOHANG, nil)
		switch {
		case wpid == pid:
			done = append(done, reaped{fn, ws, true})
			delete(r.waiters, pid)
		case err == unix.ECHILD:
			r.log.Warnf("pid %d is not our child: its exit status is lost", pid)
			done = append(done, reaped{fn, 0, false})
			delete(r.waiters, pid)
		}
	}
	if r.opMu.TryLock() {
		for {
			var ws unix.WaitStatus
			wpid, err := unix.Wait4(-1, &ws, unix.WNOHANG, nil)
			if wpid <= 0 || err != nil {
				break
			}
			if fn, ok := r.waiters[wpid]; ok {
				done = append(done, reaped{fn, ws, true})
				delete(r.waiters, wpid)
			} else {
				r.log.Debugf("reaped stray process %d", wpid)
			}
		}
		r.opMu.Unlock()
	}
	r.mu.Unlock()
	for _, d := range done {
		d.fn(d.ws, d.ok)
	}
}

// exitCode converts a wait status: the exit status, or 128+signal.
func exitCode(ws unix.WaitStatus) int32 {
	switch {
	case ws.Exited():
		return int32(ws.ExitStatus())
	case ws.Signaled():
		return 128 + int32(ws.Signal())
	}
	return 255
}
