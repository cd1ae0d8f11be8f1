package cri

import (
	"context"

	runtimeapi "k8s.io/cri-api/pkg/apis/runtime/v1"
)

// ListPodSandbox lists pods, filtered by id prefix, state and labels.
func (s *Server) ListPodSandbox(_ context.Context, req *runtimeapi.ListPodSandboxRequest) (*runtimeapi.ListPodSandboxResponse, error) {
	rt, err := s.runtime()
	if err != nil {
		return nil, err
	}
	return &runtimeapi.ListPodSandboxResponse{Items: rt.ListPodSandbox(req.GetFilter())}, nil
}
