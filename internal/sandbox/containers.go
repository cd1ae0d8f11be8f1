package sandbox

import (
	"context"
	"fmt"
	"os"
	"path/filepath"
	"syscall"
	"time"

	runtimeapi "k8s.io/cri-api/pkg/apis/runtime/v1"

	"github.com/noded-dev/noded/internal/admit"
	"github.com/noded-dev/noded/internal/cleanup"
	"github.com/noded-dev/noded/internal/errdefs"
	"github.com/noded-dev/noded/internal/ids"
	"github.com/noded-dev/noded/internal/log"
	"github.com/noded-dev/noded/internal/oci"
	"github.com/noded-dev/noded/internal/resize"
	"github.com/noded-dev/noded/internal/specgen"
	"github.com/noded-dev/noded/internal/state"
)

// Containers runs the application containers of ready pods. It owns the
// container records; their exits are recorded by Events, and their
// resource samples are Stats'.
type Containers struct {
	*base
	events *Events
	stats  *Stats
}

// containerName is the unique CRI name of a container, as the kubelet
// builds it.
func containerName(c *runtimeapi.ContainerMetadata, p *runtimeapi.PodSandboxMetadata) string {
	return fmt.Sprintf("%s_%s_%s_%s_%d", c.GetName(), p.GetName(), p.GetNamespace(), p.GetUid(), c.GetAttempt())
}

