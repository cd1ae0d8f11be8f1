package sandbox

import (
	"context"
	"errors"
	"fmt"
	"syscall"
	"time"

	"github.com/noded-dev/noded/internal/errdefs"
	"github.com/noded-dev/noded/internal/ids"
	"github.com/noded-dev/noded/internal/netcni"
	"github.com/noded-dev/noded/internal/oci"
	"github.com/noded-dev/noded/internal/state"
)

// killWaitLimit bounds the wait for a SIGKILLed process to be reported
// gone; a process stuck in the kernel (D state) must not hang the RPC.
const killWaitLimit = 30 * time.Second

// killAndWait stops a container: sig first (when non-zero) with timeout to
// exit, then SIGKILL. A container that already exited is not an error.
func (s *Service) killAndWait(ctx context.Context, pod oci.PodID, ctr oci.ContainerID, sig syscall.Signal, timeout time.Duration) error {
	if sig != 0 && timeout > 0 {
		if err := s.o.Monitor.Kill(ctx, pod, ctr, sig); err != nil {
			if isExited(err) {
				return nil
			}
			return err
		}
		wctx, cancel := context.WithTimeout(ctx, timeout)
		_, err := s.o.Monitor.Wait(wctx, pod, ctr)
		cancel()
		if err == nil {
			return nil
		}
		if ctx.Err() != nil {
			return ctx.Err()
		}
	}
	if err := s.o.Monitor.Kill(ctx, pod, ctr, syscall.SIGKILL); err != nil {
		if isExited(err) {
			return nil
		}
		return err
	}
	wctx, cancel := context.WithTimeout(ctx, killWaitLimit)
	defer cancel()
	if _, err := s.o.Monitor.Wait(wctx, pod, ctr); err != nil {
		return fmt.Errorf("waiting for %s to die after SIGKILL: %w", ctr, err)
	}
	return nil
}

// isExited reports the monitor's answer to signalling a container that is
// no longer running.
func isExited(err error) bool {
	return errors.Is(err, errdefs.ErrFailedPrecondition)
}

// StopPodSandbox stops every container of the pod and the pause process,
// and releases its network. Stopping an unknown or stopped pod succeeds
// (the kubelet retries stops, and critest checks this).
func (s *Service) StopPodSandbox(ctx context.Context, idOrPrefix string) error {
	id, unlock, err := s.lockKnownPod(idOrPrefix)
	if err != nil || unlock == nil {
		return err
	}
	defer unlock()
	return s.stopPodLocked(ctx, id)
}

// lockKnownPod resolves a pod and takes its lock. An unknown pod gives a
// nil unlock and no error: stops and removes of unknown pods succeed.
func (s *Service) lockKnownPod(idOrPrefix string) (ids.SandboxID, func(), error) {
	id, err := s.resolveSandbox(idOrPrefix)
	if errdefs.IsNotFound(err) {
		return "", nil, nil
	}
	if err != nil {
		return "", nil, err
	}
	return id, s.lockPod(id), nil
}

func (s *Service) stopPodLocked(ctx context.Context, id ids.SandboxID) error {
	rec, err := s.o.Store.Sandbox(id)
	if err != nil {
		if errdefs.IsNotFound(err) {
			return nil
		}
		return err
	}
	for _, c := range s.o.Store.SandboxContainers(id) {
		if err := s.stopContainer(ctx, c.ID, 0); err != nil {
			return fmt.Errorf("stopping container %s: %w", c.ID.Short(), err)
		}
	}
	if err := s.killAndWait(ctx, id, oci.ContainerID(id), 0, 0); err != nil && !errdefs.IsNotFound(err) && !errors.Is(err, errdefs.ErrUnavailable) {
		return fmt.Errorf("stopping the pause container: %w", err)
	}
	if rec.NetNSPath != "" {
		if err := s.o.Network.Teardown(ctx, podNetwork(rec)); err != nil {
			return fmt.Errorf("tearing down pod network: %w", err)
		}
		if err := netcni.RemoveNetNS(rec.NetNSPath); err != nil {
			return fmt.Errorf("removing network namespace: %w", err)
		}
	}
	_, err = s.o.Store.UpdateSandbox(id, func(sb *state.Sandbox) error {
		sb.State = state.SandboxNotReady
		sb.NetworkReady = false
		return nil
	})
	if err == nil && rec.State == state.SandboxReady {
		s.log.WithField("pod", id.Short()).Info("pod sandbox stopped")
	}
	return err
}

// RemovePodSandbox stops the pod if needed and removes it with all its
// containers. Removing an unknown pod succeeds.
func (s *Service) RemovePodSandbox(ctx context.Context, idOrPrefix string) error {
	id, unlock, err := s.lockKnownPod(idOrPrefix)
	if err != nil || unlock == nil {
		return err
	}
	defer unlock()
	if err := s.stopPodLocked(ctx, id); err != nil {
		return err
	}
	for _, c := range s.o.Store.SandboxContainers(id) {
		if err := s.removeContainer(ctx, c.ID); err != nil {
			return fmt.Errorf("removing container %s: %w", c.ID.Short(), err)
		}
	}
	pod := id
	if err := s.o.Monitor.Delete(ctx, pod, oci.ContainerID(id)); err != nil && !errdefs.IsNotFound(err) && !errors.Is(err, errdefs.ErrUnavailable) {
		return fmt.Errorf("deleting the pause container: %w", err)
	}
	if err := s.o.Monitor.StopMonitor(ctx, pod); err != nil && !errdefs.IsNotFound(err) {
		return fmt.Errorf("stopping the pod monitor: %w", err)
	}
	if err := s.removeRootfs(storageID(ids.ContainerID(id))); err != nil {
		return fmt.Errorf("removing the pause root filesystem: %w", err)
	}
	if err := removePodFiles(s.podDir(id)); err != nil {
		return fmt.Errorf("removing pod files: %w", err)
	}
	if err := s.o.Store.DeleteSandbox(id); err != nil {
		return err
	}
	s.names.Release(string(id))
	s.log.WithField("pod", id.Short()).Info("pod sandbox removed")
	return nil
}

// resolveSandbox finds a sandbox by full ID or unique prefix.
func (s *Service) resolveSandbox(ref string) (ids.SandboxID, error) {
	return resolveID(ref, "pod sandbox", s.o.Store.HasSandbox, s.o.Store.SandboxIDs)
}

// resolveID finds an object by full ID (the kubelet's case, answered
// without listing) or, as crictl users type them, by unique prefix.
func resolveID[T ~string](ref, kind string, exists func(T) bool, all func() []T) (T, error) {
	if exists(T(ref)) {
		return T(ref), nil
	}
	id, err := ids.Resolve(ref, all())
	if errdefs.IsNotFound(err) {
		return id, errdefs.NotFound("%s %q not found", kind, ref)
	}
	return id, err
}
