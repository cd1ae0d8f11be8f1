package sandbox

import (
	"context"
	"errors"
	"fmt"
	"os"
	"path/filepath"
	"strconv"
	"syscall"
	"time"

	runtimeapi "k8s.io/cri-api/pkg/apis/runtime/v1"

	"github.com/noded-dev/noded/internal/admit"
	"github.com/noded-dev/noded/internal/cleanup"
	"github.com/noded-dev/noded/internal/errdefs"
	"github.com/noded-dev/noded/internal/ids"
	"github.com/noded-dev/noded/internal/oci"
	"github.com/noded-dev/noded/internal/specgen"
	"github.com/noded-dev/noded/internal/state"
	"github.com/noded-dev/noded/internal/storage"
)

// Keys of the container record's Extra map.
const (
	extraStopSignal  = "stopSignal"
	extraUser        = "user" // "uid:gid:g1,g2"
	extraTermination = "terminationMessageFile"
	extraCgroupsPath = "cgroupsPath"
)

func storageID(id ids.ContainerID) storage.ContainerID { return storage.ContainerID(id) }

// containerName is the unique CRI name of a container, as the kubelet
// builds it.
func containerName(c *runtimeapi.ContainerMetadata, p *runtimeapi.PodSandboxMetadata) string {
	return fmt.Sprintf("%s_%s_%s_%s_%d", c.GetName(), p.GetName(), p.GetNamespace(), p.GetUid(), c.GetAttempt())
}

// CreateContainer creates a container in a ready pod.
func (s *Service) CreateContainer(ctx context.Context, podRef string, cfg *runtimeapi.ContainerConfig) (_ ids.ContainerID, retErr error) {
	if cfg == nil || cfg.GetMetadata().GetName() == "" {
		return "", errdefs.InvalidArgument("container config with metadata.name is required")
	}
	if cfg.GetImage().GetImage() == "" {
		return "", errdefs.InvalidArgument("container image is required")
	}
	podID, err := s.resolveSandbox(podRef)
	if err != nil {
		return "", err
	}
	unlockPod := s.lockPod(podID)
	defer unlockPod()
	pod, err := s.o.Store.Sandbox(podID)
	if err != nil {
		return "", err
	}
	if pod.State != state.SandboxReady {
		return "", errdefs.FailedPrecondition("pod sandbox %s is not ready", podID.Short())
	}

	id := ids.NewContainerID()
	name := containerName(cfg.GetMetadata(), pod.Config.GetMetadata())
	log := s.log.WithFields(map[string]any{"container": id.Short(), "name": name})
	var undo cleanup.Stack
	defer func() { undo.RunIf(ctx, &retErr, log) }()

	if err := s.names.Reserve(name, string(id)); err != nil {
		return "", err
	}
	undo.Push("release container name", func(context.Context) error { s.names.Release(string(id)); return nil })

	img, err := s.o.Images.Resolve(ctx, cfg.GetImage().GetImage())
	if err != nil {
		return "", err
	}
	// Containers of running pods go before new pods (internal/admit).
	leave, err := s.enter(ctx, admit.Container)
	if err != nil {
		return "", err
	}
	defer leave()
	rootPath, err := s.createRootfs(ctx, storageID(id), img.ID, name, &undo)
	if err != nil {
		return "", err
	}
	if err := s.step("container-rootfs"); err != nil {
		return "", err
	}

	bundle := s.bundleDir(podID, id)
	undo.Push("remove bundle", func(context.Context) error { return os.RemoveAll(bundle) })
	if err := os.MkdirAll(bundle, 0o700); err != nil {
		return "", err
	}
	termFile := filepath.Join(bundle, "termination-log")
	if err := os.WriteFile(termFile, nil, 0o666); err != nil {
		return "", err
	}
	res, err := s.generateContainerSpec(ctx, pod, id, cfg, img, rootPath, termFile)
	if err != nil {
		return "", err
	}
	if err := writeBundle(bundle, res.Spec); err != nil {
		return "", err
	}

	logPath := containerLogPath(pod.Config, cfg)
	req := oci.CreateRequest{
		Pod: podID, ID: id, Bundle: bundle, LogPath: logPath,
		Stdin: cfg.GetStdin(), StdinOnce: cfg.GetStdinOnce(), Tty: cfg.GetTty(),
	}
	undo.Push("delete container from monitor", func(ctx context.Context) error { return s.forceDelete(ctx, req.Pod, req.ID) })
	if _, err := s.o.Monitor.Create(ctx, req); err != nil {
		return "", fmt.Errorf("creating container: %w", err)
	}
	if err := s.step("container-create"); err != nil {
		return "", err
	}

	rec := &state.Container{
		ID: id, SandboxID: podID, Name: name, State: state.ContainerCreated, CreatedAt: time.Now().UnixNano(),
		Config: cfg, ImageRef: img.Name, ImageID: img.ID.String(), StorageID: string(id), Bundle: bundle,
		LogPath: logPath,
		Extra: map[string]string{
			extraStopSignal:  strconv.Itoa(int(res.StopSignal)),
			extraUser:        formatUser(res.User),
			extraTermination: termFile,
			extraCgroupsPath: res.Spec.Linux.CgroupsPath,
		},
	}
	if err := s.o.Store.AddContainer(rec); err != nil {
		return "", err
	}
	undo.Release()
	log.Info("container created")
	return id, nil
}

