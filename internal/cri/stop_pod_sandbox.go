package cri

import (
	"context"

	runtimeapi "k8s.io/cri-api/pkg/apis/runtime/v1"
)

// StopPodSandbox stops a pod's containers and pause process and releases
// its network. An unknown pod is already stopped.
func (s *RuntimeServer) StopPodSandbox(ctx context.Context, req *runtimeapi.StopPodSandboxRequest) (*runtimeapi.StopPodSandboxResponse, error) {
	pods, err := service(s.opts.Pods)
	if err != nil {
		return nil, err
	}
	id, err := s.resolveSandbox(req.GetPodSandboxId())
	if gone(err) {
		return &runtimeapi.StopPodSandboxResponse{}, nil
	}
	if err != nil {
		return nil, err
	}
	if err := pods.StopPodSandbox(ctx, id); err != nil {
		return nil, err
	}
	return &runtimeapi.StopPodSandboxResponse{}, nil
}
