package cri

import (
	"context"

	runtimeapi "k8s.io/cri-api/pkg/apis/runtime/v1"

	"github.com/noded-dev/noded/internal/ids"
)

// podRestorer restores pods from their checkpoints (sandbox.Pods).
type podRestorer interface {
	RestorePod(ctx context.Context, path string, cfg *runtimeapi.PodSandboxConfig, handler string, options map[string]string, ctrs []*runtimeapi.ContainerConfig) (ids.SandboxID, []ids.ContainerID, error)
}

// RestorePod makes a new pod sandbox from the request's config and
// creates its containers from a CheckpointPod directory, CREATED: each
// StartContainer restores one. The IDs come in the order of the request's
// configs. On error nothing is left.
func (s *RuntimeServer) RestorePod(ctx context.Context, req *runtimeapi.RestorePodRequest) (*runtimeapi.RestorePodResponse, error) {
	pods, err := service(s.opts.PodRestores)
	if err != nil {
		return nil, err
	}
	pod, ctrs, err := pods.RestorePod(ctx, req.GetCheckpointPath(), req.GetConfig(), req.GetRuntimeHandler(), req.GetOptions(), req.GetContainerConfigs())
	if err != nil {
		return nil, err
	}
	resp := &runtimeapi.RestorePodResponse{PodSandboxId: string(pod)}
	for i, c := range req.GetContainerConfigs() {
		resp.RestoredContainers = append(resp.RestoredContainers, &runtimeapi.RestoredContainer{Name: c.GetMetadata().GetName(), ContainerId: string(ctrs[i])})
	}
	return resp, nil
}