func (s *Service) generateContainerSpec(ctx context.Context, pod *state.Sandbox, id ids.ContainerID, cfg *runtimeapi.ContainerConfig, img Image, rootPath, termFile string) (*specgen.Result, error) {
	gen := &specgen.Container{
		ID: string(id), SandboxID: string(pod.ID), Config: cfg, Sandbox: pod.Config,
		Image: img.Config, ImageName: img.Name, RootfsPath: rootPath,
		Namespaces:             specgen.NamespacesOfPID(pod.PausePID),
		Files:                  sandboxFiles(pod.Dir, pod.Config),
		TerminationMessageFile: termFile,
		CgroupParent:           pod.CgroupParent,
		Node:                   s.o.Node,
	}
	nsOpts := cfg.GetLinux().GetSecurityContext().GetNamespaceOptions()
	if nsOpts.GetPid() == runtimeapi.NamespaceMode_TARGET {
		target, err := s.o.Store.Container(ids.ContainerID(nsOpts.GetTargetId()))
		if err != nil {
			return nil, errdefs.InvalidArgument("target container %q of the PID namespace: %v", nsOpts.GetTargetId(), err)
		}
		st, err := s.o.Monitor.State(ctx, target.SandboxID, target.ID)
		if err != nil || st.Pid == 0 {
			return nil, errdefs.FailedPrecondition("target container %s is not running", target.ID.Short())
		}
		gen.TargetPIDNamespace = fmt.Sprintf("/proc/%d/ns/pid", st.Pid)
	}
	return gen.Generate()
}

// containerLogPath is where the kubelet expects the container's log.
// Without a log directory or path the output is discarded.
func containerLogPath(pod *runtimeapi.PodSandboxConfig, cfg *runtimeapi.ContainerConfig) string {
	if pod.GetLogDirectory() == "" || cfg.GetLogPath() == "" {
		return os.DevNull
	}
	return filepath.Join(pod.GetLogDirectory(), cfg.GetLogPath())
}

func formatUser(u specgen.User) string {
	s := fmt.Sprintf("%d:%d:", u.UID, u.GID)
	for i, g := range u.AdditionalGIDs {
		if i > 0 {
			s += ","
		}
		s += strconv.FormatUint(uint64(g), 10)
	}
	return s
}

