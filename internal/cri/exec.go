package cri

import (
	"context"

	runtimeapi "k8s.io/cri-api/pkg/apis/runtime/v1"

	"github.com/noded-dev/noded/internal/errdefs"
	"github.com/noded-dev/noded/internal/ids"
)

// Exec returns the streaming URL of an interactive command in a running
// container (kubectl exec, crictl exec -it).
func (s *RuntimeServer) Exec(_ context.Context, req *runtimeapi.ExecRequest) (*runtimeapi.ExecResponse, error) {
	streams, err := service(s.opts.Streams)
	if err != nil {
		return nil, err
	}
	id, err := s.execTarget(req.GetContainerId(), req.GetCmd())
	if err != nil {
		return nil, err
	}
	return streams.Exec(id, req)
}

// execTarget checks an exec request (ExecSync or Exec): it names a
// container and a command, and the container is known.
func (s *RuntimeServer) execTarget(ref string, cmd []string) (ids.ContainerID, error) {
	if err := requireID("container", ref); err != nil {
		return "", err
	}
	if len(cmd) == 0 {
		return "", errdefs.InvalidArgument("exec command must not be empty")
	}
	return s.resolveContainer(ref)
}
