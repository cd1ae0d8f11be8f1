package cri

import (
	runtimeapi "k8s.io/cri-api/pkg/apis/runtime/v1"
)

// StreamPodSandboxMetrics sends the metrics ListPodSandboxMetrics
// answers, in batches.
func (s *RuntimeServer) StreamPodSandboxMetrics(_ *runtimeapi.StreamPodSandboxMetricsRequest, stream runtimeapi.RuntimeService_StreamPodSandboxMetricsServer) error {
	m, err := service(s.opts.Metrics)
	if err != nil {
		return err
	}
	ctx := stream.Context()
	return sendBatches(ctx, noErrors(m.StreamPodSandboxMetrics(ctx)), func(b []*runtimeapi.PodSandboxMetrics) error {
		return stream.Send(&runtimeapi.StreamPodSandboxMetricsResponse{PodSandboxMetrics: b})
	})
}
