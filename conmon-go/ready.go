package main

import (
	"fmt"
	"os"
	"strconv"
)

// Exit codes of "conmon-go monitor".
const (
	exitOK      = 0
	exitFailed  = 1
	exitUsage   = 2
	exitRunning = 3 // a monitor for this pod already holds its lock
)

// readyWriter reports the monitor's readiness to whoever started it
// (internal/oci) on the --ready-fd pipe: one line, "ok PID" once the
// monitor listens, "running" when another monitor holds the pod's lock,
// or "error MESSAGE".
type readyWriter struct{ f *os.File }

func newReadyWriter(fd int) *readyWriter {
	if fd < 0 {
		return &readyWriter{}
	}
	return &readyWriter{f: os.NewFile(uintptr(fd), "ready")}
}

func (r *readyWriter) send(format string, args ...any) {
	if r.f == nil {
		return
	}
	fmt.Fprintf(r.f, format+"\n", args...)
	r.f.Close()
	r.f = nil
}

func (r *readyWriter) ok() { r.send("ok %s", strconv.Itoa(os.Getpid())) }
