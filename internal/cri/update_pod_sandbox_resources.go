package cri

import (
	"context"

	runtimeapi "k8s.io/cri-api/pkg/apis/runtime/v1"
)

// UpdatePodSandboxResources records a resized pod's overhead and total
// resources (sandbox.Pods: the pod cgroup is the kubelet's, so nothing is
// applied).
func (s *RuntimeServer) UpdatePodSandboxResources(ctx context.Context, req *runtimeapi.UpdatePodSandboxResourcesRequest) (*runtimeapi.UpdatePodSandboxResourcesResponse, error) {
	pods, err := service(s.opts.Pods)
	if err != nil {
		return nil, err
	}
	id, err := s.resolveSandbox(req.GetPodSandboxId())
	if err != nil {
		return nil, err
	}
	if err := pods.UpdatePodSandboxResources(ctx, id, req.GetOverhead(), req.GetResources()); err != nil {
		return nil, err
	}
	return &runtimeapi.UpdatePodSandboxResourcesResponse{}, nil
}
