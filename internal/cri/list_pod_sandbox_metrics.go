package cri

import (
	"context"

	runtimeapi "k8s.io/cri-api/pkg/apis/runtime/v1"
)

// ListPodSandboxMetrics samples every ready pod and its running
// containers. A pod or container that cannot be read is left out (and
// logged), never failing the answer.
func (s *RuntimeServer) ListPodSandboxMetrics(ctx context.Context, _ *runtimeapi.ListPodSandboxMetricsRequest) (*runtimeapi.ListPodSandboxMetricsResponse, error) {
	m, err := service(s.opts.Metrics)
	if err != nil {
		return nil, err
	}
	return &runtimeapi.ListPodSandboxMetricsResponse{PodMetrics: m.ListPodSandboxMetrics(ctx)}, nil
}
