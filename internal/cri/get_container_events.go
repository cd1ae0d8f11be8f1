package cri

import (
	"google.golang.org/grpc/metadata"
	runtimeapi "k8s.io/cri-api/pkg/apis/runtime/v1"
)

// GetContainerEvents streams container and pod sandbox events (what the
// kubelet's EventedPLEG watches) until the client goes away, noded shuts
// down (Unavailable), or the client falls behind and loses events
// (ResourceExhausted: it should relist and subscribe again). The response
// headers are sent once the subscription exists: a client that waits for
// them misses no later event.
func (s *RuntimeServer) GetContainerEvents(_ *runtimeapi.GetEventsRequest, stream runtimeapi.RuntimeService_GetContainerEventsServer) error {
	events, err := service(s.opts.Events)
	if err != nil {
		return err
	}
	return events.ContainerEvents(stream.Context(), func() error { return stream.SendHeader(metadata.MD{}) }, stream.Send)
}
