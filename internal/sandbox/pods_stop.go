package sandbox

import (
	"context"
	"errors"
	"fmt"
	"path/filepath"

	runtimeapi "k8s.io/cri-api/pkg/apis/runtime/v1"

	"github.com/noded-dev/noded/internal/errdefs"
	"github.com/noded-dev/noded/internal/ids"
	"github.com/noded-dev/noded/internal/log"
	"github.com/noded-dev/noded/internal/oci"
	"github.com/noded-dev/noded/internal/state"
)

// StopPodSandbox stops every container of the pod and the pause process,
// and releases its network. Stopping a pod that is gone or stopped
// succeeds (the kubelet retries stops, and critest checks this).
func (s *Pods) StopPodSandbox(ctx context.Context, id ids.SandboxID) error {
	unlock, err := s.lockPod(ctx, id)
	if err != nil {
		return err
	}
	defer unlock()
	return s.stopLocked(ctx, id)
}

func (s *Pods) stopLocked(ctx context.Context, id ids.SandboxID) error {
	rec, err := s.o.Store.Sandbox(id)
	if err != nil {
		if errdefs.IsNotFound(err) {
			return nil
		}
		return err
	}
	if rec.Released {
		return nil // stopped, and holds nothing
	}
	for _, c := range s.o.Store.SandboxContainers(id) {
		if err := s.containers.StopContainer(ctx, c.ID, 0); err != nil {
			return fmt.Errorf("stopping container %s: %w", c.ID.Short(), err)
		}
	}
	if err := s.step(ctx, "stop-containers"); err != nil {
		return err
	}
	// With the workload stopped and the pod still whole (once per pod:
	// a stopped one returned above). A pod whose pause died (unknown) is
	// told too: its plugins still hold what they gave it.
	if rec.State == state.SandboxReady || rec.State == state.SandboxUnknown {
		s.o.NRI.StopPodSandbox(ctx, rec)
	}
	if err := s.killAndWait(ctx, id, oci.ContainerID(id), 0, 0); err != nil && !errdefs.IsNotFound(err) && !errors.Is(err, errdefs.ErrUnavailable) {
		return fmt.Errorf("stopping the pause container: %w", err)
	}
	if err := s.step(ctx, "stop-pause"); err != nil {
		return err
	}
	if rec.NetNSPath != "" {
		if err := s.o.Network.Teardown(ctx, podNetwork(rec)); err != nil {
			return fmt.Errorf("tearing down pod network: %w", err)
		}
		if err := s.step(ctx, "stop-network"); err != nil {
			return err
		}
		if err := s.o.Host.RemoveNetNS(rec.NetNSPath); err != nil {
			return fmt.Errorf("removing network namespace: %w", err)
		}
		if err := s.step(ctx, "stop-netns"); err != nil {
			return err
		}
	}
	if err := s.release(ctx, rec); err != nil {
		return err
	}
	if err := s.step(ctx, "stop-release"); err != nil {
		return err
	}
	if _, err = s.o.Store.UpdateSandbox(id, func(sb *state.Sandbox) error {
		sb.State = state.SandboxNotReady
		sb.NetworkReady = false
		sb.Released = true
		return nil
	}); err != nil {
		return err
	}
	if rec.State == state.SandboxReady {
		log.FromContext(ctx).WithField("pod", id.Short()).Info("pod sandbox stopped")
		// A pod found not ready at recovery had its STOPPED event then.
		s.events.emit(runtimeapi.ContainerEventType_CONTAINER_STOPPED_EVENT, id, string(id))
	}
	return s.step(ctx, "stop-pod-record")
}

