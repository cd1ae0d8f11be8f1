// Package helperapi is the internal protocol between the monitor
// (conmon-go) and its libcontainer helper (conmon-go-runtime): the monitor
// starts one helper per operation; the helper's fd 0 is a unix stream
// socket on which the monitor sends a Request (JSON, then end of stream),
// with the request's files attached as SCM_RIGHTS; the helper answers one
// Response (JSON) on its stdout and exits. Because the request comes on a
// socket, a helper can be started before its request is known ("warm").
// Both binaries are built from this repository; Version guards against a
// helper replaced on disk by an incompatible one while monitors run.
package helperapi

import (
	"fmt"
	"time"
)

// Version of this protocol. VersionPipe is the one before it, where the
// request came on the helper's stdin (a pipe) and its files were inherited
// as fds 3, 4, …: a helper still serves it, so that the monitors of pods
// started before an upgrade of noded keep working.
const (
	Version     = 2
	VersionPipe = 1
)

// WarmIdle is how long a helper waits for its request before it exits
// quietly (a warm helper whose operation never came).
const WarmIdle = 10 * time.Second

// Operations.
const (
	OpCreate = "create" // Bundle, Tty, *Fd -> Pid, PidStartTime, MemCg, CgV2
	OpRun    = "run"    // OpCreate, then release the user's program, in one helper
	// There is no start: the monitor starts a created container itself
	// through its exec fifo (conmon-go/startfifo.go).
	OpKill    = "kill"    // Signal (SIGKILL: every process of the container); Bundle finds the processes should the runtime state be gone
	OpExec    = "exec"    // Bundle, Args, Env, StdinFd, StdoutFd, StderrFd (-1: /dev/null), or Tty and ConsoleFd -> Pid
	OpDestroy = "destroy" // remove cgroups and runtime state (Bundle: the cgroups, should the state be gone)
	OpInspect = "inspect" // -> Status, Pid, PidStartTime, Created, MemCg, CgV2
	OpUpdate  = "update"  // Bundle: apply its linux.resources to the cgroups and libcontainer's state (runc update)
	// OpCheckpoint: CRIU dump of the running container into Dir (WorkDir:
	// CRIU's work files), left running unless Exit (checkpoint.go).
	OpCheckpoint = "checkpoint"
	// OpRestore: create the container from Bundle and restore its init
	// from the CRIU images in Dir, with the *Fd as its stdio -> as
	// OpCreate, the init running (restore.go).
	OpRestore = "restore"
	// OpPause and OpResume freeze and thaw the container's cgroup
	// (libcontainer Pause/Resume): a pod checkpoint's consistent cut.
	OpPause  = "pause"
	OpResume = "resume"
)

// Request is the monitor's request. File descriptors are 3 + the index of
// the file among those sent with the request, -1 for none.
type Request struct {
	Version   int      `json:"version"`
	Op        string   `json:"op"`
	Root      string   `json:"root"` // libcontainer root
	ID        string   `json:"id"`
	Bundle    string   `json:"bundle,omitempty"`
	Tty       bool     `json:"tty,omitempty"`
	StdinFd   int      `json:"stdin_fd"`
	StdoutFd  int      `json:"stdout_fd"`
	StderrFd  int      `json:"stderr_fd"`
	ConsoleFd int      `json:"console_fd"`
	Signal    int      `json:"signal,omitempty"`
	Args      []string `json:"args,omitempty"`
	Env       []string `json:"env,omitempty"`
	LogLevel  string   `json:"log_level,omitempty"`
	// Dir, WorkDir, Exit, CriuPath: OpCheckpoint and OpRestore.
	Dir      string `json:"dir,omitempty"`
	WorkDir  string `json:"work_dir,omitempty"`
	Exit     bool   `json:"exit,omitempty"`
	CriuPath string `json:"criu_path,omitempty"`
}

// Response is the helper's answer; Error is empty on success and Code is
// a wire error code.
type Response struct {
	Error        string `json:"error,omitempty"`
	Code         string `json:"code,omitempty"`
	Pid          int    `json:"pid,omitempty"`
	PidStartTime uint64 `json:"pid_start_time,omitempty"`
	// Status is libcontainer's view (inspect): created, running, paused,
	// stopped.
	Status  string `json:"status,omitempty"`
	Created int64  `json:"created,omitempty"` // Unix ns
	MemCg   string `json:"mem_cg,omitempty"`  // memory cgroup directory
	CgV2    bool   `json:"cg_v2,omitempty"`
	// OwnPidNS (create, run): the container has a PID namespace of its
	// own, so signalling its init is all a kill needs.
	OwnPidNS bool `json:"own_pid_ns,omitempty"`
}

// CodeError is an error with a wire error code.
type CodeError struct {
	Code string
	Msg  string
}

func (e *CodeError) Error() string { return e.Msg }

// Errorf returns a CodeError.
func Errorf(code, format string, args ...any) error {
	return &CodeError{Code: code, Msg: fmt.Sprintf(format, args...)}
}