// StartContainer starts a created container.
func (s *Service) StartContainer(ctx context.Context, ref string) error {
	c, unlock, err := s.lockedContainer(ref)
	if err != nil {
		return err
	}
	defer unlock()
	if c.State != state.ContainerCreated {
		return errdefs.FailedPrecondition("container %s is %s, not created", c.ID.Short(), c.State)
	}
	if pod, err := s.o.Store.Sandbox(c.SandboxID); err != nil || pod.State != state.SandboxReady {
		return errdefs.FailedPrecondition("pod sandbox %s is not ready", c.SandboxID.Short())
	}
	pod, ctr := c.SandboxID, c.ID
	if err := s.o.Monitor.Start(ctx, pod, ctr); err != nil {
		return fmt.Errorf("starting container: %w", err)
	}
	st, err := s.o.Monitor.State(ctx, pod, ctr)
	if err != nil {
		return err
	}
	if _, err := s.o.Store.UpdateContainer(c.ID, func(r *state.Container) error {
		applyState(r, st)
		return nil
	}); err != nil {
		return err
	}
	s.watch(c.SandboxID, c.ID)
	return nil
}

// applyState copies what the monitor reports into the record.
func applyState(r *state.Container, st oci.State) {
	switch st.Status {
	case oci.StatusRunning:
		r.State = state.ContainerRunning
	case oci.StatusExited:
		r.State = state.ContainerExited
	case oci.StatusCreated:
		return
	default:
		r.State = state.ContainerUnknown
	}
	r.Pid = st.Pid
	if !st.StartedAt.IsZero() {
		r.StartedAt = st.StartedAt.UnixNano()
	}
	if st.Status == oci.StatusExited {
		r.Pid = 0
		r.ExitCode = st.ExitCode
		r.Reason = st.Reason
		if st.OOMKilled {
			r.Reason = "OOMKilled"
		}
		if r.Reason == "" {
			r.Reason = "Completed"
			if st.ExitCode != 0 {
				r.Reason = "Error"
			}
		}
		r.Message = st.Message
		r.FinishedAt = st.FinishedAt.UnixNano()
		if st.FinishedAt.IsZero() {
			r.FinishedAt = time.Now().UnixNano()
		}
	}
}

// watch follows a running container until it exits and records the exit,
// so that status and list calls never have to ask the monitor.
func (s *Service) watch(pod ids.SandboxID, id ids.ContainerID) {
	s.watchers.Add(1)
	go func() {
		defer s.watchers.Done()
		st, err := s.o.Monitor.Wait(s.watchCtx, pod, id)
		if err != nil {
			if s.watchCtx.Err() == nil {
				s.log.WithError(err).WithField("container", id.Short()).Warn("lost track of container exit")
			}
			return
		}
		s.recordExit(id, st)
	}()
}

func (s *Service) recordExit(id ids.ContainerID, st oci.State) {
	_, err := s.o.Store.UpdateContainer(id, func(r *state.Container) error {
		if r.State == state.ContainerExited {
			return errAlreadyRecorded
		}
		applyState(r, st)
		return nil
	})
	if err != nil && !errors.Is(err, errAlreadyRecorded) && !errdefs.IsNotFound(err) {
		s.log.WithError(err).WithField("container", id.Short()).Warn("recording container exit")
	}
}

var errAlreadyRecorded = fmt.Errorf("exit already recorded")

// StopContainer stops a running container with its stop signal, then
// SIGKILL after timeout. Stopping a stopped or unknown container succeeds:
// the CRI makes stops idempotent, and the kubelet retries them.
func (s *Service) StopContainer(ctx context.Context, ref string, timeout time.Duration) error {
	id, err := s.resolveContainer(ref)
	if err != nil {
		if errdefs.IsNotFound(err) {
			return nil
		}
		return err
	}
	return s.stopContainer(ctx, id, timeout)
}

