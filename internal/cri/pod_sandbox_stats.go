package cri

import (
	"context"

	runtimeapi "k8s.io/cri-api/pkg/apis/runtime/v1"
)

// PodSandboxStats samples one pod: its cgroup, network namespace,
// processes and the containers inside. A stopped pod answers its
// attributes without usage.
func (s *RuntimeServer) PodSandboxStats(ctx context.Context, req *runtimeapi.PodSandboxStatsRequest) (*runtimeapi.PodSandboxStatsResponse, error) {
	stats, err := service(s.opts.PodStats)
	if err != nil {
		return nil, err
	}
	id, err := s.resolveSandbox(req.GetPodSandboxId())
	if err != nil {
		return nil, err
	}
	st, err := stats.PodSandboxStats(ctx, id)
	if err != nil {
		return nil, err
	}
	return &runtimeapi.PodSandboxStatsResponse{Stats: st}, nil
}
