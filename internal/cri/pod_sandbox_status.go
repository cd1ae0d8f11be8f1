package cri

import (
	"context"

	runtimeapi "k8s.io/cri-api/pkg/apis/runtime/v1"
)

// PodSandboxStatus reports a pod's state, IPs and namespaces.
func (s *Server) PodSandboxStatus(_ context.Context, req *runtimeapi.PodSandboxStatusRequest) (*runtimeapi.PodSandboxStatusResponse, error) {
	rt, err := s.runtime()
	if err != nil {
		return nil, err
	}
	if err := requireID("pod sandbox", req.GetPodSandboxId()); err != nil {
		return nil, err
	}
	st, info, err := rt.PodSandboxStatus(req.GetPodSandboxId(), req.GetVerbose())
	if err != nil {
		return nil, err
	}
	return &runtimeapi.PodSandboxStatusResponse{Status: st, Info: info}, nil
}
