package sandbox

import (
	"context"
	"time"

	"github.com/noded-dev/noded/internal/errdefs"
	"github.com/noded-dev/noded/internal/ids"
	"github.com/noded-dev/noded/internal/state"
)

// Exec runs processes in running containers, through the pod's monitor.
// ExecSync is here today; the streaming Exec, Attach and PortForward
// join it.
type Exec struct {
	*base
}

// ExecSync runs a command in a running container.
func (s *Exec) ExecSync(ctx context.Context, id ids.ContainerID, cmd []string, timeout time.Duration) (stdout, stderr []byte, code int32, err error) {
	c, err := s.o.Store.Container(id)
	if err != nil {
		return nil, nil, 0, err
	}
	if c.State != state.ContainerRunning {
		return nil, nil, 0, errdefs.FailedPrecondition("container %s is not running", id.Short())
	}
	return s.o.Monitor.ExecSync(ctx, c.SandboxID, c.ID, cmd, timeout)
}
