package sandbox

import (
	"context"

	"github.com/noded-dev/noded/internal/errdefs"
	"github.com/noded-dev/noded/internal/log"
	"github.com/noded-dev/noded/internal/oci"
	"github.com/noded-dev/noded/internal/state"
)

// recover reserves the recorded pod names and marks pods whose pause
// process is gone (node reboot, killed) as unknown: they can no longer
// run containers, and the kubelet will stop them.
func (s *Pods) recover(ctx context.Context) {
	lg := log.FromContext(ctx)
	for _, sb := range s.o.Store.Sandboxes() {
		if err := s.names.Reserve(sb.Name, string(sb.ID)); err != nil {
			lg.WithError(err).WithField("pod", sb.ID.Short()).Warn("duplicate pod name on disk")
		}
		if sb.State != state.SandboxReady {
			continue
		}
		st, err := s.o.Monitor.State(ctx, sb.ID, oci.ContainerID(sb.ID))
		if err == nil && st.Status == oci.StatusRunning {
			continue
		}
		lg.WithField("pod", sb.ID.Short()).Warn("pause process not running; pod is not ready")
		_, _ = s.o.Store.UpdateSandbox(sb.ID, func(r *state.Sandbox) error {
			r.State = state.SandboxUnknown
			return nil
		})
	}
}

// recover reserves the recorded container names, records the exits that
// happened while noded was away (with their real exit codes, read from
// the monitors' state files), and watches the containers still running.
func (s *Containers) recover(ctx context.Context) {
	lg := log.FromContext(ctx)
	for _, c := range s.o.Store.Containers() {
		clog := lg.WithField("container", c.ID.Short())
		if err := s.names.Reserve(c.Name, string(c.ID)); err != nil {
			clog.WithError(err).Warn("duplicate container name on disk")
		}
		if c.State != state.ContainerRunning && c.State != state.ContainerUnknown {
			continue
		}
		st, err := s.o.Monitor.State(ctx, c.SandboxID, c.ID)
		if err != nil {
			if !errdefs.IsNotFound(err) {
				clog.WithError(err).Warn("reading container state")
				continue
			}
			st = oci.State{Status: oci.StatusExited, ExitCode: 255, Reason: "Unknown"}
		}
		if _, err := s.o.Store.UpdateContainer(c.ID, func(r *state.Container) error {
			applyState(r, st)
			return nil
		}); err != nil {
			clog.WithError(err).Warn("recording recovered state")
			continue
		}
		if st.Status == oci.StatusRunning {
			s.events.watch(c.SandboxID, c.ID)
		}
	}
}
