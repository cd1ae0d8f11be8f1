package sandbox

import (
	"context"
	"time"

	"github.com/noded-dev/noded/internal/errdefs"
	"github.com/noded-dev/noded/internal/ids"
	"github.com/noded-dev/noded/internal/state"
)

// Exec runs processes in running containers, and attaches to their main
// process, through the pod's monitor: ExecSync, and the streaming Exec and
// Attach (port-forward is the pod's: Pods.PortForward). It holds no lock while a process
// runs or a client is attached, so StopContainer and RemoveContainer never
// wait for one (they end it: the process, or the attached output).
type Exec struct {
	*base
}

// ExecSync runs a command in a running container.
func (s *Exec) ExecSync(ctx context.Context, id ids.ContainerID, cmd []string, timeout time.Duration) (stdout, stderr []byte, code int32, err error) {
	c, err := s.running(id)
	if err != nil {
		return nil, nil, 0, err
	}
	s.o.Moves.Warm() // the helper moves the process into the container's cgroups
	return s.o.Monitor.ExecSync(ctx, c.SandboxID, c.ID, cmd, timeout)
}

// Exec runs cmd in a running container with the client's streams as its
// stdio and returns its exit code once it exited (a non-zero code is not
// an error). When ctx ends first the process is killed and ctx's error is
// returned. Errors: NotFound (unknown container), FailedPrecondition (not
// running), InvalidArgument (empty command).
func (s *Exec) Exec(ctx context.Context, id ids.ContainerID, cmd []string, stdio Stdio) (exitCode int, err error) {
	if len(cmd) == 0 {
		return -1, errdefs.InvalidArgument("empty command")
	}
	c, err := s.running(id)
	if err != nil {
		return -1, err
	}
	s.o.Moves.Warm()
	code, err := s.o.Monitor.Exec(ctx, c.SandboxID, c.ID, cmd, stdio)
	return int(code), err
}

// Attach connects the client's streams to the container's main process
// until its output ends (it exited: nil) or ctx ends (ctx's error). Errors
// before attaching: NotFound, FailedPrecondition (the container has
// exited), InvalidArgument (stdin asked for a container created without
// stdin).
func (s *Exec) Attach(ctx context.Context, id ids.ContainerID, stdio Stdio) error {
	c, err := s.o.Store.Container(id)
	if err != nil {
		return err
	}
	if c.State != state.ContainerCreated && c.State != state.ContainerRunning {
		return errdefs.FailedPrecondition("container %s is %s, not running", id.Short(), c.State)
	}
	return s.o.Monitor.Attach(ctx, c.SandboxID, c.ID, stdio)
}