func (s *Service) stopContainer(ctx context.Context, id ids.ContainerID, timeout time.Duration) error {
	unlock := s.lockContainer(id)
	defer unlock()
	c, err := s.o.Store.Container(id)
	if err != nil {
		return err
	}
	if c.State == state.ContainerExited {
		return nil
	}
	pod, ctr := c.SandboxID, c.ID
	sig := syscall.SIGTERM
	if n, _ := strconv.Atoi(c.Extra[extraStopSignal]); n > 0 {
		sig = syscall.Signal(n)
	}
	if err := s.killAndWait(ctx, pod, ctr, sig, timeout); err != nil && !errdefs.IsNotFound(err) {
		return err
	}
	st, err := s.o.Monitor.State(ctx, pod, ctr)
	if err != nil {
		if !errdefs.IsNotFound(err) {
			return err
		}
		st = oci.State{Status: oci.StatusExited, ExitCode: 255, Reason: "Unknown", FinishedAt: time.Now()}
	}
	if st.Status != oci.StatusExited {
		// A created container that never started has no process to kill.
		st = oci.State{Status: oci.StatusExited, ExitCode: 0, Reason: "Completed", FinishedAt: time.Now(), Pid: 0}
		if c.State == state.ContainerRunning {
			return fmt.Errorf("container %s still runs after SIGKILL", c.ID.Short())
		}
	}
	_, err = s.o.Store.UpdateContainer(id, func(r *state.Container) error {
		applyState(r, st)
		return nil
	})
	return err
}

// RemoveContainer kills the container if it runs and removes it.
// Removing an unknown container succeeds.
func (s *Service) RemoveContainer(ctx context.Context, ref string) error {
	id, err := s.resolveContainer(ref)
	if err != nil {
		if errdefs.IsNotFound(err) {
			return nil
		}
		return err
	}
	return s.removeContainer(ctx, id)
}

func (s *Service) removeContainer(ctx context.Context, id ids.ContainerID) error {
	if err := s.stopContainer(ctx, id, 0); err != nil && !errdefs.IsNotFound(err) {
		return err
	}
	unlock := s.lockContainer(id)
	defer unlock()
	c, err := s.o.Store.Container(id)
	if err != nil {
		if errdefs.IsNotFound(err) {
			return nil
		}
		return err
	}
	if err := s.o.Monitor.Delete(ctx, c.SandboxID, c.ID); err != nil && !errdefs.IsNotFound(err) {
		return fmt.Errorf("deleting container: %w", err)
	}
	if err := s.removeRootfs(storageID(c.ID)); err != nil {
		return err
	}
	if err := os.RemoveAll(c.Bundle); err != nil {
		return err
	}
	if err := s.o.Store.DeleteContainer(c.ID); err != nil {
		return err
	}
	s.cpu.forget(string(c.ID))
	s.names.Release(string(c.ID))
	return nil
}

// ExecSync runs a command in a running container.
func (s *Service) ExecSync(ctx context.Context, ref string, cmd []string, timeout time.Duration) (stdout, stderr []byte, code int32, err error) {
	id, err := s.resolveContainer(ref)
	if err != nil {
		return nil, nil, 0, err
	}
	c, err := s.o.Store.Container(id)
	if err != nil {
		return nil, nil, 0, err
	}
	if c.State != state.ContainerRunning {
		return nil, nil, 0, errdefs.FailedPrecondition("container %s is not running", id.Short())
	}
	return s.o.Monitor.ExecSync(ctx, c.SandboxID, c.ID, cmd, timeout)
}

// ReopenContainerLog asks the monitor to reopen the container's log file
// after the kubelet rotated it.
func (s *Service) ReopenContainerLog(ctx context.Context, ref string) error {
	id, err := s.resolveContainer(ref)
	if err != nil {
		return err
	}
	c, err := s.o.Store.Container(id)
	if err != nil {
		return err
	}
	if c.State != state.ContainerRunning {
		return errdefs.FailedPrecondition("container %s is not running", id.Short())
	}
	return s.o.Monitor.ReopenLog(ctx, c.SandboxID, c.ID)
}

// lockedContainer resolves ref and returns its record under its lock.
func (s *Service) lockedContainer(ref string) (*state.Container, func(), error) {
	id, err := s.resolveContainer(ref)
	if err != nil {
		return nil, nil, err
	}
	unlock := s.lockContainer(id)
	c, err := s.o.Store.Container(id)
	if err != nil {
		unlock()
		return nil, nil, err
	}
	return c, unlock, nil
}

// resolveContainer finds a container by full ID or unique prefix.
func (s *Service) resolveContainer(ref string) (ids.ContainerID, error) {
	return resolveID(ref, "container", s.o.Store.HasContainer, s.o.Store.ContainerIDs)
}
