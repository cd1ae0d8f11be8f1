package sandbox

import (
	"context"
	"time"

	specs "github.com/opencontainers/runtime-spec/specs-go"
	runtimeapi "k8s.io/cri-api/pkg/apis/runtime/v1"

	"github.com/noded-dev/noded/internal/errdefs"
	"github.com/noded-dev/noded/internal/ids"
	"github.com/noded-dev/noded/internal/log"
	"github.com/noded-dev/noded/internal/state"
)

// nriHooks are the NRI plugins' lifecycle events (internal/nri). The
// hooks that return an error can refuse the operation; the others are
// notifications. Where each is called:
//
//	RunPodSandbox     pause running and network attached, before the record
//	                  is written (not listed while plugins look at it)
//	StopPodSandbox    workload containers stopped (their records exited),
//	                  pause still there, the pod still recorded
//	RemovePodSandbox  everything removed
//	CreateContainer   spec generated, before the bundle and the record;
//	                  adjusts the spec in place
//	PostCreate        record written
//	StartContainer    before the monitor starts it; PostStart after
//	UpdateContainer   before the resources are merged; PostUpdate after
//	StopContainer     the exit recorded, by a stop or by the exit watcher
//	                  (both may call it: the implementation tells the
//	                  plugins once, and before StopContainer returns)
//	RemoveContainer   everything removed
//
// BlockSync is held by a creation from before its hook until its record is
// written, so that a plugin connecting meanwhile is synchronized with it
// or told of it, never neither.
type nriHooks interface {
	BlockSync() (unblock func())
	RunPodSandbox(ctx context.Context, pod *state.Sandbox) error
	StopPodSandbox(ctx context.Context, pod *state.Sandbox)
	RemovePodSandbox(ctx context.Context, pod *state.Sandbox)
	CreateContainer(ctx context.Context, pod *state.Sandbox, c *state.Container, spec *specs.Spec) error
	PostCreateContainer(ctx context.Context, pod *state.Sandbox, c *state.Container)
	StartContainer(ctx context.Context, pod *state.Sandbox, c *state.Container) error
	PostStartContainer(ctx context.Context, pod *state.Sandbox, c *state.Container)
	UpdateContainer(ctx context.Context, pod *state.Sandbox, c *state.Container, r *runtimeapi.LinuxContainerResources) (*runtimeapi.LinuxContainerResources, error)
	PostUpdateContainer(ctx context.Context, pod *state.Sandbox, c *state.Container)
	StopContainer(ctx context.Context, pod *state.Sandbox, c *state.Container)
	RemoveContainer(ctx context.Context, pod *state.Sandbox, c *state.Container)
}

// noNRI is NRI turned off (nri-enable = false): nothing is called.
type noNRI struct{}

func (noNRI) BlockSync() func()                                                     { return func() {} }
func (noNRI) RunPodSandbox(context.Context, *state.Sandbox) error                   { return nil }
func (noNRI) StopPodSandbox(context.Context, *state.Sandbox)                        {}
func (noNRI) RemovePodSandbox(context.Context, *state.Sandbox)                      {}
func (noNRI) PostCreateContainer(context.Context, *state.Sandbox, *state.Container) {}
func (noNRI) StartContainer(context.Context, *state.Sandbox, *state.Container) error {
	return nil
}
func (noNRI) PostStartContainer(context.Context, *state.Sandbox, *state.Container)  {}
func (noNRI) PostUpdateContainer(context.Context, *state.Sandbox, *state.Container) {}
func (noNRI) StopContainer(context.Context, *state.Sandbox, *state.Container)       {}
func (noNRI) RemoveContainer(context.Context, *state.Sandbox, *state.Container)     {}
func (noNRI) CreateContainer(context.Context, *state.Sandbox, *state.Container, *specs.Spec) error {
	return nil
}
func (noNRI) UpdateContainer(_ context.Context, _ *state.Sandbox, _ *state.Container, r *runtimeapi.LinuxContainerResources) (*runtimeapi.LinuxContainerResources, error) {
	return r, nil
}

// nriContainer tells the plugins of a container's event with its record
// and its pod's, as they are now; a container or pod removed meanwhile is
// left out.
func (b *base) nriContainer(ctx context.Context, id ids.ContainerID, notify func(context.Context, *state.Sandbox, *state.Container)) {
	c, err := b.o.Store.Container(id)
	if err != nil {
		return
	}
	pod, err := b.o.Store.Sandbox(c.SandboxID)
	if err != nil {
		return
	}
	notify(ctx, pod, c)
}

// UpdateResources applies resources an NRI plugin asks for (an unsolicited
// update), as UpdateContainerResources applies the kubelet's, without
// asking the plugins again.
func (s *Containers) UpdateResources(ctx context.Context, id ids.ContainerID, r *runtimeapi.LinuxContainerResources) error {
	return s.updateResources(ctx, id, r, false)
}

// evictTimeout is how long an evicted container has to exit on its stop
// signal before it is killed.
const evictTimeout = 10 * time.Second

// Evict stops a container an NRI plugin evicts. Its pod and record stay:
// the kubelet sees it exited and acts as on any exit.
func (s *Containers) Evict(ctx context.Context, id ids.ContainerID, reason string) error {
	if !s.o.Store.HasContainer(id) {
		return errdefs.NotFound("container %s not found", id.Short())
	}
	log.FromContext(ctx).WithField("reason", reason).Info("stopping a container an NRI plugin evicts")
	return s.StopContainer(ctx, id, evictTimeout)
}
