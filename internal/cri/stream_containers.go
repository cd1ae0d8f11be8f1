package cri

import (
	runtimeapi "k8s.io/cri-api/pkg/apis/runtime/v1"
)

// StreamContainers sends the containers ListContainers lists, in batches.
func (s *RuntimeServer) StreamContainers(req *runtimeapi.StreamContainersRequest, stream runtimeapi.RuntimeService_StreamContainersServer) error {
	ctrs, err := service(s.opts.Containers)
	if err != nil {
		return err
	}
	return sendBatches(stream.Context(), noErrors(ctrs.StreamContainers(req.GetFilter())), func(b []*runtimeapi.Container) error {
		return stream.Send(&runtimeapi.StreamContainersResponse{Containers: b})
	})
}
