package cri

import (
	"context"

	runtimeapi "k8s.io/cri-api/pkg/apis/runtime/v1"
)

// ContainerStatus reports a container's state, exit, image and mounts.
func (s *Server) ContainerStatus(_ context.Context, req *runtimeapi.ContainerStatusRequest) (*runtimeapi.ContainerStatusResponse, error) {
	rt, err := s.runtime()
	if err != nil {
		return nil, err
	}
	if err := requireID("container", req.GetContainerId()); err != nil {
		return nil, err
	}
	st, info, err := rt.ContainerStatus(req.GetContainerId(), req.GetVerbose())
	if err != nil {
		return nil, err
	}
	return &runtimeapi.ContainerStatusResponse{Status: st, Info: info}, nil
}
