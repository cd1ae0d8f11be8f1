package cri

import (
	runtimeapi "k8s.io/cri-api/pkg/apis/runtime/v1"
)

// StreamPodSandboxStats sends the samples ListPodSandboxStats answers, in
// batches, the pods sampled a few at a time.
func (s *RuntimeServer) StreamPodSandboxStats(req *runtimeapi.StreamPodSandboxStatsRequest, stream runtimeapi.RuntimeService_StreamPodSandboxStatsServer) error {
	stats, err := service(s.opts.PodStats)
	if err != nil {
		return err
	}
	ctx := stream.Context()
	return sendBatches(ctx, noErrors(stats.StreamPodSandboxStats(ctx, req.GetFilter())), func(b []*runtimeapi.PodSandboxStats) error {
		return stream.Send(&runtimeapi.StreamPodSandboxStatsResponse{PodSandboxStats: b})
	})
}
