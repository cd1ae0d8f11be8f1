package cri

import (
	"context"
	"time"

	runtimeapi "k8s.io/cri-api/pkg/apis/runtime/v1"
)

// StopContainer stops a container: its stop signal, then SIGKILL after the
// request's timeout (seconds).
func (s *Server) StopContainer(ctx context.Context, req *runtimeapi.StopContainerRequest) (*runtimeapi.StopContainerResponse, error) {
	rt, err := s.runtime()
	if err != nil {
		return nil, err
	}
	if err := requireID("container", req.GetContainerId()); err != nil {
		return nil, err
	}
	timeout := time.Duration(max(req.GetTimeout(), 0)) * time.Second
	if err := rt.StopContainer(ctx, req.GetContainerId(), timeout); err != nil {
		return nil, err
	}
	return &runtimeapi.StopContainerResponse{}, nil
}
