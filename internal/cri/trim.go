package cri

import (
	"context"
	"path"

	"google.golang.org/grpc"
)

// Trimmer is told of each pod and container lifecycle call as a piece of
// work, and returns the memory of a burst of them to the kernel once it is
// over (internal/memtrim).
type Trimmer interface {
	Begin() (end func())
}

// lifecycleRPCs are the calls whose garbage (specs, records, requests of
// pod starts and stops) is worth returning once a burst of them is over.
// The kubelet's lists and statuses are not among them: they come every
// second on a busy node, so a release after them would run all the time.
var lifecycleRPCs = map[string]bool{
	"RunPodSandbox": true, "StopPodSandbox": true, "RemovePodSandbox": true,
	"CreateContainer": true, "StartContainer": true, "StopContainer": true, "RemoveContainer": true,
	"RemoveImage": true, "CheckpointContainer": true, "CheckpointPod": true, "RestorePod": true,
}

// TrimInterceptor marks each lifecycle call as work of t.
func TrimInterceptor(t Trimmer) grpc.UnaryServerInterceptor {
	return func(ctx context.Context, req any, info *grpc.UnaryServerInfo, handler grpc.UnaryHandler) (any, error) {
		if lifecycleRPCs[path.Base(info.FullMethod)] {
			defer t.Begin()()
		}
		return handler(ctx, req)
	}
}
