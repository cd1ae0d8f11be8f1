package nri

import (
	"context"
	"fmt"

	specs "github.com/opencontainers/runtime-spec/specs-go"
	runtimeapi "k8s.io/cri-api/pkg/apis/runtime/v1"

	"github.com/noded-dev/noded/internal/log"
	"github.com/noded-dev/noded/internal/state"
)

// The lifecycle hooks, in the order of a pod's life. Each is a no-op on a
// nil *NRI, and while no plugin is connected.

// RunPodSandbox tells the plugins of a new pod before it is recorded (and
// so before any List or Status shows it); an error fails RunPodSandbox.
func (n *NRI) RunPodSandbox(ctx context.Context, pod *state.Sandbox) error {
	if n == nil || !n.active() {
		return nil
	}
	if err := n.ad.RunPodSandbox(ctx, &runPodReq{Pod: podSandbox(pod)}); err != nil {
		return fmt.Errorf("NRI RunPodSandbox: %w", err)
	}
	return nil
}

// StopPodSandbox tells the plugins that a pod stops, once per pod: its
// workload containers are stopped, and it is still recorded.
func (n *NRI) StopPodSandbox(ctx context.Context, pod *state.Sandbox) {
	if n == nil || !n.markStopped("pod/"+string(pod.ID)) || !n.active() {
		return
	}
	if err := n.ad.StopPodSandbox(ctx, &stopPodReq{Pod: podSandbox(pod)}); err != nil {
		log.FromContext(ctx).WithError(err).Warn("NRI StopPodSandbox")
	}
}

// RemovePodSandbox tells the plugins that a pod is gone.
func (n *NRI) RemovePodSandbox(ctx context.Context, pod *state.Sandbox) {
	if n == nil {
		return
	}
	n.StopPodSandbox(ctx, pod)
	defer n.forget("pod/" + string(pod.ID))
	if !n.active() {
		return
	}
	if err := n.ad.RemovePodSandbox(ctx, &removePodReq{Pod: podSandbox(pod)}); err != nil {
		log.FromContext(ctx).WithError(err).Warn("NRI RemovePodSandbox")
	}
}

// CreateContainer has the plugins adjust a container's spec before its
// bundle is written and it is recorded; spec is changed in place. An error
// (a plugin's refusal, or an adjustment noded cannot apply) fails
// CreateContainer. Updates of other containers and evictions the plugins
// ask for are carried out in the background.
func (n *NRI) CreateContainer(ctx context.Context, pod *state.Sandbox, c *state.Container, spec *specs.Spec) error {
	if n == nil || !n.active() {
		return nil
	}
	rpl, err := n.ad.CreateContainer(ctx, &createCtrReq{Pod: podSandbox(pod), Container: container(c, spec)})
	if err != nil {
		return fmt.Errorf("NRI CreateContainer: %w", err)
	}
	if err := adjust(spec, rpl.GetAdjust(), n.o.CDI, n.o.SwapAccounting); err != nil {
		return fmt.Errorf("NRI CreateContainer: applying the plugins' adjustments: %w", err)
	}
	n.apply(ctx, rpl.GetUpdate(), rpl.GetEvict())
	return nil
}

// PostCreateContainer tells the plugins that a container was created.
func (n *NRI) PostCreateContainer(ctx context.Context, pod *state.Sandbox, c *state.Container) {
	if n == nil || !n.active() {
		return
	}
	if err := n.ad.PostCreateContainer(ctx, &postCreateReq{Pod: podSandbox(pod), Container: container(c, nil)}); err != nil {
		log.FromContext(ctx).WithError(err).Warn("NRI PostCreateContainer")
	}
}

// StartContainer tells the plugins that a container is about to start; an
// error fails StartContainer, which leaves the container created.
func (n *NRI) StartContainer(ctx context.Context, pod *state.Sandbox, c *state.Container) error {
	if n == nil || !n.active() {
		return nil
	}
	if err := n.ad.StartContainer(ctx, &startCtrReq{Pod: podSandbox(pod), Container: container(c, nil)}); err != nil {
		return fmt.Errorf("NRI StartContainer: %w", err)
	}
	return nil
}

