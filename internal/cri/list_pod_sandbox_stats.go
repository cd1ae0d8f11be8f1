package cri

import (
	"context"

	runtimeapi "k8s.io/cri-api/pkg/apis/runtime/v1"
)

// ListPodSandboxStats samples the pods matching the filter (ID prefix,
// labels); a filter matching nothing answers an empty list.
func (s *RuntimeServer) ListPodSandboxStats(ctx context.Context, req *runtimeapi.ListPodSandboxStatsRequest) (*runtimeapi.ListPodSandboxStatsResponse, error) {
	stats, err := service(s.opts.PodStats)
	if err != nil {
		return nil, err
	}
	return &runtimeapi.ListPodSandboxStatsResponse{Stats: stats.ListPodSandboxStats(ctx, req.GetFilter())}, nil
}
