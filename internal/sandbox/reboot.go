package sandbox

import (
	"context"
	"time"

	runtimeapi "k8s.io/cri-api/pkg/apis/runtime/v1"

	"github.com/noded-dev/noded/internal/log"
	"github.com/noded-dev/noded/internal/state"
)

// RebootReason is the reason of the exit recorded for a container that was
// running (or created) when the node went down.
const RebootReason = "node rebooted"

// recoverReboot is the recovery after the node rebooted (Options.Rebooted:
// the run directory, a tmpfs, came back empty): every monitor, pause and
// container process is gone with their namespaces and mounts. Each
// container not yet exited is recorded exited with code 255 and
// RebootReason (its monitor's state file, written before the power went,
// may still say running), then each pod is stopped as StopPodSandbox
// stops one, which releases its CNI allocations (a DEL from the cached
// ADD result: host-local frees the IP, the other plugins what they hold on
// the host) and records it NotReady. Nothing is removed: the kubelet sees
// the pods NotReady and their containers exited, and makes new ones.
func (s *Services) recoverReboot(ctx context.Context) {
	lg := log.FromContext(ctx)
	now := time.Now().UnixNano()
	store := s.Pods.o.Store
	for _, c := range store.Containers() {
		if c.State == state.ContainerExited {
			continue
		}
		if _, err := store.UpdateContainer(c.ID, func(r *state.Container) error {
			r.State = state.ContainerExited
			r.Pid = 0
			r.ExitCode = 255
			r.Reason = RebootReason
			r.Message = "the node went down while the container was " + string(c.State)
			r.FinishedAt = now
			return nil
		}); err != nil {
			lg.WithError(err).WithField("container", c.ID.Short()).Warn("recording a container the reboot ended")
			continue
		}
		s.Events.emit(runtimeapi.ContainerEventType_CONTAINER_STOPPED_EVENT, c.SandboxID, string(c.ID))
	}
	pods := 0
	for _, sb := range store.Sandboxes() {
		if sb.Released {
			continue
		}
		if err := s.Pods.StopPodSandbox(ctx, sb.ID); err != nil {
			// The pod stays listed, not ready; the kubelet's stop retries.
			lg.WithError(err).WithField("pod", sb.ID.Short()).Warn("releasing a pod the reboot ended")
			continue
		}
		pods++
	}
	lg.WithField("pods", pods).Warn("the node rebooted: its pods are recorded not ready and their containers exited; the kubelet makes new ones")
}
