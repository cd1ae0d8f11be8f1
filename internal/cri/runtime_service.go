package cri

import (
	"context"
	"iter"
	"time"

	runtimeapi "k8s.io/cri-api/pkg/apis/runtime/v1"

	"github.com/noded-dev/noded/internal/errdefs"
	"github.com/noded-dev/noded/internal/ids"
)

// The RuntimeService handlers call one of these small interfaces each,
// declared here where they are used; internal/sandbox implements them
// (Pods, Containers, Exec, Stats, IDs). Every ID reaching them is
// resolved once, here at the edge (see resolveSandbox, resolveContainer).

// podService runs pod sandboxes (sandbox.Pods).
type podService interface {
	RunPodSandbox(ctx context.Context, cfg *runtimeapi.PodSandboxConfig, handler string) (ids.SandboxID, error)
	StopPodSandbox(ctx context.Context, id ids.SandboxID) error
	RemovePodSandbox(ctx context.Context, id ids.SandboxID) error
	PodSandboxStatus(id ids.SandboxID, verbose bool) (*runtimeapi.PodSandboxStatus, map[string]string, error)
	ListPodSandbox(f *runtimeapi.PodSandboxFilter) []*runtimeapi.PodSandbox
	// StreamPodSandboxes yields ListPodSandbox's pods one at a time.
	StreamPodSandboxes(f *runtimeapi.PodSandboxFilter) iter.Seq[*runtimeapi.PodSandbox]
	UpdatePodSandboxResources(ctx context.Context, id ids.SandboxID, overhead, resources *runtimeapi.LinuxContainerResources) error
}

// containerService runs containers in pods (sandbox.Containers).
type containerService interface {
	CreateContainer(ctx context.Context, pod ids.SandboxID, cfg *runtimeapi.ContainerConfig) (ids.ContainerID, error)
	StartContainer(ctx context.Context, id ids.ContainerID) error
	StopContainer(ctx context.Context, id ids.ContainerID, timeout time.Duration) error
	RemoveContainer(ctx context.Context, id ids.ContainerID) error
	ContainerStatus(id ids.ContainerID, verbose bool) (*runtimeapi.ContainerStatus, map[string]string, error)
	ListContainers(f *runtimeapi.ContainerFilter) []*runtimeapi.Container
	// StreamContainers yields ListContainers' containers one at a time.
	StreamContainers(f *runtimeapi.ContainerFilter) iter.Seq[*runtimeapi.Container]
	ReopenContainerLog(ctx context.Context, id ids.ContainerID) error
	UpdateContainerResources(ctx context.Context, id ids.ContainerID, r *runtimeapi.LinuxContainerResources) error
}

// execService runs processes in containers (sandbox.Exec).
type execService interface {
	ExecSync(ctx context.Context, id ids.ContainerID, cmd []string, timeout time.Duration) ([]byte, []byte, int32, error)
}

// statsService samples containers (sandbox.Stats).
type statsService interface {
	ContainerStats(ctx context.Context, id ids.ContainerID) (*runtimeapi.ContainerStats, error)
	ListContainerStats(ctx context.Context, f *runtimeapi.ContainerStatsFilter) []*runtimeapi.ContainerStats
	// StreamContainerStats samples ListContainerStats' containers one
	// at a time.
	StreamContainerStats(ctx context.Context, f *runtimeapi.ContainerStatsFilter) iter.Seq[*runtimeapi.ContainerStats]
}

// podStatsService samples pods, with the containers inside, for the
// kubelet's pod stats RPCs (sandbox.Stats). An unknown pod is NotFound; a
// stopped one has stats without usage, not an error.
type podStatsService interface {
	PodSandboxStats(ctx context.Context, id ids.SandboxID) (*runtimeapi.PodSandboxStats, error)
	ListPodSandboxStats(ctx context.Context, f *runtimeapi.PodSandboxStatsFilter) []*runtimeapi.PodSandboxStats
	// StreamPodSandboxStats samples ListPodSandboxStats' pods a few at
	// a time.
	StreamPodSandboxStats(ctx context.Context, f *runtimeapi.PodSandboxStatsFilter) iter.Seq[*runtimeapi.PodSandboxStats]
}

// metricsService serves the CRI metrics RPCs, cadvisor-style metrics of
// pods and their containers (podmetrics.Metrics).
type metricsService interface {
	ListMetricDescriptors() []*runtimeapi.MetricDescriptor
	ListPodSandboxMetrics(ctx context.Context) []*runtimeapi.PodSandboxMetrics
	// StreamPodSandboxMetrics yields ListPodSandboxMetrics' pods one at
	// a time.
	StreamPodSandboxMetrics(ctx context.Context) iter.Seq[*runtimeapi.PodSandboxMetrics]
}

// eventService streams container and pod sandbox events (sandbox.Events):
// ContainerEvents calls subscribed once no later event can be missed,
// then send with each event, until ctx ends, either fails or the
// subscriber is cut off (an errdefs error saying why).
type eventService interface {
	ContainerEvents(ctx context.Context, subscribed func() error, send func(*runtimeapi.ContainerEventResponse) error) error
}

// resolver turns a client's full ID or unique prefix into an ID
// (sandbox.IDs); NotFound when nothing matches.
type resolver interface {
	ResolveSandbox(ref string) (ids.SandboxID, error)
	ResolveContainer(ref string) (ids.ContainerID, error)
}

// service returns svc, or NotImplemented when noded runs without it
// (image-only test set-ups).
func service[T any](svc T) (T, error) {
	if any(svc) == nil {
		return svc, errdefs.NotImplemented("the runtime service is not enabled")
	}
	return svc, nil
}

// resolveSandbox checks that the request names a pod and finds it.
func (s *RuntimeServer) resolveSandbox(ref string) (ids.SandboxID, error) {
	if err := requireID("pod sandbox", ref); err != nil {
		return "", err
	}
	r, err := service(s.opts.IDs)
	if err != nil {
		return "", err
	}
	return r.ResolveSandbox(ref)
}

// resolveContainer checks that the request names a container and finds it.
func (s *RuntimeServer) resolveContainer(ref string) (ids.ContainerID, error) {
	if err := requireID("container", ref); err != nil {
		return "", err
	}
	r, err := service(s.opts.IDs)
	if err != nil {
		return "", err
	}
	return r.ResolveContainer(ref)
}

// gone reports whether a stop or remove found nothing to act on: the CRI
// makes those idempotent (the kubelet retries them, critest checks it).
func gone(err error) bool { return errdefs.IsNotFound(err) }

// requireID rejects an empty ID with InvalidArgument, before any lookup.
func requireID(kind, id string) error {
	if id == "" {
		return errdefs.InvalidArgument("%s ID must not be empty", kind)
	}
	return nil
}
