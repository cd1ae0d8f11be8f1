package sandbox

import (
	"context"

	runtimeapi "k8s.io/cri-api/pkg/apis/runtime/v1"

	"github.com/noded-dev/noded/internal/ids"
	"github.com/noded-dev/noded/internal/log"
	"github.com/noded-dev/noded/internal/resize"
	"github.com/noded-dev/noded/internal/state"
)

// UpdatePodSandboxResources records the pod-level resources the kubelet
// computed for a resized pod (its overhead, and the sum of its
// containers' resources) in the pod's record, as given.
//
// It applies nothing, on purpose: noded owns no pod cgroup. The pod's
// cgroup is the kubelet's CgroupParent (kubepods/<qos>/pod<uid>), which
// the kubelet creates and whose limits it sets itself before and after it
// resizes the containers; noded only places the pause container and the
// containers below it (specgen.cgroupsPath), and without a parent they go
// under /noded each on its own, with no pod cgroup at all. containerd and
// CRI-O likewise change no cgroup for this call (they pass it to NRI
// plugins).
func (s *Pods) UpdatePodSandboxResources(ctx context.Context, id ids.SandboxID, overhead, resources *runtimeapi.LinuxContainerResources) error {
	for _, r := range []*runtimeapi.LinuxContainerResources{overhead, resources} {
		if err := resize.Check(r); err != nil {
			return err
		}
	}
	unlock, err := s.lockPod(ctx, id)
	if err != nil {
		return err
	}
	defer unlock()
	if _, err := s.o.Store.UpdateSandbox(id, func(sb *state.Sandbox) error {
		sb.Overhead = resize.FromCRI(overhead)
		sb.Resources = resize.FromCRI(resources)
		return nil
	}); err != nil {
		return err
	}
	log.FromContext(ctx).WithField("pod", id.Short()).Debug("pod resources recorded")
	return nil
}
