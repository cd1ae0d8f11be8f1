package cri

import (
	runtimeapi "k8s.io/cri-api/pkg/apis/runtime/v1"
)

// StreamPodSandboxes sends the pods ListPodSandbox lists, in batches.
func (s *RuntimeServer) StreamPodSandboxes(req *runtimeapi.StreamPodSandboxesRequest, stream runtimeapi.RuntimeService_StreamPodSandboxesServer) error {
	pods, err := service(s.opts.Pods)
	if err != nil {
		return err
	}
	return sendBatches(stream.Context(), noErrors(pods.StreamPodSandboxes(req.GetFilter())), func(b []*runtimeapi.PodSandbox) error {
		return stream.Send(&runtimeapi.StreamPodSandboxesResponse{PodSandboxes: b})
	})
}
