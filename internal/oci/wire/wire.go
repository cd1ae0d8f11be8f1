// Package wire is the protocol between noded (internal/oci) and its container
// monitor, conmon-go, and the format of the per-container state files the
// monitor writes. It depends on nothing but the standard library and
// internal/atomicfile (which uses only os), so that both sides can import
// it without pulling anything into the memory-sensitive monitor.
//
// Transport: one unix stream socket per pod (see SocketPath). A client opens
// a connection, writes one Request as a single JSON line, and reads one
// Response as a single JSON line; the connection then closes. Only "wait"
// keeps its connection open until the container exits (the monitor gives up
// when the client closes its end), and the two streaming operations,
// "exec_stream" and "attach", whose connection lives as long as the
// stream; they pass file descriptors with their lines (see stream.go for
// their framing).
package wire

import (
	"encoding/json"
	"errors"
	"fmt"
	"os"
	"path/filepath"

	"github.com/noded-dev/noded/internal/atomicfile"
)

// Version is the protocol version the monitor reports in a hello.
const Version = 1

// Operations.
const (
	OpHello  = "hello"  // -> Pod, Pid, Version
	OpCreate = "create" // Container, Bundle, LogPath, Stdin, StdinOnce, Tty -> State
	OpStart  = "start"  // Container -> State
	OpRun    = "run"    // create, then start, in one runtime call: fields of create -> State (running)
	OpKill   = "kill"   // Container, Signal
	OpState  = "state"  // Container -> State
	OpWait   = "wait"   // Container -> State, once exited
	OpList   = "list"   // -> States
	// "exec" (ExecSync's output in the answer) is gone: ExecSync is an
	// exec_stream whose pipes noded reads.
	OpReopenLog = "reopen_log" // Container
	OpDelete    = "delete"     // Container, Force
	OpShutdown  = "shutdown"   // kills and deletes what is left, then exits
	OpStats     = "stats"      // -> Stats: the monitor's own memory and helper count (diagnostics)
	// OpUpdate applies the cgroup resources of the container's bundle
	// (its config.json, which noded rewrote) to the created or running
	// container, as runc update does: Container. failed_precondition when
	// it is not running or a memory limit is below its usage.
	OpUpdate = "update"
	// OpExecStream runs a process whose stdio are the client's (stream.go):
	// Container, Args, Env, Tty, Stdin, Stdout, Stderr + fds -> Pid (+ the
	// pty master with Tty), then Exec (ExitCode) when it exited.
	OpExecStream = "exec_stream"
	// OpAttach connects the client to a container's stdio (stream.go):
	// Container, Stdin, Stdout, Stderr + fds -> an empty answer, then
	// Resize lines from the client, and a last answer when it ends.
	OpAttach = "attach"
	// OpCheckpoint dumps a running container with CRIU into Dir (CRIU's
	// image files; its log, dump.log, too), then leaves it running unless
	// Exit: Container, Dir, WorkDir, Exit, CriuPath. failed_precondition
	// when it is not running or has a terminal.
	OpCheckpoint = "checkpoint"
	// OpPause freezes a running container's processes (its freezer
	// cgroup), OpResume thaws them: Container. A pod checkpoint pauses
	// all its containers before it dumps any, and resumes them all after.
	OpPause  = "pause"
	OpResume = "resume"
)

// Error codes carried in Response.Code; internal/oci maps them to errdefs.
const (
	CodeNotFound           = "not_found"
	CodeAlreadyExists      = "already_exists"
	CodeInvalidArgument    = "invalid_argument"
	CodeFailedPrecondition = "failed_precondition"
	CodeDeadlineExceeded   = "deadline_exceeded"
	CodeUnavailable        = "unavailable"
	CodeInternal           = "internal"
)

// MaxRequestSize bounds one request line; the monitor rejects longer ones.
const MaxRequestSize = 1 << 20

// MaxExecOutput bounds the output an ExecSync returns, both streams
// together, so that its CRI response fits the kubelet's 16 MiB message
// limit with room for the rest of the message; the rest is dropped.
const MaxExecOutput = 16<<20 - 4<<10

// Request is one client request.
type Request struct {
	Op        string `json:"op"`
	Container string `json:"container,omitempty"`
	Bundle    string `json:"bundle,omitempty"`
	LogPath   string `json:"log_path,omitempty"`
	Stdin     bool   `json:"stdin,omitempty"`
	StdinOnce bool   `json:"stdin_once,omitempty"`
	Tty       bool   `json:"tty,omitempty"`
	// Stdout and Stderr (with Stdin) say which streams the client of an
	// exec_stream or attach passes as files (stream.go).
	Stdout bool     `json:"stdout,omitempty"`
	Stderr bool     `json:"stderr,omitempty"`
	Signal int      `json:"signal,omitempty"`
	Args   []string `json:"args,omitempty"`
	Env    []string `json:"env,omitempty"`
	Force  bool     `json:"force,omitempty"`
	// Dir and WorkDir (checkpoint) are CRIU's image and work
	// directories; Exit lets the dump end the container.
	Dir     string `json:"dir,omitempty"`
	WorkDir string `json:"work_dir,omitempty"`
	Exit    bool   `json:"exit,omitempty"`
	// Restore (create) makes a container that a start restores from the
	// CRIU images in this directory instead of running its program; no
	// process exists before that start.
	Restore string `json:"restore,omitempty"`
	// CriuPath (checkpoint, create with Restore) is the criu binary the
	// helper runs; empty: criu on the monitor's PATH.
	CriuPath string `json:"criu_path,omitempty"`
}

