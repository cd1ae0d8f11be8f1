package cri

import (
	"context"

	runtimeapi "k8s.io/cri-api/pkg/apis/runtime/v1"
)

// ListContainers lists containers, filtered by id, pod, state and labels.
func (s *Server) ListContainers(_ context.Context, req *runtimeapi.ListContainersRequest) (*runtimeapi.ListContainersResponse, error) {
	rt, err := s.runtime()
	if err != nil {
		return nil, err
	}
	return &runtimeapi.ListContainersResponse{Containers: rt.ListContainers(req.GetFilter())}, nil
}
