package cri

import (
	"context"

	runtimeapi "k8s.io/cri-api/pkg/apis/runtime/v1"
)

// ListContainers lists containers matching the filter.
func (s *RuntimeServer) ListContainers(_ context.Context, req *runtimeapi.ListContainersRequest) (*runtimeapi.ListContainersResponse, error) {
	ctrs, err := service(s.opts.Containers)
	if err != nil {
		return nil, err
	}
	return &runtimeapi.ListContainersResponse{Containers: ctrs.ListContainers(req.GetFilter())}, nil
}
