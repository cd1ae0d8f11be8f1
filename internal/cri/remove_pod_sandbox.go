package cri

import (
	"context"

	runtimeapi "k8s.io/cri-api/pkg/apis/runtime/v1"
)

// RemovePodSandbox removes a pod with its containers. An unknown pod is
// already removed.
func (s *RuntimeServer) RemovePodSandbox(ctx context.Context, req *runtimeapi.RemovePodSandboxRequest) (*runtimeapi.RemovePodSandboxResponse, error) {
	pods, err := service(s.opts.Pods)
	if err != nil {
		return nil, err
	}
	id, err := s.resolveSandbox(req.GetPodSandboxId())
	if gone(err) {
		return &runtimeapi.RemovePodSandboxResponse{}, nil
	}
	if err != nil {
		return nil, err
	}
	if err := pods.RemovePodSandbox(ctx, id); err != nil {
		return nil, err
	}
	return &runtimeapi.RemovePodSandboxResponse{}, nil
}
