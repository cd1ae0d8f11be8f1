package cri

import (
	"context"

	runtimeapi "k8s.io/cri-api/pkg/apis/runtime/v1"
)

// ReopenContainerLog makes the monitor reopen a running container's log
// file after the kubelet rotated it.
func (s *RuntimeServer) ReopenContainerLog(ctx context.Context, req *runtimeapi.ReopenContainerLogRequest) (*runtimeapi.ReopenContainerLogResponse, error) {
	ctrs, err := service(s.opts.Containers)
	if err != nil {
		return nil, err
	}
	id, err := s.resolveContainer(req.GetContainerId())
	if err != nil {
		return nil, err
	}
	if err := ctrs.ReopenContainerLog(ctx, id); err != nil {
		return nil, err
	}
	return &runtimeapi.ReopenContainerLogResponse{}, nil
}
