package cri

import (
	"context"

	runtimeapi "k8s.io/cri-api/pkg/apis/runtime/v1"

	"github.com/noded-dev/noded/internal/ids"
)

// podCheckpointer checkpoints pods (sandbox.Pods over internal/checkpoint).
type podCheckpointer interface {
	CheckpointPod(ctx context.Context, id ids.SandboxID, outputPath string, ctrs []ids.ContainerID, options map[string]string) error
}

// CheckpointPod writes one consistent checkpoint of the selected running
// containers of a pod into the request's empty output directory: all are
// paused before any is dumped and all resumed before it returns, on
// success, error or deadline; on failure the directory is left empty.
// noded takes no options: any key is InvalidArgument.
func (s *RuntimeServer) CheckpointPod(ctx context.Context, req *runtimeapi.CheckpointPodRequest) (*runtimeapi.CheckpointPodResponse, error) {
	pods, err := service(s.opts.PodCheckpoints)
	if err != nil {
		return nil, err
	}
	pod, err := s.resolveSandbox(req.GetPodSandboxId())
	if err != nil {
		return nil, err
	}
	ctrs := make([]ids.ContainerID, 0, len(req.GetContainerIds()))
	for _, ref := range req.GetContainerIds() {
		id, err := s.resolveContainer(ref)
		if err != nil {
			return nil, err
		}
		ctrs = append(ctrs, id)
	}
	if err := pods.CheckpointPod(ctx, pod, req.GetOutputPath(), ctrs, req.GetOptions()); err != nil {
		return nil, err
	}
	return &runtimeapi.CheckpointPodResponse{}, nil
}