// CreateContainer creates a container in a ready pod.
func (s *Containers) CreateContainer(ctx context.Context, podID ids.SandboxID, cfg *runtimeapi.ContainerConfig) (_ ids.ContainerID, retErr error) {
	cfg, restore, err := s.fromCheckpoint(cfg)
	if err != nil {
		return "", err
	}
	if err := validateContainerConfig(cfg); err != nil {
		return "", err
	}
	// The helper moves the container's init into its cgroups at the end:
	// the kernel's grace period for that move elapses meanwhile.
	s.o.Moves.Warm()
	unlockPod, err := s.lockPod(ctx, podID)
	if err != nil {
		return "", err
	}
	defer unlockPod()
	pod, err := s.o.Store.Sandbox(podID)
	if err != nil {
		return "", err
	}
	if pod.State != state.SandboxReady {
		return "", errdefs.FailedPrecondition("pod sandbox %s is not ready", podID.Short())
	}
	// The pod's user namespace, from its record: the same after a restart.
	userns, err := specgen.ContainerUserNamespace(cfg, pod.Config)
	if err != nil {
		return "", err
	}

	id := ids.NewContainerID()
	name := containerName(cfg.GetMetadata(), pod.Config.GetMetadata())
	lg := log.FromContext(ctx).WithFields(map[string]any{"container": id.Short(), "name": name})
	ctx = log.WithContext(ctx, lg)
	var undo cleanup.Stack
	defer func() { undo.RunIf(ctx, &retErr, lg) }()

	if err := s.names.Reserve(name, string(id)); err != nil {
		return "", err
	}
	undo.Push("release container name", func(context.Context) error { s.names.Release(string(id)); return nil })

	img, err := s.o.Images.Resolve(ctx, cfg.GetImage().GetImage())
	if err != nil {
		return "", err
	}
	bundle := s.bundleDir(podID, id)
	// Before anything is made on the host: what recovery needs to remove
	// it all if noded is killed before the record is added.
	if err := s.o.Store.BeginContainer(&state.Container{
		ID: id, SandboxID: podID, Name: name, State: state.ContainerCreated, Config: cfg, StorageID: id, Bundle: bundle,
	}); err != nil {
		return "", err
	}
	undo.Push("drop pending record", func(context.Context) error { return s.o.Store.EndContainer(id) })
	if err := s.step(ctx, "container-pending"); err != nil {
		return "", err
	}
	// Containers of running pods go before new pods (internal/admit).
	leave, err := s.enter(ctx, admit.Container)
	if err != nil {
		return "", err
	}
	defer leave()
	rootPath, err := s.createRootfs(id, img.ID, name, userns, &undo)
	if err != nil {
		return "", err
	}
	if err := s.step(ctx, "container-rootfs"); err != nil {
		return "", err
	}
	volumes, volumeRecs, err := s.mountImageVolumes(ctx, id, cfg, userns, &undo)
	if err != nil {
		return "", err
	}
	if err := s.step(ctx, "container-image-volumes"); err != nil {
		return "", err
	}

	undo.Push("remove bundle", func(context.Context) error { return os.RemoveAll(bundle) })
	if err := os.MkdirAll(bundle, 0o700); err != nil {
		return "", err
	}
	termFile := filepath.Join(bundle, "termination-log")
	if err := os.WriteFile(termFile, nil, 0o666); err != nil {
		return "", err
	}
	res, err := s.generateContainerSpec(ctx, pod, id, cfg, img, rootPath, termFile, volumes)
	if err != nil {
		return "", err
	}
	// The NRI plugins adjust the spec before the bundle is written, and
	// the container is not recorded (listed) until they agree. Plugins
	// before a refusing one have seen it, so a rollback tells them it is
	// gone.
	unblockSync := s.o.NRI.BlockSync()
	defer unblockSync()
	nriRec := &state.Container{
		ID: id, SandboxID: podID, Name: name, State: state.ContainerCreated, CreatedAt: time.Now().UnixNano(),
		Config: cfg, ImageRef: img.Name, ImageID: img.ID.String(), StorageID: id, Bundle: bundle,
		User: state.User(res.User), CgroupsPath: res.Spec.Linux.CgroupsPath,
	}
	undo.Push("NRI: container removed", func(ctx context.Context) error {
		s.o.NRI.RemoveContainer(ctx, pod, nriRec)
		return nil
	})
	if err := s.o.NRI.CreateContainer(ctx, pod, nriRec, res.Spec); err != nil {
		return "", err
	}
	if err := s.step(ctx, "container-nri"); err != nil {
		return "", err
	}
	if err := writeBundle(bundle, res.Spec); err != nil {
		return "", err
	}

	logPath := containerLogPath(pod.Config, cfg)
	if err := makeLogDir(logPath, &undo); err != nil {
		return "", err
	}
	req := oci.CreateRequest{
		Pod: podID, ID: id, Bundle: bundle, LogPath: logPath,
		Stdin: cfg.GetStdin(), StdinOnce: cfg.GetStdinOnce(), Tty: cfg.GetTty(),
	}
	if err := unpackCheckpoint(ctx, restore, &req, rootPath); err != nil {
		return "", err
	}
	undo.Push("delete container from monitor", func(ctx context.Context) error { return s.forceDelete(ctx, req.Pod, req.ID) })
	if _, err := s.o.Monitor.Create(ctx, req); err != nil {
		return "", fmt.Errorf("creating container: %w", err)
	}
	if err := s.step(ctx, "container-create"); err != nil {
		return "", err
	}

	rec := &state.Container{
		ID: id, SandboxID: podID, Name: name, State: state.ContainerCreated, CreatedAt: nriRec.CreatedAt,
		Config: cfg, ImageRef: img.Name, ImageID: img.ID.String(), StorageID: id, Bundle: bundle,
		LogPath: logPath, StopSignal: int(res.StopSignal), User: state.User(res.User),
		TerminationMessageFile: termFile, CgroupsPath: res.Spec.Linux.CgroupsPath,
		Resources: resize.Recorded(res.Spec.Linux.Resources), OOMScoreAdj: res.Spec.Process.OOMScoreAdj,
		ImageVolumes: volumeRecs,
	}
	if err := s.o.Store.AddContainer(rec); err != nil {
		return "", err
	}
	undo.Release()
	if err := s.o.Store.EndContainer(id); err != nil {
		// The record is there: recovery drops the pending one.
		lg.WithError(err).Warn("dropping the pending record")
	}
	lg.Info("container created")
	s.events.emit(runtimeapi.ContainerEventType_CONTAINER_CREATED_EVENT, podID, string(id))
	s.o.NRI.PostCreateContainer(ctx, pod, rec)
	return id, nil
}

