package sandbox

import (
	"github.com/noded-dev/noded/internal/errdefs"
	"github.com/noded-dev/noded/internal/ids"
	"github.com/noded-dev/noded/internal/state"
)

// CheckExec says whether a container can run an exec now: it must exist
// and run. The Exec RPC asks before it hands out a streaming URL, so a
// client learns of a stopped container from the RPC, not from a broken
// stream.
func (s *Exec) CheckExec(id ids.ContainerID) error {
	_, err := s.running(id)
	return err
}

// CheckAttach says whether a container can be attached to as asked: it
// must run, and stdin needs a container created with stdin.
func (s *Exec) CheckAttach(id ids.ContainerID, stdin bool) error {
	c, err := s.running(id)
	if err != nil {
		return err
	}
	if stdin && !c.Config.GetStdin() {
		return errdefs.InvalidArgument("container %s was created without stdin: attach with stdin=false, or create it with stdin", id.Short())
	}
	return nil
}

// running returns the record of a running container.
func (s *Exec) running(id ids.ContainerID) (*state.Container, error) {
	c, err := s.o.Store.Container(id)
	if err != nil {
		return nil, err
	}
	if c.State != state.ContainerRunning {
		return nil, errdefs.FailedPrecondition("container %s is not running", id.Short())
	}
	return c, nil
}