// release frees what a stopped pod would otherwise hold until the kubelet
// removes it (minutes to hours later, at its garbage collection): the
// monitor, whose shutdown deletes the pause and every container (their
// cgroups with them), the root filesystem and image volume mounts and
// /dev/shm. The
// containers' records already hold their final states (StopContainer),
// and their logs are files of the kubelet's; the storage containers, the
// bundles and the pod's files stay until RemovePodSandbox.
func (s *Pods) release(ctx context.Context, rec *state.Sandbox) error {
	// A failed shutdown leaves the monitor running: the stop fails, and
	// the kubelet retries it.
	if err := s.o.Monitor.StopMonitor(ctx, rec.ID); err != nil {
		return fmt.Errorf("stopping the pod monitor: %w", err)
	}
	for _, c := range s.o.Store.SandboxContainers(rec.ID) {
		if err := s.o.Rootfs.Unmount(c.StorageID, true); err != nil && !errdefs.IsNotFound(err) {
			return fmt.Errorf("unmounting the root filesystem of container %s: %w", c.ID.Short(), err)
		}
		if err := s.unmountImageVolumes(c); err != nil {
			return err
		}
	}
	if rec.PauseRootfs == "" {
		if err := s.o.Rootfs.Unmount(ids.ContainerID(rec.ID), true); err != nil && !errdefs.IsNotFound(err) {
			return fmt.Errorf("unmounting the pause root filesystem: %w", err)
		}
	}
	return s.o.Host.UnmountShm(filepath.Join(rec.Dir, "shm"))
}

// RemovePodSandbox stops the pod if needed and removes it with all its
// containers. Removing a pod that is gone succeeds.
func (s *Pods) RemovePodSandbox(ctx context.Context, id ids.SandboxID) error {
	unlock, err := s.lockPod(ctx, id)
	if err != nil {
		return err
	}
	defer unlock()
	rec, err := s.o.Store.Sandbox(id)
	if err != nil {
		if errdefs.IsNotFound(err) {
			return nil
		}
		return err
	}
	if err := s.stopLocked(ctx, id); err != nil {
		return err
	}
	for _, c := range s.o.Store.SandboxContainers(id) {
		if err := s.containers.RemoveContainer(ctx, c.ID); err != nil {
			return fmt.Errorf("removing container %s: %w", c.ID.Short(), err)
		}
	}
	if err := s.step(ctx, "remove-containers"); err != nil {
		return err
	}
	if err := s.o.Monitor.Delete(ctx, id, oci.ContainerID(id)); err != nil && !errdefs.IsNotFound(err) && !errors.Is(err, errdefs.ErrUnavailable) {
		return fmt.Errorf("deleting the pause container: %w", err)
	}
	if err := s.step(ctx, "remove-pause"); err != nil {
		return err
	}
	if err := s.o.Monitor.StopMonitor(ctx, id); err != nil && !errdefs.IsNotFound(err) {
		return fmt.Errorf("stopping the pod monitor: %w", err)
	}
	if err := s.step(ctx, "remove-monitor"); err != nil {
		return err
	}
	// A shared pause root filesystem (PauseRootfs) is not the pod's to
	// remove.
	if rec.PauseRootfs == "" {
		if err := s.removeRootfs(ids.ContainerID(id)); err != nil {
			return fmt.Errorf("removing the pause root filesystem: %w", err)
		}
	}
	if err := s.step(ctx, "remove-pause-rootfs"); err != nil {
		return err
	}
	if err := removePodFiles(s.o.Host, s.podDir(id)); err != nil {
		return fmt.Errorf("removing pod files: %w", err)
	}
	if err := s.step(ctx, "remove-files"); err != nil {
		return err
	}
	// Built before the record goes, so that it carries the pod's last
	// status (the kubelet ignores events without one).
	deleted := s.events.event(runtimeapi.ContainerEventType_CONTAINER_DELETED_EVENT, id, string(id))
	if err := s.o.Store.DeleteSandbox(id); err != nil {
		return err
	}
	s.events.publish(deleted)
	s.o.NRI.RemovePodSandbox(ctx, rec)
	s.names.Release(string(id))
	log.FromContext(ctx).WithField("pod", id.Short()).Info("pod sandbox removed")
	return s.step(ctx, "remove-pod-record")
}