func (s *Containers) generateContainerSpec(ctx context.Context, pod *state.Sandbox, id ids.ContainerID, cfg *runtimeapi.ContainerConfig, img Image, rootPath, termFile string, imageVolumes map[int]string) (*specgen.Result, error) {
	gen := &specgen.Container{
		ID: string(id), SandboxID: string(pod.ID), Config: cfg, Sandbox: pod.Config,
		Image: img.Config, ImageName: img.Name, RootfsPath: rootPath,
		Namespaces:             specgen.NamespacesOfPID(pod.PausePID),
		Files:                  sandboxFiles(pod.Dir, pod.Config),
		TerminationMessageFile: termFile,
		ImageVolumes:           imageVolumes,
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

func validateContainerConfig(cfg *runtimeapi.ContainerConfig) error {
	if cfg == nil || cfg.GetMetadata().GetName() == "" {
		return errdefs.InvalidArgument("container config with metadata.name is required")
	}
	if cfg.GetImage().GetImage() == "" {
		return errdefs.InvalidArgument("container image is required")
	}
	// The log is the kubelet's, in the pod's log directory: a path
	// leaving it would have the monitor write anywhere on the host.
	if p := cfg.GetLogPath(); p != "" && !filepath.IsLocal(p) {
		return errdefs.InvalidArgument("log path %q is not a relative path inside the pod's log directory", p)
	}
	if err := checkMetadataSize(cfg.GetMetadata().GetName(), cfg.GetLabels(), cfg.GetAnnotations()); err != nil {
		return err
	}
	// What the spec generator would refuse anyway, refused before a name
	// is reserved or a root file system made.
	return specgen.CheckContainerConfig(cfg)
}

// Kubernetes' own bounds on what a name and a pod's labels and
// annotations may hold; noded keeps them in memory and in every record.
const (
	maxNameLength = 253
	maxMetadata   = 256 << 10
)

// checkMetadataSize refuses a name longer than any Kubernetes object's,
// and labels and annotations larger than Kubernetes allows together.
func checkMetadataSize(name string, labels, annotations map[string]string) error {
	if len(name) > maxNameLength {
		return errdefs.InvalidArgument("name of %d bytes, more than %d", len(name), maxNameLength)
	}
	size := 0
	for _, m := range []map[string]string{labels, annotations} {
		for k, v := range m {
			size += len(k) + len(v)
		}
	}
	if size > maxMetadata {
		return errdefs.InvalidArgument("labels and annotations of %d bytes, more than %d", size, maxMetadata)
	}
	return nil
}

// containerLogPath is where the kubelet expects the container's log.
// Without a log directory or path the output is discarded.
func containerLogPath(pod *runtimeapi.PodSandboxConfig, cfg *runtimeapi.ContainerConfig) string {
	if pod.GetLogDirectory() == "" || cfg.GetLogPath() == "" {
		return os.DevNull
	}
	return filepath.Join(pod.GetLogDirectory(), cfg.GetLogPath())
}

// StartContainer starts a created container.
func (s *Containers) StartContainer(ctx context.Context, id ids.ContainerID) error {
	c, unlock, err := s.lockedExisting(ctx, id)
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
	if podRec, err := s.o.Store.Sandbox(c.SandboxID); err == nil {
		if err := s.o.NRI.StartContainer(ctx, podRec, c); err != nil {
			return err
		}
	}
	pod, ctr := c.SandboxID, c.ID
	if err := s.o.Monitor.Start(ctx, pod, ctr); err != nil {
		return fmt.Errorf("starting container: %w", err)
	}
	restored(ctx, c.Bundle)
	if err := s.step(ctx, "start-monitor"); err != nil {
		return err
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
	// Before the watcher starts, so that STARTED comes before STOPPED. A
	// container that exited already has its exit recorded here, not by
	// the watcher: its STOPPED event goes from here too.
	s.events.emit(runtimeapi.ContainerEventType_CONTAINER_STARTED_EVENT, c.SandboxID, string(c.ID))
	s.nriContainer(ctx, c.ID, s.o.NRI.PostStartContainer)
	if st.Status == oci.StatusExited {
		s.events.emit(runtimeapi.ContainerEventType_CONTAINER_STOPPED_EVENT, c.SandboxID, string(c.ID))
		s.nriContainer(ctx, c.ID, s.o.NRI.StopContainer)
	}
	s.events.watch(c.SandboxID, c.ID)
	return s.step(ctx, "start-record")
}

// StopContainer stops a running container with its stop signal, then
// SIGKILL after timeout. Stopping a stopped or unknown container succeeds:
// the CRI makes stops idempotent, and the kubelet retries them.
func (s *Containers) StopContainer(ctx context.Context, id ids.ContainerID, timeout time.Duration) error {
	c, unlock, err := s.locked(ctx, id)
	if err != nil || c == nil {
		return err
	}
	defer unlock()
	if c.State == state.ContainerExited {
		return nil
	}
	pod, ctr := c.SandboxID, c.ID
	sig := syscall.SIGTERM
	if c.StopSignal > 0 {
		sig = syscall.Signal(c.StopSignal)
	}
	if err := s.killAndWait(ctx, pod, ctr, sig, timeout); err != nil && !errdefs.IsNotFound(err) {
		return err
	}
	if err := s.step(ctx, "stop-kill"); err != nil {
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
	// The exit watcher may have recorded the exit meanwhile: whichever
	// records it publishes the one STOPPED event.
	stopped := false
	if _, err = s.o.Store.UpdateContainer(id, func(r *state.Container) error {
		stopped = r.State != state.ContainerExited
		applyState(r, st)
		return nil
	}); err != nil {
		return err
	}
	if stopped {
		s.events.emit(runtimeapi.ContainerEventType_CONTAINER_STOPPED_EVENT, pod, string(ctr))
	}
	// Whichever path recorded the exit, the plugins hear of it once
	// (internal/nri remembers), and before StopContainer returns.
	s.nriContainer(ctx, id, s.o.NRI.StopContainer)
	return s.step(ctx, "stop-record")
}

// RemoveContainer kills the container if it runs and removes it.
// Removing an unknown container succeeds.
func (s *Containers) RemoveContainer(ctx context.Context, id ids.ContainerID) error {
	if err := s.StopContainer(ctx, id, 0); err != nil {
		return err
	}
	c, unlock, err := s.locked(ctx, id)
	if err != nil || c == nil {
		return err
	}
	defer unlock()
	if err := s.o.Monitor.Delete(ctx, c.SandboxID, c.ID); err != nil && !errdefs.IsNotFound(err) {
		return fmt.Errorf("deleting container: %w", err)
	}
	if err := s.step(ctx, "remove-container-delete"); err != nil {
		return err
	}
	if err := s.removeRootfs(c.StorageID); err != nil {
		return err
	}
	if err := s.step(ctx, "remove-container-rootfs"); err != nil {
		return err
	}
	if err := s.removeImageVolumes(c.ID, c.Config); err != nil {
		return err
	}
	if err := s.step(ctx, "remove-container-image-volumes"); err != nil {
		return err
	}
	if err := os.RemoveAll(c.Bundle); err != nil {
		return err
	}
	if err := s.step(ctx, "remove-container-bundle"); err != nil {
		return err
	}
	if err := s.o.Store.DeleteContainer(c.ID); err != nil {
		return err
	}
	s.events.emit(runtimeapi.ContainerEventType_CONTAINER_DELETED_EVENT, c.SandboxID, string(c.ID))
	if pod, err := s.o.Store.Sandbox(c.SandboxID); err == nil {
		s.o.NRI.RemoveContainer(ctx, pod, c)
	}
	s.stats.forget(c.ID)
	s.names.Release(string(c.ID))
	return s.step(ctx, "remove-container-record")
}

// ReopenContainerLog asks the monitor to reopen the container's log file
// after the kubelet rotated it.
func (s *Containers) ReopenContainerLog(ctx context.Context, id ids.ContainerID) error {
	c, err := s.o.Store.Container(id)
	if err != nil {
		return err
	}
	if c.State != state.ContainerRunning {
		return errdefs.FailedPrecondition("container %s is not running", id.Short())
	}
	return s.o.Monitor.ReopenLog(ctx, c.SandboxID, c.ID)
}

// locked takes the container's lock and returns its record. A container
// that is gone gives a nil record and no error (and nothing to unlock):
// stops and removes of removed containers succeed.
func (s *Containers) locked(ctx context.Context, id ids.ContainerID) (*state.Container, func(), error) {
	unlock, err := s.lockContainer(ctx, id)
	if err != nil {
		return nil, nil, err
	}
	c, err := s.o.Store.Container(id)
	if err != nil {
		unlock()
		if errdefs.IsNotFound(err) {
			return nil, nil, nil
		}
		return nil, nil, err
	}
	return c, unlock, nil
}

// lockedExisting is locked for calls on a container that must exist: a
// container that is gone is errdefs NotFound.
func (s *Containers) lockedExisting(ctx context.Context, id ids.ContainerID) (*state.Container, func(), error) {
	c, unlock, err := s.locked(ctx, id)
	if err == nil && c == nil {
		err = errdefs.NotFound("container %s not found", id.Short())
	}
	return c, unlock, err
}
