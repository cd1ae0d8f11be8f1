package cri

import (
	"context"

	runtimeapi "k8s.io/cri-api/pkg/apis/runtime/v1"
)

// CreateContainer creates a container in a ready pod.
func (s *RuntimeServer) CreateContainer(ctx context.Context, req *runtimeapi.CreateContainerRequest) (*runtimeapi.CreateContainerResponse, error) {
	ctrs, err := service(s.opts.Containers)
	if err != nil {
		return nil, err
	}
	pod, err := s.resolveSandbox(req.GetPodSandboxId())
	if err != nil {
		return nil, err
	}
	// The pod's config is noded's own record; the copy in the request is
	// not needed.
	id, err := ctrs.CreateContainer(ctx, pod, req.GetConfig())
	if err != nil {
		return nil, err
	}
	return &runtimeapi.CreateContainerResponse{ContainerId: string(id)}, nil
}