// PostStartContainer tells the plugins that a container runs.
func (n *NRI) PostStartContainer(ctx context.Context, pod *state.Sandbox, c *state.Container) {
	if n == nil || !n.active() {
		return
	}
	if err := n.ad.PostStartContainer(ctx, &postStartReq{Pod: podSandbox(pod), Container: container(c, nil)}); err != nil {
		log.FromContext(ctx).WithError(err).Warn("NRI PostStartContainer")
	}
}

// UpdateContainer lets the plugins change the resources the kubelet asks
// for a container; it returns what to apply. An error fails the update.
func (n *NRI) UpdateContainer(ctx context.Context, pod *state.Sandbox, c *state.Container, r *runtimeapi.LinuxContainerResources) (*runtimeapi.LinuxContainerResources, error) {
	if n == nil || !n.active() {
		return r, nil
	}
	rpl, err := n.ad.UpdateContainer(ctx, &updateCtrReq{Pod: podSandbox(pod), Container: container(c, nil), LinuxResources: nriResources(r)})
	if err != nil {
		return nil, fmt.Errorf("NRI UpdateContainer: %w", err)
	}
	var others []*updateReq
	for _, u := range rpl.GetUpdate() {
		if u.GetContainerId() != string(c.ID) {
			others = append(others, u)
			continue
		}
		if got := criResources(u.GetLinux().GetResources()); got != nil {
			r = mergeCRI(r, got)
		}
	}
	n.apply(ctx, others, rpl.GetEvict())
	return r, nil
}

// PostUpdateContainer tells the plugins that a container's resources were
// updated.
func (n *NRI) PostUpdateContainer(ctx context.Context, pod *state.Sandbox, c *state.Container) {
	if n == nil || !n.active() {
		return
	}
	if err := n.ad.PostUpdateContainer(ctx, &postUpdateReq{Pod: podSandbox(pod), Container: container(c, nil)}); err != nil {
		log.FromContext(ctx).WithError(err).Warn("NRI PostUpdateContainer")
	}
}

// StopContainer tells the plugins that a container stopped, once per
// container, whether it was stopped or exited by itself.
func (n *NRI) StopContainer(ctx context.Context, pod *state.Sandbox, c *state.Container) {
	if n == nil || !n.markStopped("ctr/"+string(c.ID)) || !n.active() {
		return
	}
	rpl, err := n.ad.StopContainer(ctx, &stopCtrReq{Pod: podSandbox(pod), Container: container(c, nil)})
	if err != nil {
		log.FromContext(ctx).WithError(err).Warn("NRI StopContainer")
		return
	}
	n.apply(ctx, rpl.GetUpdate(), nil)
}

// RemoveContainer tells the plugins that a container is gone; a container
// that ran and whose stop they were not told of yet is reported stopped
// first.
func (n *NRI) RemoveContainer(ctx context.Context, pod *state.Sandbox, c *state.Container) {
	if n == nil {
		return
	}
	if c.State != state.ContainerCreated {
		n.StopContainer(ctx, pod, c)
	}
	defer n.forget("ctr/" + string(c.ID))
	if !n.active() {
		return
	}
	if err := n.ad.RemoveContainer(ctx, &removeCtrReq{Pod: podSandbox(pod), Container: container(c, nil)}); err != nil {
		log.FromContext(ctx).WithError(err).Warn("NRI RemoveContainer")
	}
}

// apply carries out what a hook's answer asks for other containers. It
// runs in the background: an update or a stop takes the other container's
// lock, which must not be waited for under the caller's own.
func (n *NRI) apply(ctx context.Context, updates []*updateReq, evictions []*evictReq) {
	if len(updates) == 0 && len(evictions) == 0 {
		return
	}
	ctx = context.WithoutCancel(ctx)
	go func() {
		if len(updates) > 0 {
			if _, err := n.updateContainers(ctx, updates); err != nil {
				log.FromContext(ctx).WithError(err).Warn("NRI plugins' container updates")
			}
		}
		n.evict(ctx, evictions)
	}()
}
