package sandbox

import (
	"context"

	"github.com/noded-dev/noded/internal/errdefs"
	"github.com/noded-dev/noded/internal/oci"
	"github.com/noded-dev/noded/internal/state"
)

// Recover rebuilds the in-memory view after noded (re)starts: it reserves
// every recorded name, reconnects to running monitors, records exits that
// happened while noded was away (with their real exit codes, read from the
// monitors' state files), and watches the containers still running.
func (s *Service) Recover(ctx context.Context) {
	for _, sb := range s.o.Store.Sandboxes() {
		if err := s.names.Reserve(sb.Name, string(sb.ID)); err != nil {
			s.log.WithError(err).WithField("pod", sb.ID.Short()).Warn("duplicate pod name on disk")
		}
		if sb.State == state.SandboxReady {
			st, err := s.o.Monitor.State(ctx, sb.ID, oci.ContainerID(sb.ID))
			if err != nil || st.Status != oci.StatusRunning {
				// The pause process is gone (node reboot, killed): the pod
				// can no longer run containers; the kubelet will stop it.
				s.log.WithField("pod", sb.ID.Short()).Warn("pause process not running; pod is not ready")
				_, _ = s.o.Store.UpdateSandbox(sb.ID, func(r *state.Sandbox) error {
					r.State = state.SandboxUnknown
					return nil
				})
			}
		}
	}
	for _, c := range s.o.Store.Containers() {
		if err := s.names.Reserve(c.Name, string(c.ID)); err != nil {
			s.log.WithError(err).WithField("container", c.ID.Short()).Warn("duplicate container name on disk")
		}
		if c.State != state.ContainerRunning && c.State != state.ContainerUnknown {
			continue
		}
		st, err := s.o.Monitor.State(ctx, c.SandboxID, c.ID)
		if err != nil {
			if !errdefs.IsNotFound(err) {
				s.log.WithError(err).WithField("container", c.ID.Short()).Warn("reading container state")
				continue
			}
			st = oci.State{Status: oci.StatusExited, ExitCode: 255, Reason: "Unknown"}
		}
		if _, err := s.o.Store.UpdateContainer(c.ID, func(r *state.Container) error {
			applyState(r, st)
			return nil
		}); err != nil {
			s.log.WithError(err).WithField("container", c.ID.Short()).Warn("recording recovered state")
			continue
		}
		if st.Status == oci.StatusRunning {
			s.watch(c.SandboxID, c.ID)
		}
	}
}
