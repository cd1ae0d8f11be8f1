package sandbox

import (
	"context"
	"os"

	runtimeapi "k8s.io/cri-api/pkg/apis/runtime/v1"

	"github.com/noded-dev/noded/internal/errdefs"
	"github.com/noded-dev/noded/internal/log"
	"github.com/noded-dev/noded/internal/oci"
	"github.com/noded-dev/noded/internal/state"
)

// recover reserves the recorded pod names and marks pods whose pause
// process is gone (node reboot, killed) as unknown: they can no longer
// run containers, and the kubelet will stop them. A ready pod's running
// pause is watched again, as RunPodSandbox watched it (Events.watchPause).
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
			s.events.watchPause(sb.ID)
			continue
		}
		lg.WithField("pod", sb.ID.Short()).Warn("pause process not running; pod is not ready")
		if _, err := s.o.Store.UpdateSandbox(sb.ID, func(r *state.Sandbox) error {
			r.State = state.SandboxUnknown
			return nil
		}); err == nil {
			s.events.emit(runtimeapi.ContainerEventType_CONTAINER_STOPPED_EVENT, sb.ID, string(sb.ID))
		}
	}
}

// recover reserves the recorded container names, records the exits that
// happened while noded was away (with their real exit codes, read from
// the monitors' state files), and watches the containers still running.
// A container recorded as created may have been started by a
// StartContainer that noded was killed in after the monitor started it:
// its record is brought up to what the monitor says too.
func (s *Containers) recover(ctx context.Context) {
	lg := log.FromContext(ctx)
	for _, c := range s.o.Store.Containers() {
		clog := lg.WithField("container", c.ID.Short())
		if err := s.names.Reserve(c.Name, string(c.ID)); err != nil {
			clog.WithError(err).Warn("duplicate container name on disk")
		}
		if c.State == state.ContainerExited {
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
		switch st.Status {
		case oci.StatusRunning:
			s.events.watch(c.SandboxID, c.ID)
		case oci.StatusExited:
			// Exited while noded was away: its STOPPED event is kept
			// for the subscribers that reconnect (Services.Recover).
			s.events.emit(runtimeapi.ContainerEventType_CONTAINER_STOPPED_EVENT, c.SandboxID, string(c.ID))
		}
	}
}

// recoverPending removes what the sandbox creates that were killed
// half-way made (see state.Store's pending records): their pending record
// says which pod it was, and every resource of a pod is found from its ID
// (pod directory, pinned netns, CNI attachment, monitor, pause container
// and its cgroups, root filesystem). The pod is recorded as not ready and
// removed as RemovePodSandbox removes any pod, which tolerates each part
// being absent; if that fails, the not-ready pod stays listed, for the
// kubelet to remove. A pending record whose record exists is a create that
// finished: it is dropped.
func (s *Pods) recoverPending(ctx context.Context) {
	lg := log.FromContext(ctx)
	for _, p := range s.o.Store.PendingSandboxes() {
		plog := lg.WithFields(map[string]any{"pod": p.ID.Short(), "name": p.Name})
		if !s.o.Store.HasSandbox(p.ID) {
			p.State = state.SandboxNotReady
			if err := s.o.Store.AddSandbox(p); err != nil {
				plog.WithError(err).Warn("recording a pod left half-made")
				continue
			}
			if err := s.RemovePodSandbox(ctx, p.ID); err != nil {
				plog.WithError(err).Warn("removing a pod left half-made; it stays, not ready")
			} else {
				plog.Info("removed a pod left half-made by an interrupted RunPodSandbox")
			}
		}
		if err := s.o.Store.EndSandbox(p.ID); err != nil {
			plog.WithError(err).Warn("dropping the pending record")
		}
	}
}

// recoverPending removes what the container creates that were killed
// half-way made: the container in its pod's monitor (with its cgroups),
// its root filesystem, its image volumes and its bundle, all found from
// its ID and request. Then any image volume whose container has no record
// is removed too (sweepImageVolumes).
func (s *Containers) recoverPending(ctx context.Context) {
	lg := log.FromContext(ctx)
	for _, p := range s.o.Store.PendingContainers() {
		clog := lg.WithFields(map[string]any{"container": p.ID.Short(), "name": p.Name})
		if !s.o.Store.HasContainer(p.ID) {
			if err := s.forceDelete(ctx, p.SandboxID, p.ID); err != nil && !errdefs.IsNotFound(err) {
				clog.WithError(err).Warn("deleting a container left half-made from its monitor")
			}
			if err := s.removeRootfs(p.StorageID); err != nil {
				clog.WithError(err).Warn("removing the root filesystem of a container left half-made")
				continue
			}
			if err := s.removeImageVolumes(p.ID, p.Config); err != nil {
				clog.WithError(err).Warn("removing the image volumes of a container left half-made")
				continue
			}
			if err := os.RemoveAll(p.Bundle); err != nil {
				clog.WithError(err).Warn("removing the bundle of a container left half-made")
				continue
			}
			clog.Info("removed a container left half-made by an interrupted CreateContainer")
		}
		if err := s.o.Store.EndContainer(p.ID); err != nil {
			clog.WithError(err).Warn("dropping the pending record")
		}
	}
	s.sweepImageVolumes(ctx)
}
