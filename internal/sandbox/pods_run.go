package sandbox

import (
	"context"
	"errors"
	"fmt"
	"net"
	"path/filepath"
	"slices"
	"strings"
	"time"

	runtimeapi "k8s.io/cri-api/pkg/apis/runtime/v1"

	"github.com/noded-dev/noded/internal/admit"
	"github.com/noded-dev/noded/internal/cleanup"
	"github.com/noded-dev/noded/internal/errdefs"
	"github.com/noded-dev/noded/internal/ids"
	"github.com/noded-dev/noded/internal/log"
	"github.com/noded-dev/noded/internal/netcni"
	"github.com/noded-dev/noded/internal/oci"
	"github.com/noded-dev/noded/internal/specgen"
	"github.com/noded-dev/noded/internal/state"
)

// Pods runs pod sandboxes: their files, network namespace, CNI
// attachment, monitor and pause container. It owns the sandbox records;
// the containers in a pod are Containers' (which Pods asks to stop and
// remove them with their pod).
type Pods struct {
	*base
	containers *Containers
	events     *Events
}

// sandboxName is the unique CRI name of a pod, as the kubelet builds it.
func sandboxName(m *runtimeapi.PodSandboxMetadata) string {
	return fmt.Sprintf("%s_%s_%s_%d", m.GetName(), m.GetNamespace(), m.GetUid(), m.GetAttempt())
}

// RunPodSandbox creates and starts a pod sandbox and returns its ID.
func (s *Pods) RunPodSandbox(ctx context.Context, cfg *runtimeapi.PodSandboxConfig, handler string) (_ ids.SandboxID, retErr error) {
	if err := validateSandboxConfig(cfg, handler); err != nil {
		return "", err
	}
	userns, err := specgen.PodUserNamespace(cfg)
	if err != nil {
		return "", err
	}
	id := ids.NewSandboxID()
	name := sandboxName(cfg.GetMetadata())
	lg := log.FromContext(ctx).WithFields(map[string]any{"pod": id.Short(), "name": name})
	ctx = log.WithContext(ctx, lg)

	var undo cleanup.Stack
	defer func() { undo.RunIf(ctx, &retErr, lg) }()

	if err := s.names.Reserve(name, string(id)); err != nil {
		return "", err
	}
	undo.Push("release pod name", func(context.Context) error { s.names.Release(string(id)); return nil })
	unlock, err := s.lockPod(ctx, id)
	if err != nil {
		return "", err
	}
	defer unlock()

	pauseImage, err := s.o.Images.PauseImage(ctx)
	if err != nil {
		return "", fmt.Errorf("pause image: %w", err)
	}
	if err := s.step(ctx, "pause-image"); err != nil {
		return "", err
	}

	dir := s.podDir(id)
	rec := &state.Sandbox{
		ID: id, Name: name, State: state.SandboxReady, Config: cfg, RuntimeHandler: handler,
		CgroupParent: cfg.GetLinux().GetCgroupParent(), Dir: dir,
	}
	// Before anything is made on the host: what recovery needs to remove
	// it all if noded is killed before the record is added.
	pending := *rec
	if !hostNetwork(cfg) {
		pending.NetNSPath = s.netnsPath(id)
	}
	if err := s.o.Store.BeginSandbox(&pending); err != nil {
		return "", err
	}
	undo.Push("drop pending record", func(context.Context) error { return s.o.Store.EndSandbox(id) })
	if err := s.step(ctx, "pending"); err != nil {
		return "", err
	}

	undo.Push("remove pod files", func(context.Context) error { return removePodFiles(s.o.Host, dir) })
	files, err := podFiles(s.o.Host, dir, cfg, realHostFiles)
	if err != nil {
		return "", fmt.Errorf("pod files: %w", err)
	}
	if err := s.step(ctx, "pod-files"); err != nil {
		return "", err
	}

	// The network and the pause container are the CPU-heavy part: they
	// wait for a creation slot (the slot is given back before the
	// rollback, which runs in an earlier defer).
	leave, err := s.enter(ctx, admit.Sandbox)
	if err != nil {
		return "", err
	}
	defer leave()

	// CNI ADD (plugin processes, IPAM) runs while the pause container is
	// made: the pause process only needs the pinned namespace, not the
	// addresses. The attach is waited for on every path, before any
	// rollback step can run (defers run last-in first-out). A pod with a
	// user namespace is attached after its pause process made the
	// namespace (userns.go).
	var attached <-chan attachResult
	if userns == nil {
		if attached, err = s.setupNetwork(ctx, rec, 0, &undo); err != nil {
			return "", err
		}
	}
	var ips []string
	waited := false
	waitNetwork := func() error {
		waited = true
		if attached == nil {
			return nil
		}
		res := <-attached
		ips = res.ips
		return res.err
	}
	defer func() {
		if !waited {
			_ = waitNetwork()
		}
	}()

	pid, err := s.startPause(ctx, rec, pauseImage, files, userns, &undo)
	if err != nil {
		return "", err
	}
	if userns != nil {
		if attached, err = s.setupNetwork(ctx, rec, pid, &undo); err != nil {
			return "", err
		}
	}
	if err := waitNetwork(); err != nil {
		return "", err
	}
	if err := s.step(ctx, "cni"); err != nil {
		return "", err
	}
	rec.IPs, rec.NetworkReady = ips, rec.NetNSPath != ""
	rec.PausePID = pid
	rec.CreatedAt = time.Now().UnixNano()
	// The NRI plugins see the pod before anyone else can: it is not
	// recorded (listed) until they agree. Plugins before a refusing one
	// have seen it, so a rollback tells them it is gone.
	unblockSync := s.o.NRI.BlockSync()
	defer unblockSync()
	undo.Push("NRI: pod stopped and removed", func(ctx context.Context) error {
		s.o.NRI.RemovePodSandbox(ctx, rec)
		return nil
	})
	if err := s.o.NRI.RunPodSandbox(ctx, rec); err != nil {
		return "", err
	}
	if err := s.step(ctx, "nri-run-pod"); err != nil {
		return "", err
	}
	if err := s.o.Store.AddSandbox(rec); err != nil {
		return "", err
	}
	undo.Push("forget sandbox record", func(context.Context) error { return s.o.Store.DeleteSandbox(id) })
	if err := s.step(ctx, "record"); err != nil {
		return "", err
	}
	undo.Release()
	if err := s.o.Store.EndSandbox(id); err != nil {
		// The record is there: recovery drops the pending one.
		lg.WithError(err).Warn("dropping the pending record")
	}
	lg.WithField("ips", rec.IPs).Info("pod sandbox running")
	// The pause container is created and started in one step; the
	// kubelet's EventedPLEG expects both, as containerd sends them.
	s.events.emit(runtimeapi.ContainerEventType_CONTAINER_CREATED_EVENT, id, string(id))
	s.events.emit(runtimeapi.ContainerEventType_CONTAINER_STARTED_EVENT, id, string(id))
	s.events.watchPause(id)
	return id, nil
}

