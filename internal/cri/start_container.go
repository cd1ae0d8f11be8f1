package cri

import (
	"context"

	runtimeapi "k8s.io/cri-api/pkg/apis/runtime/v1"
)

// StartContainer starts a created container.
func (s *RuntimeServer) StartContainer(ctx context.Context, req *runtimeapi.StartContainerRequest) (*runtimeapi.StartContainerResponse, error) {
	ctrs, err := service(s.opts.Containers)
	if err != nil {
		return nil, err
	}
	id, err := s.resolveContainer(req.GetContainerId())
	if err != nil {
		return nil, err
	}
	if err := ctrs.StartContainer(ctx, id); err != nil {
		return nil, err
	}
	return &runtimeapi.StartContainerResponse{}, nil
}
