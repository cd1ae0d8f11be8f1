package cri

import (
	"context"
	"time"

	runtimeapi "k8s.io/cri-api/pkg/apis/runtime/v1"

	"github.com/noded-dev/noded/internal/ids"
)

// checkpointService checkpoints containers (sandbox.Containers over
// internal/checkpoint).
type checkpointService interface {
	CheckpointContainer(ctx context.Context, id ids.ContainerID, location string, timeout time.Duration) error
}

// CheckpointContainer writes a checkpoint archive of a running container
// at the request's location (CRI-O's format) and leaves it running, as
// the kubelet's /checkpoint endpoint expects. A container created with a
// checkpoint archive as its image is restored from it by StartContainer.
func (s *RuntimeServer) CheckpointContainer(ctx context.Context, req *runtimeapi.CheckpointContainerRequest) (*runtimeapi.CheckpointContainerResponse, error) {
	ckpt, err := service(s.opts.Checkpoints)
	if err != nil {
		return nil, err
	}
	id, err := s.resolveContainer(req.GetContainerId())
	if err != nil {
		return nil, err
	}
	timeout := time.Duration(max(req.GetTimeout(), 0)) * time.Second
	if err := ckpt.CheckpointContainer(ctx, id, req.GetLocation(), timeout); err != nil {
		return nil, err
	}
	return &runtimeapi.CheckpointContainerResponse{}, nil
}