// attachResult is the outcome of a pod's CNI ADD.
type attachResult struct {
	ips []string
	err error
}

// setupNetwork pins a network namespace and starts attaching it through
// CNI in the background, unless the pod uses the host's network. The
// namespace is a new one, or with pausePID the pause process's. The
// returned channel yields the attach's outcome exactly once.
func (s *Pods) setupNetwork(ctx context.Context, rec *state.Sandbox, pausePID int, undo *cleanup.Stack) (<-chan attachResult, error) {
	done := make(chan attachResult, 1)
	if hostNetwork(rec.Config) {
		done <- attachResult{}
		return done, nil
	}
	var path string
	var err error
	if dir := filepath.Dir(s.netnsPath(rec.ID)); pausePID != 0 {
		path, err = s.o.Host.PinNetNS(dir, string(rec.ID), pausePID)
	} else {
		path, err = s.o.Host.NewNetNS(dir, string(rec.ID))
	}
	if err != nil {
		return nil, fmt.Errorf("network namespace: %w", err)
	}
	undo.Push("remove network namespace", func(context.Context) error { return s.o.Host.RemoveNetNS(path) })
	rec.NetNSPath = path
	if err := s.step(ctx, "netns"); err != nil {
		return nil, err
	}

	pn := podNetwork(rec)
	// Teardown is idempotent and works whether or not ADD got anywhere.
	undo.Push("CNI teardown", func(ctx context.Context) error { return s.o.Network.Teardown(ctx, pn) })
	go func() {
		res, err := s.o.Network.Setup(ctx, pn)
		if err != nil {
			done <- attachResult{err: fmt.Errorf("setting up pod network: %w", err)}
			return
		}
		var ips []string
		for _, ip := range res.IPs {
			ips = append(ips, ip.String())
		}
		done <- attachResult{ips: ips}
	}()
	return done, nil
}

// startPause creates the pause container's rootfs and bundle and runs it
// under the pod's new monitor. It returns the pause process ID.
func (s *Pods) startPause(ctx context.Context, rec *state.Sandbox, img Image, files specgen.SandboxFiles, userns *specgen.IDMappings, undo *cleanup.Stack) (int, error) {
	pod, ctr := rec.ID, oci.ContainerID(rec.ID)
	// The pause container's init is moved into its cgroups once the
	// monitor and the bundle are ready: the kernel's grace period for
	// that move elapses meanwhile (internal/cgwarm).
	s.o.Moves.Warm()
	// The monitor starts (a fork, exec and socket) while the root
	// filesystem and bundle are made. Its undo step is pushed first so it
	// runs last, after the pause container and root filesystem are gone.
	undo.Push("stop pod monitor", func(ctx context.Context) error { return s.o.Monitor.StopMonitor(ctx, pod) })
	monitorStarted := make(chan error, 1)
	go func() { monitorStarted <- s.o.Monitor.StartMonitor(ctx, pod) }()
	monitorErr := func() error {
		if err := <-monitorStarted; err != nil {
			return fmt.Errorf("starting the pod monitor: %w", err)
		}
		return s.step(ctx, "monitor")
	}

	bundle, err := s.pauseBundle(ctx, rec, img, files, userns, undo)
	if err := errors.Join(err, monitorErr()); err != nil {
		return 0, err
	}

	undo.Push("delete pause container", func(ctx context.Context) error { return s.forceDelete(ctx, pod, ctr) })
	s.o.Moves.Warm() // within the grace period of the first one: cheap, and it keeps the fast path ready
	// Create and start in one helper run: the pause process has nothing to
	// wait for between the two.
	st, err := s.o.Monitor.Run(ctx, oci.CreateRequest{Pod: pod, ID: ctr, Bundle: bundle, LogPath: filepath.Join(rec.Dir, "pause.log")})
	if err != nil {
		return 0, fmt.Errorf("running the pause container: %w", err)
	}
	if st.Status != oci.StatusRunning || st.Pid == 0 {
		return 0, fmt.Errorf("pause container is %s (exit code %d)", st.Status, st.ExitCode)
	}
	return st.Pid, s.step(ctx, "pause")
}