// Response answers one Request. Error is empty on success.
type Response struct {
	Error string `json:"error,omitempty"`
	Code  string `json:"code,omitempty"`

	Pod     string           `json:"pod,omitempty"`
	Pid     int              `json:"pid,omitempty"`
	Version int              `json:"version,omitempty"`
	State   *ContainerState  `json:"state,omitempty"`
	States  []ContainerState `json:"states,omitempty"`
	Exec    *ExecResult      `json:"exec,omitempty"`
	Stats   map[string]int64 `json:"stats,omitempty"`
}

// Container statuses as written in state files.
const (
	StatusCreated = "created"
	StatusRunning = "running"
	StatusExited  = "exited"
)

// ContainerState is both the "state" answer and the content of the state
// file <state-dir>/<container>.json. Times are Unix nanoseconds, 0 = unset.
type ContainerState struct {
	ID     string `json:"id"`
	Pod    string `json:"pod"`
	Status string `json:"status"`
	// Pid is the container's init process in the host PID namespace and
	// PidStartTime its start time (field 22 of /proc/PID/stat), used to
	// tell it from a recycled pid when the monitor is gone.
	Pid          int    `json:"pid,omitempty"`
	PidStartTime uint64 `json:"pid_start_time,omitempty"`
	CreatedAt    int64  `json:"created_at,omitempty"`
	StartedAt    int64  `json:"started_at,omitempty"`
	FinishedAt   int64  `json:"finished_at,omitempty"`
	// ExitCode is the exit status, or 128+signal when killed by a signal.
	ExitCode  int32  `json:"exit_code"`
	OOMKilled bool   `json:"oom_killed,omitempty"`
	Reason    string `json:"reason,omitempty"`
	Message   string `json:"message,omitempty"`
	Bundle    string `json:"bundle,omitempty"`
	LogPath   string `json:"log_path,omitempty"`
}

// ExecResult is the outcome of an exec (its output went through the
// client's pipes or terminal).
type ExecResult struct {
	ExitCode int32 `json:"exit_code"`
}

// ValidID reports whether id can name a pod or container: 1 to 128 of
// [A-Za-z0-9_.+-], starting with a letter or digit. It becomes a file name
// and a libcontainer id.
func ValidID(id string) bool {
	if len(id) == 0 || len(id) > 128 {
		return false
	}
	for i := 0; i < len(id); i++ {
		c := id[i]
		switch {
		case c >= 'a' && c <= 'z', c >= 'A' && c <= 'Z', c >= '0' && c <= '9':
		case i > 0 && (c == '_' || c == '.' || c == '+' || c == '-'):
		default:
			return false
		}
	}
	return true
}

// ShortPod is the pod id prefix used in file names under the run dir.
func ShortPod(pod string) string {
	if len(pod) > 12 {
		return pod[:12]
	}
	return pod
}

// SocketPath is the monitor's socket for pod under runDir.
func SocketPath(runDir, pod string) string {
	return filepath.Join(runDir, ShortPod(pod)+".sock")
}

// MaxSocketPath is the usable length of sun_path (108 bytes with the NUL).
const MaxSocketPath = 107

// MonitorDir is the monitor's private directory (libcontainer root).
func MonitorDir(runDir, pod string) string { return filepath.Join(runDir, ShortPod(pod)) }

// LockPath is the file a live monitor keeps flock'ed.
func LockPath(runDir, pod string) string { return filepath.Join(runDir, ShortPod(pod)+".lock") }

// PidPath holds the monitor's pid (informational).
func PidPath(runDir, pod string) string { return filepath.Join(runDir, ShortPod(pod)+".pid") }

// MonitorLogPath receives the monitor's own diagnostics.
func MonitorLogPath(runDir, pod string) string {
	return filepath.Join(runDir, ShortPod(pod)+".log")
}

// StateFilePath is the state file of a container.
func StateFilePath(stateDir, id string) string { return filepath.Join(stateDir, id+".json") }

// ReadStateFile reads a container state file; os.ErrNotExist when missing.
func ReadStateFile(stateDir, id string) (*ContainerState, error) {
	b, err := os.ReadFile(StateFilePath(stateDir, id))
	if err != nil {
		return nil, err
	}
	var st ContainerState
	if err := json.Unmarshal(b, &st); err != nil {
		return nil, fmt.Errorf("state file of %s: %w", id, err)
	}
	return &st, nil
}

// WriteStateFile writes st atomically (internal/atomicfile: temporary
// file, fsync, rename, fsync of the directory), so a reader sees either the
// old or the new content even across a crash.
func WriteStateFile(stateDir string, st *ContainerState) error {
	if !ValidID(st.ID) {
		return errors.New("invalid container id")
	}
	b, err := json.Marshal(st)
	if err != nil {
		return err
	}
	return atomicfile.WriteFile(StateFilePath(stateDir, st.ID), append(b, '\n'), 0o600)
}
