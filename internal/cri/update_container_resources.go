package cri

import (
	"context"

	runtimeapi "k8s.io/cri-api/pkg/apis/runtime/v1"
)

// UpdateContainerResources resizes a container in place: it returns once
// its cgroups hold the new limits. The request's windows resources and
// annotations have no meaning here and are ignored, as containerd
// ignores them on Linux.
func (s *RuntimeServer) UpdateContainerResources(ctx context.Context, req *runtimeapi.UpdateContainerResourcesRequest) (*runtimeapi.UpdateContainerResourcesResponse, error) {
	ctrs, err := service(s.opts.Containers)
	if err != nil {
		return nil, err
	}
	id, err := s.resolveContainer(req.GetContainerId())
	if err != nil {
		return nil, err
	}
	if err := ctrs.UpdateContainerResources(ctx, id, req.GetLinux()); err != nil {
		return nil, err
	}
	return &runtimeapi.UpdateContainerResourcesResponse{}, nil
}
