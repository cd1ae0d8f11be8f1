package cri

import (
	runtimeapi "k8s.io/cri-api/pkg/apis/runtime/v1"
)

// StreamContainerStats sends the samples ListContainerStats answers, in
// batches, each container sampled when its turn comes.
func (s *RuntimeServer) StreamContainerStats(req *runtimeapi.StreamContainerStatsRequest, stream runtimeapi.RuntimeService_StreamContainerStatsServer) error {
	stats, err := service(s.opts.Stats)
	if err != nil {
		return err
	}
	ctx := stream.Context()
	return sendBatches(ctx, noErrors(stats.StreamContainerStats(ctx, req.GetFilter())), func(b []*runtimeapi.ContainerStats) error {
		return stream.Send(&runtimeapi.StreamContainerStatsResponse{ContainerStats: b})
	})
}
