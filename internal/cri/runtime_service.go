package cri

import (
	"context"
	"time"

	runtimeapi "k8s.io/cri-api/pkg/apis/runtime/v1"

	"github.com/noded-dev/noded/internal/errdefs"
	"github.com/noded-dev/noded/internal/ids"
)

// runtimeService is what the pod and container handlers need from
// internal/sandbox. It is declared here, where it is used.
type runtimeService interface {
	RunPodSandbox(ctx context.Context, cfg *runtimeapi.PodSandboxConfig, handler string) (ids.SandboxID, error)
	StopPodSandbox(ctx context.Context, id string) error
	RemovePodSandbox(ctx context.Context, id string) error
	PodSandboxStatus(id string, verbose bool) (*runtimeapi.PodSandboxStatus, map[string]string, error)
	ListPodSandbox(f *runtimeapi.PodSandboxFilter) []*runtimeapi.PodSandbox

	CreateContainer(ctx context.Context, podID string, cfg *runtimeapi.ContainerConfig) (ids.ContainerID, error)
	StartContainer(ctx context.Context, id string) error
	StopContainer(ctx context.Context, id string, timeout time.Duration) error
	RemoveContainer(ctx context.Context, id string) error
	ContainerStatus(id string, verbose bool) (*runtimeapi.ContainerStatus, map[string]string, error)
	ListContainers(f *runtimeapi.ContainerFilter) []*runtimeapi.Container
	ExecSync(ctx context.Context, id string, cmd []string, timeout time.Duration) ([]byte, []byte, int32, error)
	ReopenContainerLog(ctx context.Context, id string) error
	ContainerStats(id string) (*runtimeapi.ContainerStats, error)
	ListContainerStats(f *runtimeapi.ContainerStatsFilter) []*runtimeapi.ContainerStats
}

// runtime returns the runtime service, or NotImplemented when noded runs
// without one (image-only test set-ups).
func (s *Server) runtime() (runtimeService, error) {
	if s.opts.Runtime == nil {
		return nil, errdefs.NotImplemented("the runtime service is not enabled")
	}
	return s.opts.Runtime, nil
}

// requireID rejects an empty ID with InvalidArgument, before any lookup.
func requireID(kind, id string) error {
	if id == "" {
		return errdefs.InvalidArgument("%s ID must not be empty", kind)
	}
	return nil
}