// pauseBundle makes the pause container's root filesystem and writes its
// OCI bundle, returning the bundle directory.
func (s *Pods) pauseBundle(ctx context.Context, rec *state.Sandbox, img Image, files specgen.SandboxFiles, userns *specgen.IDMappings, undo *cleanup.Stack) (string, error) {
	// The shared root filesystem is not ID-mapped: a pod with a user
	// namespace gets one of its own.
	rootPath := img.Rootfs
	if rootPath == "" || userns != nil {
		var err error
		if rootPath, err = s.createRootfs(ids.ContainerID(rec.ID), img.ID, rec.Name, userns, undo); err != nil {
			return "", err
		}
	} else {
		rec.PauseRootfs = rootPath
	}
	gen := &specgen.Sandbox{
		ID: string(rec.ID), Config: rec.Config, Image: img.Config, ImageName: img.Name,
		PauseConfinesItself: img.SelfConfined, RootfsPath: rootPath, NetNS: rec.NetNSPath, Files: files, CgroupParent: rec.CgroupParent, Node: s.o.Node,
	}
	res, err := gen.Generate()
	if err != nil {
		return "", err
	}
	bundle := s.bundleDir(rec.ID, ids.ContainerID(rec.ID))
	if err := writeBundle(bundle, res.Spec); err != nil {
		return "", err
	}
	return bundle, s.step(ctx, "pause-bundle")
}

func hostNetwork(cfg *runtimeapi.PodSandboxConfig) bool {
	return cfg.GetLinux().GetSecurityContext().GetNamespaceOptions().GetNetwork() == runtimeapi.NamespaceMode_NODE
}

func podNetwork(rec *state.Sandbox) netcni.PodNetwork {
	m := rec.Config.GetMetadata()
	pn := netcni.PodNetwork{ID: string(rec.ID), Name: m.GetName(), Namespace: m.GetNamespace(), UID: m.GetUid(), NetNSPath: rec.NetNSPath}
	for _, p := range rec.Config.GetPortMappings() {
		pn.PortMappings = append(pn.PortMappings, netcni.PortMapping{
			HostPort: p.GetHostPort(), ContainerPort: p.GetContainerPort(),
			Protocol: strings.ToLower(p.GetProtocol().String()), HostIP: p.GetHostIp(),
		})
	}
	if dns := rec.Config.GetDnsConfig(); dns != nil {
		pn.DNS = &netcni.DNS{Servers: dns.GetServers(), Searches: dns.GetSearches(), Options: dns.GetOptions()}
	}
	return pn
}

// Handlers are the RuntimeClass handlers noded runs: the default and
// "runc", the name kubelets and critest use for it.
var Handlers = []string{"", "runc"}

func validateSandboxConfig(cfg *runtimeapi.PodSandboxConfig, handler string) error {
	if cfg == nil {
		return errdefs.InvalidArgument("pod sandbox config is required")
	}
	m := cfg.GetMetadata()
	if m == nil || m.GetName() == "" || m.GetNamespace() == "" || m.GetUid() == "" {
		return errdefs.InvalidArgument("pod sandbox metadata needs name, namespace and uid")
	}
	for _, n := range []string{m.GetNamespace(), m.GetUid()} {
		if err := checkMetadataSize(n, nil, nil); err != nil {
			return err
		}
	}
	if err := checkMetadataSize(m.GetName(), cfg.GetLabels(), cfg.GetAnnotations()); err != nil {
		return err
	}
	if !slices.Contains(Handlers, handler) {
		return errdefs.InvalidArgument("runtime handler %q is not configured", handler)
	}
	for _, p := range cfg.GetPortMappings() {
		if p.GetContainerPort() <= 0 || p.GetContainerPort() > 65535 || p.GetHostPort() < 0 || p.GetHostPort() > 65535 {
			return errdefs.InvalidArgument("invalid port mapping %d:%d", p.GetHostPort(), p.GetContainerPort())
		}
		if ip := p.GetHostIp(); ip != "" && net.ParseIP(ip) == nil {
			return errdefs.InvalidArgument("invalid host IP %q in port mapping", ip)
		}
	}
	// Before the pod's network is made, not when its pause spec is.
	return specgen.CheckSandboxConfig(cfg)
}
