package cri

import (
	"context"

	runtimeapi "k8s.io/cri-api/pkg/apis/runtime/v1"
)

// CreateContainer creates a container in a ready pod.
func (s *Server) CreateContainer(ctx context.Context, req *runtimeapi.CreateContainerRequest) (*runtimeapi.CreateContainerResponse, error) {
	rt, err := s.runtime()
	if err != nil {
		return nil, err
	}
	if err := requireID("pod sandbox", req.GetPodSandboxId()); err != nil {
		return nil, err
	}
	// The pod's config is noded's own record; the copy in the request is
	// not needed.
	id, err := rt.CreateContainer(ctx, req.GetPodSandboxId(), req.GetConfig())
	if err != nil {
		return nil, err
	}
	return &runtimeapi.CreateContainerResponse{ContainerId: string(id)}, nil
}
