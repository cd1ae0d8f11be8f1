package sandbox

import (
	"context"
	"encoding/json"
	"errors"
	"fmt"
	"net"
	"os"
	"path/filepath"
	"slices"
	"sort"
	"strings"
	"sync"
	"syscall"
	"testing"
	"time"

	ocispec "github.com/opencontainers/image-spec/specs-go/v1"
	"github.com/sirupsen/logrus"
	logtest "github.com/sirupsen/logrus/hooks/test"
	runtimeapi "k8s.io/cri-api/pkg/apis/runtime/v1"

	"github.com/noded-dev/noded/internal/admit"
	"github.com/noded-dev/noded/internal/errdefs"
	"github.com/noded-dev/noded/internal/ids"
	"github.com/noded-dev/noded/internal/log"
	"github.com/noded-dev/noded/internal/netcni"
	"github.com/noded-dev/noded/internal/oci"
	"github.com/noded-dev/noded/internal/specgen"
	"github.com/noded-dev/noded/internal/state"
	"github.com/noded-dev/noded/internal/storage"
)

// fakes records what is held so tests can check that rollback released it.
type fakes struct {
	mu       sync.Mutex
	rootfs   map[storage.ContainerID]bool
	mounted  map[storage.ContainerID]bool
	networks map[string]bool
	monitors map[oci.PodID]bool
	ctrs     map[oci.ContainerID]*oci.State
	exitCh   map[oci.ContainerID]chan struct{}
	dir      string
	host     *fakeHost
	execs    []string // "container cmd…" of each streaming Exec
	attaches []string // containers of each Attach
	// pauseRootfs is the pause image's shared root filesystem ("": none).
	pauseRootfs string
	// bundles are the pause bundles Run was given, by pod.
	bundles map[oci.PodID]string
	// warms counts Moves.Warm calls; unwarmed lists the monitor calls
	// that move a process (Run, Create, ExecSync, Exec) with no warm-up
	// since the call before.
	warms, warmsSeen int
	unwarmed         []string
}

func newFakes(dir string) *fakes {
	return &fakes{rootfs: map[storage.ContainerID]bool{}, mounted: map[storage.ContainerID]bool{}, networks: map[string]bool{}, monitors: map[oci.PodID]bool{},
		ctrs: map[oci.ContainerID]*oci.State{}, exitCh: map[oci.ContainerID]chan struct{}{}, dir: dir, bundles: map[oci.PodID]string{}}
}

// images
func (f *fakes) Resolve(_ context.Context, ref string) (Image, error) {
	if ref == "missing" {
		return Image{}, errdefs.NotFound("image %q not found", ref)
	}
	return Image{ID: "aaaa", Name: ref}, nil
}
func (f *fakes) PauseImage(context.Context) (Image, error) {
	return Image{ID: "pause", Name: "pause", Config: ocispec.ImageConfig{Entrypoint: []string{"/pause"}}, Rootfs: f.pauseRootfs}, nil
}

// rootfs
func (f *fakes) CreateContainer(id storage.ContainerID, _ storage.ImageID, _ storage.CreateContainerOptions) (*storage.Container, error) {
	f.mu.Lock()
	defer f.mu.Unlock()
	f.rootfs[id] = true
	return &storage.Container{ID: id}, nil
}
func (f *fakes) Mount(id storage.ContainerID, _ string) (string, error) {
	f.mu.Lock()
	f.mounted[id] = true
	f.mu.Unlock()
	p := filepath.Join(f.dir, "rootfs", string(id))
	return p, os.MkdirAll(p, 0o755)
}
func (f *fakes) Unmount(id storage.ContainerID, _ bool) error {
	f.mu.Lock()
	defer f.mu.Unlock()
	delete(f.mounted, id)
	return nil
}
func (f *fakes) DeleteContainer(id storage.ContainerID) error {
	f.mu.Lock()
	defer f.mu.Unlock()
	delete(f.rootfs, id)
	return nil
}

// network: Setup is slow, as plugin processes are, so that the pause
// container is made while it runs.
func (f *fakes) Setup(_ context.Context, pn netcni.PodNetwork) (*netcni.Result, error) {
	time.Sleep(20 * time.Millisecond)
	f.mu.Lock()
	defer f.mu.Unlock()
	if _, err := os.Stat(pn.NetNSPath); err != nil {
		return nil, fmt.Errorf("netns: %w", err)
	}
	f.networks[pn.ID] = true
	return &netcni.Result{IPs: []net.IP{net.ParseIP("10.1.2.3")}}, nil
}
func (f *fakes) Teardown(_ context.Context, pn netcni.PodNetwork) error {
	f.mu.Lock()
	defer f.mu.Unlock()
	delete(f.networks, pn.ID)
	return nil
}

// monitor
func (f *fakes) StartMonitor(_ context.Context, p oci.PodID) error {
	f.mu.Lock()
	defer f.mu.Unlock()
	f.monitors[p] = true
	return nil
}

// StopMonitor: the monitor's shutdown kills and deletes its containers.
func (f *fakes) StopMonitor(_ context.Context, p oci.PodID) error {
	f.mu.Lock()
	defer f.mu.Unlock()
	delete(f.monitors, p)
	for id, st := range f.ctrs {
		if st.Pod == p {
			delete(f.ctrs, id)
		}
	}
	return nil
}

// Warm is the cgroup move warm-up (Options.Moves).
func (f *fakes) Warm() {
	f.mu.Lock()
	f.warms++
	f.mu.Unlock()
}

// moved records a monitor call that moves a process; the caller holds mu.
func (f *fakes) moved(call string) {
	if f.warms == f.warmsSeen {
		f.unwarmed = append(f.unwarmed, call)
	}
	f.warmsSeen = f.warms
}

func (f *fakes) Create(_ context.Context, c oci.CreateRequest) (oci.State, error) {
	f.mu.Lock()
	defer f.mu.Unlock()
	f.moved("create " + string(c.ID))
	st := &oci.State{ID: c.ID, Pod: c.Pod, Status: oci.StatusCreated}
	f.ctrs[c.ID] = st
	f.exitCh[c.ID] = make(chan struct{})
	return *st, nil
}
func (f *fakes) Run(ctx context.Context, c oci.CreateRequest) (oci.State, error) {
	f.mu.Lock()
	f.bundles[c.Pod] = c.Bundle
	f.mu.Unlock()
	if _, err := f.Create(ctx, c); err != nil {
		return oci.State{}, err
	}
	if err := f.Start(ctx, c.Pod, c.ID); err != nil {
		return oci.State{}, err
	}
	return f.State(ctx, c.Pod, c.ID)
}
func (f *fakes) Start(_ context.Context, _ oci.PodID, id oci.ContainerID) error {
	f.mu.Lock()
	defer f.mu.Unlock()
	st, ok := f.ctrs[id]
	if !ok {
		return errdefs.NotFound("no container")
	}
	st.Status, st.Pid, st.StartedAt = oci.StatusRunning, 4242, time.Now()
	return nil
}
func (f *fakes) Kill(_ context.Context, _ oci.PodID, id oci.ContainerID, sig syscall.Signal) error {
	f.mu.Lock()
	defer f.mu.Unlock()
	st, ok := f.ctrs[id]
	if !ok {
		return errdefs.NotFound("no container")
	}
	if st.Status != oci.StatusRunning {
		return errdefs.FailedPrecondition("not running")
	}
	st.Status, st.ExitCode, st.FinishedAt, st.Pid = oci.StatusExited, 128+int32(sig), time.Now(), 0
	close(f.exitCh[id])
	return nil
}
func (f *fakes) State(_ context.Context, _ oci.PodID, id oci.ContainerID) (oci.State, error) {
	f.mu.Lock()
	defer f.mu.Unlock()
	st, ok := f.ctrs[id]
	if !ok {
		return oci.State{}, errdefs.NotFound("no container")
	}
	return *st, nil
}
func (f *fakes) Wait(ctx context.Context, p oci.PodID, id oci.ContainerID) (oci.State, error) {
	f.mu.Lock()
	ch, ok := f.exitCh[id]
	f.mu.Unlock()
	if !ok {
		return oci.State{}, errdefs.NotFound("no container")
	}
	select {
	case <-ch:
		return f.State(ctx, p, id)
	case <-ctx.Done():
		return oci.State{}, ctx.Err()
	}
}
func (f *fakes) ExecSync(_ context.Context, _ oci.PodID, id oci.ContainerID, _ []string, _ time.Duration) ([]byte, []byte, int32, error) {
	f.mu.Lock()
	f.moved("exec-sync " + string(id))
	f.mu.Unlock()
	return []byte("out"), nil, 0, nil
}
func (f *fakes) Exec(_ context.Context, _ oci.PodID, id oci.ContainerID, cmd []string, stdio oci.Stdio) (int32, error) {
	f.mu.Lock()
	f.moved("exec " + string(id))
	f.execs = append(f.execs, string(id)+" "+strings.Join(cmd, " "))
	f.mu.Unlock()
	if stdio.Out != nil {
		_, _ = stdio.Out.Write([]byte("out"))
	}
	return 3, nil
}
func (f *fakes) Attach(_ context.Context, _ oci.PodID, id oci.ContainerID, _ oci.Stdio) error {
	f.mu.Lock()
	defer f.mu.Unlock()
	f.attaches = append(f.attaches, string(id))
	return nil
}
func (f *fakes) ReopenLog(context.Context, oci.PodID, oci.ContainerID) error { return nil }
func (f *fakes) Delete(_ context.Context, _ oci.PodID, id oci.ContainerID) error {
	f.mu.Lock()
	defer f.mu.Unlock()
	delete(f.ctrs, id)
	return nil
}

// held lists every resource still held, for leak checks.
func (f *fakes) held() []string {
	f.mu.Lock()
	defer f.mu.Unlock()
	var out []string
	for id := range f.rootfs {
		out = append(out, "rootfs "+string(id))
	}
	for id := range f.mounted {
		out = append(out, "mounted "+string(id))
	}
	for id := range f.networks {
		out = append(out, "network "+id)
	}
	for id := range f.monitors {
		out = append(out, "monitor "+string(id))
	}
	for id := range f.ctrs {
		out = append(out, "container "+string(id))
	}
	if f.host != nil {
		f.host.mu.Lock()
		for p := range f.host.mounts {
			out = append(out, "mount "+p)
		}
		f.host.mu.Unlock()
	}
	sort.Strings(out)
	return out
}

// fakeHost stands in for the kernel: the pod's /dev/shm is a directory
// and a network namespace an empty file, so these tests need no root.
type fakeHost struct {
	mu     sync.Mutex
	mounts map[string]bool
}

func (h *fakeHost) MountShm(path string, _ int64) error {
	h.mu.Lock()
	defer h.mu.Unlock()
	h.mounts[path] = true
	return nil
}

func (h *fakeHost) UnmountShm(path string) error {
	h.mu.Lock()
	defer h.mu.Unlock()
	delete(h.mounts, path)
	return nil
}

func (h *fakeHost) NewNetNS(dir, name string) (string, error) {
	if err := os.MkdirAll(dir, 0o755); err != nil {
		return "", err
	}
	p := filepath.Join(dir, name)
	return p, os.WriteFile(p, nil, 0o644)
}

func (h *fakeHost) RemoveNetNS(path string) error {
	if err := os.Remove(path); err != nil && !os.IsNotExist(err) {
		return err
	}
	return nil
}

// newTestService builds the services on fakes; no root needed (the real
// mounts and namespaces are covered by the integration tests).
func newTestService(t *testing.T, failAfter failHook) (*Services, *fakes) {
	t.Helper()
	dir := t.TempDir()
	st, _, err := state.Open(filepath.Join(dir, "state"))
	if err != nil {
		t.Fatal(err)
	}
	f := newFakes(dir)
	f.host = &fakeHost{mounts: map[string]bool{}}
	node := specgen.Node{HostCapabilities: specgen.DefaultCapabilities(), CgroupManager: specgen.CgroupfsManager, Hostname: "node"}
	s := New(Options{Store: st, Images: f, Rootfs: f, Network: f, Monitor: f, Host: f.host, Node: node, Moves: f,
		PodsDir: filepath.Join(dir, "pods"), NetNSDir: filepath.Join(dir, "netns"), FailAfter: failAfter})
	t.Cleanup(func() {
		for _, p := range s.Pods.ListPodSandbox(nil) {
			if err := s.Pods.RemovePodSandbox(context.Background(), ids.SandboxID(p.GetId())); err != nil {
				t.Errorf("cleanup: %v", err)
			}
		}
		s.Close()
	})
	return s, f
}

// runPodWithContainer runs pod name with a created container "c".
func runPodWithContainer(t *testing.T, s *Services, name string) (ids.SandboxID, ids.ContainerID) {
	t.Helper()
	ctx := context.Background()
	podID, err := s.Pods.RunPodSandbox(ctx, podConfig(name), "")
	if err != nil {
		t.Fatal(err)
	}
	ctrID, err := s.Containers.CreateContainer(ctx, podID, containerConfig("c"))
	if err != nil {
		t.Fatal(err)
	}
	return podID, ctrID
}

func podConfig(name string) *runtimeapi.PodSandboxConfig {
	return &runtimeapi.PodSandboxConfig{
		Metadata: &runtimeapi.PodSandboxMetadata{Name: name, Namespace: "ns", Uid: "uid-" + name},
		Labels:   map[string]string{"app": name},
		Linux: &runtimeapi.LinuxPodSandboxConfig{SecurityContext: &runtimeapi.LinuxSandboxSecurityContext{
			NamespaceOptions: &runtimeapi.NamespaceOption{Network: runtimeapi.NamespaceMode_NODE},
		}},
	}
}

func containerConfig(name string) *runtimeapi.ContainerConfig {
	return &runtimeapi.ContainerConfig{
		Metadata: &runtimeapi.ContainerMetadata{Name: name},
		Image:    &runtimeapi.ImageSpec{Image: "busybox"},
		Command:  []string{"sleep", "1000"},
	}
}

func TestPodAndContainerLifecycle(t *testing.T) {
	s, f := newTestService(t, nil)
	ctx := context.Background()
	podID, err := s.Pods.RunPodSandbox(ctx, podConfig("web"), "")
	if err != nil {
		t.Fatal(err)
	}
	if _, err := s.Pods.RunPodSandbox(ctx, podConfig("web"), ""); !errdefs.IsAlreadyExists(err) || !contains(err.Error(), string(podID)) {
		t.Fatalf("same name again: %v", err)
	}
	// crictl users type prefixes: the edge resolves them once.
	byPrefix, err := s.IDs.ResolveSandbox(string(podID)[:8])
	if err != nil || byPrefix != podID {
		t.Fatalf("ResolveSandbox(prefix) = %q, %v", byPrefix, err)
	}
	ctrID, err := s.Containers.CreateContainer(ctx, byPrefix, containerConfig("c"))
	if err != nil {
		t.Fatal(err)
	}
	if _, err := s.Containers.CreateContainer(ctx, podID, containerConfig("c")); !errdefs.IsAlreadyExists(err) {
		t.Fatalf("same container name again: %v", err)
	}
	if err := s.Containers.StartContainer(ctx, ctrID); err != nil {
		t.Fatal(err)
	}
	if err := s.Containers.StartContainer(ctx, ctrID); !errors.Is(err, errdefs.ErrFailedPrecondition) {
		t.Fatalf("second start: %v", err)
	}
	st, _, err := s.Containers.ContainerStatus(ctrID, false)
	if err != nil || st.GetState() != runtimeapi.ContainerState_CONTAINER_RUNNING || st.GetStartedAt() == 0 {
		t.Fatalf("status after start: %v %v", st, err)
	}
	if got := s.Containers.ListContainers(&runtimeapi.ContainerFilter{State: &runtimeapi.ContainerStateValue{State: runtimeapi.ContainerState_CONTAINER_RUNNING}}); len(got) != 1 {
		t.Fatalf("running containers: %d", len(got))
	}
	if err := s.Containers.StopContainer(ctx, ctrID, time.Second); err != nil {
		t.Fatal(err)
	}
	st, _, _ = s.Containers.ContainerStatus(ctrID, false)
	if st.GetState() != runtimeapi.ContainerState_CONTAINER_EXITED || st.GetExitCode() != 128+int32(syscall.SIGTERM) || st.GetReason() != "Error" {
		t.Fatalf("status after stop: %v", st)
	}
	if err := s.Containers.StopContainer(ctx, ctrID, time.Second); err != nil {
		t.Fatalf("second stop: %v", err)
	}
	if err := s.Pods.StopPodSandbox(ctx, podID); err != nil {
		t.Fatal(err)
	}
	if ps, _, _ := s.Pods.PodSandboxStatus(podID, false); ps.GetState() != runtimeapi.PodSandboxState_SANDBOX_NOTREADY {
		t.Fatalf("pod after stop: %v", ps)
	}
	if _, err := s.Containers.CreateContainer(ctx, podID, containerConfig("d")); !errors.Is(err, errdefs.ErrFailedPrecondition) {
		t.Fatalf("create in a stopped pod: %v", err)
	}
	for range 2 {
		if err := s.Pods.RemovePodSandbox(ctx, podID); err != nil {
			t.Fatal(err)
		}
	}
	if held := f.held(); len(held) != 0 {
		t.Fatalf("resources left after remove: %v", held)
	}
	if _, _, err := s.Containers.ContainerStatus(ctrID, false); !errdefs.IsNotFound(err) {
		t.Fatalf("container after pod removal: %v", err)
	}
	// The names are free again.
	if _, err := s.Pods.RunPodSandbox(ctx, podConfig("web"), ""); err != nil {
		t.Fatalf("reusing the name: %v", err)
	}
}

// Every monitor call that moves a process into a container's cgroups
// (the pause container's run, a container's create, both kinds of exec)
// follows a warm-up of the move (internal/cgwarm) made for that request.
func TestMovesAreWarmedUpAhead(t *testing.T) {
	s, f := newTestService(t, nil)
	ctx := context.Background()
	podID, ctrID := runPodWithContainer(t, s, "web")
	if err := s.Containers.StartContainer(ctx, ctrID); err != nil {
		t.Fatal(err)
	}
	if _, _, _, err := s.Exec.ExecSync(ctx, ctrID, []string{"true"}, 0); err != nil {
		t.Fatal(err)
	}
	if _, err := s.Exec.Exec(ctx, ctrID, []string{"true"}, Stdio{}); err != nil {
		t.Fatal(err)
	}
	// A request refused before anything is made warms nothing.
	f.mu.Lock()
	before := f.warms
	f.mu.Unlock()
	if _, err := s.Containers.CreateContainer(ctx, podID, &runtimeapi.ContainerConfig{}); !errdefs.IsInvalidArgument(err) {
		t.Fatalf("create without metadata: %v", err)
	}
	f.mu.Lock()
	defer f.mu.Unlock()
	if len(f.unwarmed) != 0 {
		t.Errorf("moves without a warm-up ahead: %v", f.unwarmed)
	}
	if f.warmsSeen == 0 {
		t.Error("no move was seen")
	}
	if f.warms != before {
		t.Errorf("an invalid create warmed up %d moves", f.warms-before)
	}
}

// A pause image with a shared root filesystem (the built-in one) gives
// the pod sandbox no storage container: its bundle's root is the shared
// directory, read-only, and removing the pod leaves that directory alone.
func TestSharedPauseRootfs(t *testing.T) {
	s, f := newTestService(t, nil)
	f.pauseRootfs = filepath.Join(f.dir, "shared-pause")
	if err := os.MkdirAll(f.pauseRootfs, 0o755); err != nil {
		t.Fatal(err)
	}
	ctx := context.Background()
	podID, err := s.Pods.RunPodSandbox(ctx, podConfig("shared"), "")
	if err != nil {
		t.Fatal(err)
	}
	f.mu.Lock()
	_, own := f.rootfs[storage.ContainerID(podID)]
	bundle := f.bundles[podID]
	f.mu.Unlock()
	if own {
		t.Error("the pod sandbox got a storage container of its own")
	}
	b, err := os.ReadFile(filepath.Join(bundle, "config.json"))
	if err != nil {
		t.Fatal(err)
	}
	var spec struct {
		Root struct {
			Path     string
			Readonly bool
		}
	}
	if err := json.Unmarshal(b, &spec); err != nil {
		t.Fatal(err)
	}
	if spec.Root.Path != f.pauseRootfs || !spec.Root.Readonly {
		t.Errorf("pause root %+v; want %s, read-only", spec.Root, f.pauseRootfs)
	}
	if rec, err := s.Pods.o.Store.Sandbox(podID); err != nil || rec.PauseRootfs != f.pauseRootfs {
		t.Errorf("record's PauseRootfs = %q, %v", rec.PauseRootfs, err)
	}
	if _, err := s.Containers.CreateContainer(ctx, podID, containerConfig("c")); err != nil {
		t.Fatal(err)
	}
	if err := s.Pods.RemovePodSandbox(ctx, podID); err != nil {
		t.Fatal(err)
	}
	if held := f.held(); len(held) != 0 {
		t.Errorf("resources left after remove: %v", held)
	}
	if _, err := os.Stat(f.pauseRootfs); err != nil {
		t.Errorf("the shared root filesystem after the removal: %v", err)
	}
}

func TestIdempotentOnUnknownIDs(t *testing.T) {
	s, _ := newTestService(t, nil)
	ctx := context.Background()
	// The edge answers NotFound for IDs it cannot resolve (and turns it
	// into success for stops and removes); the services themselves must
	// still cope with an ID whose object went away after resolution.
	if _, err := s.IDs.ResolveSandbox("0123456789abcdef"); !errdefs.IsNotFound(err) {
		t.Errorf("ResolveSandbox: %v", err)
	}
	if _, err := s.IDs.ResolveContainer("0123456789abcdef"); !errdefs.IsNotFound(err) {
		t.Errorf("ResolveContainer: %v", err)
	}
	const unknown = "0123456789abcdef"
	if err := s.Pods.StopPodSandbox(ctx, unknown); err != nil {
		t.Errorf("StopPodSandbox: %v", err)
	}
	if err := s.Pods.RemovePodSandbox(ctx, unknown); err != nil {
		t.Errorf("RemovePodSandbox: %v", err)
	}
	if err := s.Containers.RemoveContainer(ctx, unknown); err != nil {
		t.Errorf("RemoveContainer: %v", err)
	}
	if err := s.Containers.StopContainer(ctx, unknown, time.Second); err != nil {
		t.Errorf("StopContainer: %v", err)
	}
	if _, _, err := s.Pods.PodSandboxStatus(unknown, false); !errdefs.IsNotFound(err) {
		t.Errorf("PodSandboxStatus: %v", err)
	}
	if err := s.Containers.StartContainer(ctx, unknown); !errdefs.IsNotFound(err) {
		t.Errorf("StartContainer: %v", err)
	}
	if _, err := s.Containers.CreateContainer(ctx, unknown, containerConfig("c")); !errdefs.IsNotFound(err) {
		t.Errorf("CreateContainer in an unknown pod: %v", err)
	}
}

func TestInvalidRequests(t *testing.T) {
	s, _ := newTestService(t, nil)
	ctx := context.Background()
	tests := []struct {
		desc string
		run  func() error
	}{
		{"nil pod config", func() error { _, err := s.Pods.RunPodSandbox(ctx, nil, ""); return err }},
		{"pod without uid", func() error {
			_, err := s.Pods.RunPodSandbox(ctx, &runtimeapi.PodSandboxConfig{Metadata: &runtimeapi.PodSandboxMetadata{Name: "a", Namespace: "b"}}, "")
			return err
		}},
		{"unknown handler", func() error { _, err := s.Pods.RunPodSandbox(ctx, podConfig("h"), "kata"); return err }},
		{"bad port", func() error {
			c := podConfig("p")
			c.PortMappings = []*runtimeapi.PortMapping{{ContainerPort: 70000}}
			_, err := s.Pods.RunPodSandbox(ctx, c, "")
			return err
		}},
		{"container without image", func() error {
			_, err := s.Containers.CreateContainer(ctx, "x", &runtimeapi.ContainerConfig{Metadata: &runtimeapi.ContainerMetadata{Name: "c"}})
			return err
		}},
	}
	for _, tt := range tests {
		t.Run(tt.desc, func(t *testing.T) {
			if err := tt.run(); !errdefs.IsInvalidArgument(err) {
				t.Fatalf("err = %v, want InvalidArgument", err)
			}
		})
	}
}

// A failure after any step of a create leaves nothing behind and frees the
// name, so the kubelet's retry succeeds.
func TestRollbackAtEveryStep(t *testing.T) {
	podSteps := []string{"pause-image", "pod-files", "monitor", "pause", "record"}
	ctrSteps := []string{"container-rootfs", "container-create"}
	for _, step := range append(podSteps, ctrSteps...) {
		t.Run(step, func(t *testing.T) {
			armed := true
			s, f := newTestService(t, func(at string) error {
				if armed && at == step {
					return fmt.Errorf("injected failure after %s", at)
				}
				return nil
			})
			ctx := context.Background()
			podID, err := s.Pods.RunPodSandbox(ctx, podConfig("r"), "")
			isPodStep := contains(fmt.Sprint(podSteps), step)
			if isPodStep {
				if err == nil {
					t.Fatal("RunPodSandbox succeeded despite the failure")
				}
				if held := f.held(); len(held) != 0 {
					t.Fatalf("left behind: %v", held)
				}
				if n := len(s.Pods.ListPodSandbox(nil)); n != 0 {
					t.Fatalf("%d pods listed after a failed create", n)
				}
				if entries, _ := os.ReadDir(s.Pods.o.PodsDir); len(entries) != 0 {
					t.Fatalf("pod dirs left: %v", entries)
				}
				armed = false
				if _, err := s.Pods.RunPodSandbox(ctx, podConfig("r"), ""); err != nil {
					t.Fatalf("retry after rollback: %v", err)
				}
				return
			}
			if err != nil {
				t.Fatal(err)
			}
			before := f.held()
			if _, err := s.Containers.CreateContainer(ctx, podID, containerConfig("c")); err == nil {
				t.Fatal("CreateContainer succeeded despite the failure")
			}
			if held := f.held(); fmt.Sprint(held) != fmt.Sprint(before) {
				t.Fatalf("left behind: %v (before: %v)", held, before)
			}
			if n := len(s.Containers.ListContainers(nil)); n != 0 {
				t.Fatalf("%d containers listed after a failed create", n)
			}
			armed = false
			if _, err := s.Containers.CreateContainer(ctx, podID, containerConfig("c")); err != nil {
				t.Fatalf("retry after rollback: %v", err)
			}
		})
	}
}

// TestRetryAfterFailureAtEveryStep fails StartContainer, StopPodSandbox,
// RemoveContainer and RemovePodSandbox right after each of their steps:
// the call fails, and the kubelet's retry finishes the job, so that once
// the pod is removed nothing is held.
func TestRetryAfterFailureAtEveryStep(t *testing.T) {
	ctx := context.Background()
	ops := []struct {
		name  string
		steps []string
		call  func(s *Services, pod ids.SandboxID, ctr ids.ContainerID) error
	}{
		{"start", []string{"start-monitor", "start-record"}, func(s *Services, _ ids.SandboxID, ctr ids.ContainerID) error {
			return s.Containers.StartContainer(ctx, ctr)
		}},
		{"stop", []string{"stop-kill", "stop-record", "stop-containers", "stop-pause", "stop-network", "stop-netns", "stop-release", "stop-pod-record"},
			func(s *Services, pod ids.SandboxID, _ ids.ContainerID) error { return s.Pods.StopPodSandbox(ctx, pod) }},
		{"remove-container", []string{"remove-container-delete", "remove-container-rootfs", "remove-container-bundle", "remove-container-record"},
			func(s *Services, _ ids.SandboxID, ctr ids.ContainerID) error {
				return s.Containers.RemoveContainer(ctx, ctr)
			}},
		{"remove-pod", []string{"remove-containers", "remove-pause", "remove-monitor", "remove-pause-rootfs", "remove-files", "remove-pod-record"},
			func(s *Services, pod ids.SandboxID, _ ids.ContainerID) error {
				return s.Pods.RemovePodSandbox(ctx, pod)
			}},
	}
	for _, op := range ops {
		for _, step := range op.steps {
			t.Run(step, func(t *testing.T) {
				armed := false
				s, f := newTestService(t, func(at string) error {
					if armed && at == step {
						armed = false // once: the retry goes through
						return fmt.Errorf("injected failure after %s", at)
					}
					return nil
				})
				cfg := podConfig("r")
				cfg.Linux.SecurityContext.NamespaceOptions.Network = runtimeapi.NamespaceMode_POD // the network steps too
				pod, err := s.Pods.RunPodSandbox(ctx, cfg, "")
				if err != nil {
					t.Fatal(err)
				}
				ctr, err := s.Containers.CreateContainer(ctx, pod, containerConfig("c"))
				if err != nil {
					t.Fatal(err)
				}
				if op.name != "start" {
					if err := s.Containers.StartContainer(ctx, ctr); err != nil {
						t.Fatal(err)
					}
				}
				armed = true
				if err := op.call(s, pod, ctr); err == nil {
					t.Fatalf("%s succeeded despite the failure", op.name)
				}
				if armed {
					t.Fatalf("%s never reached step %s", op.name, step)
				}
				err = op.call(s, pod, ctr)
				if op.name == "start" && errors.Is(err, errdefs.ErrFailedPrecondition) {
					err = nil // it had started: the kubelet sees it running
				}
				if err != nil {
					t.Fatalf("retry: %v", err)
				}
				if err := s.Pods.RemovePodSandbox(ctx, pod); err != nil {
					t.Fatal(err)
				}
				if held := f.held(); len(held) != 0 {
					t.Fatalf("left behind: %v", held)
				}
			})
		}
	}
}

// exitedWhileAway runs pod name with a started container, then closes the
// services ("noded" goes away) and has the container exit with code 3
// meanwhile.
func exitedWhileAway(t *testing.T, name string) (*Services, ids.ContainerID) {
	t.Helper()
	s, f := newTestService(t, nil)
	ctx := context.Background()
	podID, _ := s.Pods.RunPodSandbox(ctx, podConfig(name), "")
	ctrID, _ := s.Containers.CreateContainer(ctx, podID, containerConfig("c"))
	if err := s.Containers.StartContainer(ctx, ctrID); err != nil {
		t.Fatal(err)
	}
	s.Close()
	f.mu.Lock()
	st := f.ctrs[ctrID]
	st.Status, st.ExitCode, st.FinishedAt = oci.StatusExited, 3, time.Now()
	f.mu.Unlock()
	return s, ctrID
}

func TestRecoverRecordsExitsAndNames(t *testing.T) {
	s, ctrID := exitedWhileAway(t, "rec")
	ctx := context.Background()
	s2 := New(s.Pods.o)
	defer s2.Close()
	s2.Recover(ctx)
	cs, _, err := s2.Containers.ContainerStatus(ctrID, false)
	if err != nil || cs.GetState() != runtimeapi.ContainerState_CONTAINER_EXITED || cs.GetExitCode() != 3 {
		t.Fatalf("after recover: %v %v", cs, err)
	}
	if _, err := s2.Pods.RunPodSandbox(ctx, podConfig("rec"), ""); !errdefs.IsAlreadyExists(err) {
		t.Fatalf("name not reserved after recover: %v", err)
	}
}

func contains(s, sub string) bool {
	return len(sub) == 0 || (len(s) >= len(sub) && (s[:len(sub)] == sub || contains(s[1:], sub)))
}

// With a pod network, CNI ADD runs concurrently with the pause container;
// a failure on either side, or after both, still leaves nothing behind.
func TestPodNetworkAttachAndRollback(t *testing.T) {
	withNet := func(name string) *runtimeapi.PodSandboxConfig {
		c := podConfig(name)
		c.Linux.SecurityContext.NamespaceOptions.Network = runtimeapi.NamespaceMode_POD
		return c
	}
	for _, step := range []string{"", "netns", "monitor", "pause", "cni", "record"} {
		t.Run("fail after "+step, func(t *testing.T) {
			s, f := newTestService(t, func(at string) error {
				if at == step {
					return fmt.Errorf("injected failure after %s", at)
				}
				return nil
			})
			id, err := s.Pods.RunPodSandbox(context.Background(), withNet("n"), "")
			if step == "" {
				if err != nil {
					t.Fatal(err)
				}
				st, _, _ := s.Pods.PodSandboxStatus(id, false)
				if st.GetNetwork().GetIp() != "10.1.2.3" {
					t.Fatalf("pod IP = %q", st.GetNetwork().GetIp())
				}
				if err := s.Pods.RemovePodSandbox(context.Background(), id); err != nil {
					t.Fatal(err)
				}
			} else if err == nil {
				t.Fatal("RunPodSandbox succeeded despite the failure")
			}
			if held := f.held(); len(held) != 0 {
				t.Fatalf("left behind: %v", held)
			}
			if entries, _ := os.ReadDir(s.Pods.o.NetNSDir); len(entries) != 0 {
				t.Fatalf("network namespaces left: %v", entries)
			}
		})
	}
}

// recordingGate is an admit.Gate that remembers who entered.
type recordingGate struct {
	*admit.Gate
	mu      sync.Mutex
	classes []admit.Class
}

func (g *recordingGate) Enter(ctx context.Context, c admit.Class) (func(), error) {
	g.mu.Lock()
	g.classes = append(g.classes, c)
	g.mu.Unlock()
	return g.Gate.Enter(ctx, c)
}

func TestCreationsWaitForASlot(t *testing.T) {
	s, f := newTestService(t, nil)
	g := &recordingGate{Gate: admit.New(1, 0)}
	s.Pods.o.Starts = g
	ctx := context.Background()

	podID, err := s.Pods.RunPodSandbox(ctx, podConfig("slots"), "")
	if err != nil {
		t.Fatal(err)
	}
	if _, err := s.Containers.CreateContainer(ctx, podID, containerConfig("c")); err != nil {
		t.Fatal(err)
	}
	if want := []admit.Class{admit.Sandbox, admit.Container}; !slices.Equal(g.classes, want) {
		t.Fatalf("entered as %v, want %v", g.classes, want)
	}

	// Every slot taken: a creation waits, and gives up with its context,
	// leaving nothing behind.
	hold, err := g.Gate.Enter(ctx, admit.Sandbox)
	if err != nil {
		t.Fatalf("the slots were not given back: %v", err)
	}
	held := f.held()
	short, cancel := context.WithTimeout(ctx, 50*time.Millisecond)
	defer cancel()
	if _, err := s.Pods.RunPodSandbox(short, podConfig("waits"), ""); !errors.Is(err, context.DeadlineExceeded) {
		t.Fatalf("RunPodSandbox with no free slot: %v", err)
	}
	if _, err := s.Containers.CreateContainer(short, podID, containerConfig("d")); !errors.Is(err, context.DeadlineExceeded) {
		t.Fatalf("CreateContainer with no free slot: %v", err)
	}
	if now := f.held(); !slices.Equal(now, held) {
		t.Fatalf("held %v after the timed-out creations, before %v", now, held)
	}
	hold()
	// The names the timed-out requests reserved are free again.
	if _, err := s.Pods.RunPodSandbox(ctx, podConfig("waits"), ""); err != nil {
		t.Fatal(err)
	}
	if _, err := s.Containers.CreateContainer(ctx, podID, containerConfig("d")); err != nil {
		t.Fatal(err)
	}
}

// The services log through the logger in the request's context, so a
// pod start's lines name the request (the interceptor's id) that caused
// them.
func TestLinesCarryTheRequestLogger(t *testing.T) {
	s, _ := newTestService(t, nil)
	logger, hook := logtest.NewNullLogger()
	logger.SetLevel(logrus.DebugLevel)
	ctx := log.WithContext(context.Background(), logrus.NewEntry(logger).WithField("id", "req-1"))
	if _, err := s.Pods.RunPodSandbox(ctx, podConfig("logs"), ""); err != nil {
		t.Fatal(err)
	}
	var running bool
	for _, e := range hook.AllEntries() {
		if e.Data["id"] != "req-1" {
			t.Errorf("line %q has no request id: %v", e.Message, e.Data)
		}
		running = running || e.Message == "pod sandbox running"
	}
	if !running {
		t.Fatal(`no "pod sandbox running" line in the request's logger`)
	}
}

// A request waiting for a pod's lock gives up when its caller does.
func TestLockWaitEndsWithTheRequest(t *testing.T) {
	s, f := newTestService(t, nil)
	ctx := context.Background()
	podID, err := s.Pods.RunPodSandbox(ctx, podConfig("locked"), "")
	if err != nil {
		t.Fatal(err)
	}
	unlock, err := s.Pods.lockPod(ctx, podID)
	if err != nil {
		t.Fatal(err)
	}
	held := f.held()
	short, cancel := context.WithTimeout(ctx, 30*time.Millisecond)
	defer cancel()
	if _, err := s.Containers.CreateContainer(short, podID, containerConfig("c")); !errors.Is(err, context.DeadlineExceeded) {
		t.Fatalf("CreateContainer behind a held pod lock: %v", err)
	}
	if err := s.Pods.StopPodSandbox(short, podID); !errors.Is(err, context.DeadlineExceeded) {
		t.Fatalf("StopPodSandbox behind a held pod lock: %v", err)
	}
	if now := f.held(); !slices.Equal(now, held) {
		t.Fatalf("held %v after the timed-out calls, before %v", now, held)
	}
	unlock()
	if _, err := s.Containers.CreateContainer(ctx, podID, containerConfig("c")); err != nil {
		t.Fatalf("after the lock is free: %v", err)
	}
}

// killed is what the failure hook panics with to stand for SIGKILL: the
// create stops there and nothing of its rollback runs (it runs only when
// the create returns an error).
type killed struct{ at string }

// TestRecoverAfterKillAtEveryStep kills a create at each of its steps,
// "restarts" noded on the same state directory and host, and checks that
// recovery leaves nothing of it behind and that the kubelet's retry of the
// same request succeeds.
func TestRecoverAfterKillAtEveryStep(t *testing.T) {
	withNet := func(name string) *runtimeapi.PodSandboxConfig {
		c := podConfig(name)
		c.Linux.SecurityContext.NamespaceOptions.Network = runtimeapi.NamespaceMode_POD
		return c
	}
	podSteps := []string{"pause-image", "pending", "pod-files", "netns", "monitor", "pause-bundle", "pause", "cni", "record"}
	ctrSteps := []string{"container-pending", "container-rootfs", "container-create"}
	for _, step := range append(podSteps, ctrSteps...) {
		t.Run(step, func(t *testing.T) {
			armed := true
			s, f := newTestService(t, func(at string) error {
				if armed && at == step {
					panic(killed{at})
				}
				return nil
			})
			ctx := context.Background()
			isPodStep := slices.Contains(podSteps, step)
			var podID ids.SandboxID
			var before []string
			run := func() {
				defer func() {
					if r := recover(); r != nil {
						if _, ok := r.(killed); !ok {
							panic(r)
						}
					}
				}()
				if isPodStep {
					_, _ = s.Pods.RunPodSandbox(ctx, withNet("k"), "")
					t.Fatalf("RunPodSandbox went past step %s", step)
				}
				var err error
				if podID, err = s.Pods.RunPodSandbox(ctx, withNet("k"), ""); err != nil {
					t.Fatal(err)
				}
				before = f.held()
				_, _ = s.Containers.CreateContainer(ctx, podID, containerConfig("c"))
				t.Fatalf("CreateContainer went past step %s", step)
			}
			run()
			armed = false
			s2 := restartOnDisk(t, s)
			o, st := s2.Pods.o, s2.Pods.o.Store

			if n := len(st.PendingSandboxes()) + len(st.PendingContainers()); n != 0 {
				t.Fatalf("%d pending records left", n)
			}
			if step == "record" {
				// Killed once the record was written: the pod is whole,
				// and adopted as it is (the kubelet finds it ready).
				pods := s2.Pods.ListPodSandbox(nil)
				if len(pods) != 1 || pods[0].GetState() != runtimeapi.PodSandboxState_SANDBOX_READY {
					t.Fatalf("pods after recovery: %v", pods)
				}
				if err := s2.Pods.RemovePodSandbox(ctx, ids.SandboxID(pods[0].GetId())); err != nil {
					t.Fatal(err)
				}
				if held := f.held(); len(held) != 0 {
					t.Fatalf("left behind after removal: %v", held)
				}
				return
			}
			if held := f.held(); fmt.Sprint(held) != fmt.Sprint(before) {
				t.Fatalf("left behind: %v (before the create: %v)", held, before)
			}
			if isPodStep {
				if n := len(s2.Pods.ListPodSandbox(nil)); n != 0 {
					t.Fatalf("%d pods listed", n)
				}
				for _, dir := range []string{o.PodsDir, o.NetNSDir} {
					if entries, _ := os.ReadDir(dir); len(entries) != 0 {
						t.Fatalf("left in %s: %v", dir, entries)
					}
				}
				id, err := s2.Pods.RunPodSandbox(ctx, withNet("k"), "")
				if err != nil {
					t.Fatalf("retry: %v", err)
				}
				if err := s2.Pods.RemovePodSandbox(ctx, id); err != nil {
					t.Fatal(err)
				}
				return
			}
			if n := len(s2.Containers.ListContainers(nil)); n != 0 {
				t.Fatalf("%d containers listed", n)
			}
			// The pause container's bundle is the only one left.
			if entries, _ := os.ReadDir(filepath.Join(o.PodsDir, string(podID), "containers")); len(entries) != 1 || entries[0].Name() != string(podID) {
				t.Fatalf("bundles left: %v", entries)
			}
			if _, err := s2.Containers.CreateContainer(ctx, podID, containerConfig("c")); err != nil {
				t.Fatalf("retry: %v", err)
			}
			if err := s2.Pods.RemovePodSandbox(ctx, podID); err != nil {
				t.Fatal(err)
			}
		})
	}
}

// A stopped pod holds nothing but its storage containers until it is
// removed; its containers' statuses are still there.
func TestStoppedPodHoldsNothing(t *testing.T) {
	for _, withNet := range []bool{false, true} {
		t.Run(fmt.Sprintf("pod network %v", withNet), func(t *testing.T) {
			s, f := newTestService(t, nil)
			ctx := context.Background()
			cfg := podConfig("stopped")
			if withNet {
				cfg.Linux.SecurityContext.NamespaceOptions.Network = runtimeapi.NamespaceMode_POD
			}
			podID, err := s.Pods.RunPodSandbox(ctx, cfg, "")
			if err != nil {
				t.Fatal(err)
			}
			ctrID, err := s.Containers.CreateContainer(ctx, podID, containerConfig("c"))
			if err != nil {
				t.Fatal(err)
			}
			if err := s.Containers.StartContainer(ctx, ctrID); err != nil {
				t.Fatal(err)
			}
			for range 2 { // a second stop is a no-op
				if err := s.Pods.StopPodSandbox(ctx, podID); err != nil {
					t.Fatal(err)
				}
			}
			want := []string{"rootfs " + string(ctrID), "rootfs " + string(podID)}
			slices.Sort(want)
			if held := f.held(); fmt.Sprint(held) != fmt.Sprint(want) {
				t.Fatalf("a stopped pod holds %v, want only its storage containers %v", held, want)
			}
			cs, _, err := s.Containers.ContainerStatus(ctrID, false)
			if err != nil || cs.GetState() != runtimeapi.ContainerState_CONTAINER_EXITED {
				t.Fatalf("status after the pod stopped: %v %v", cs, err)
			}
			ps, _, err := s.Pods.PodSandboxStatus(podID, false)
			if err != nil || ps.GetState() != runtimeapi.PodSandboxState_SANDBOX_NOTREADY {
				t.Fatalf("pod status: %v %v", ps, err)
			}
			if err := s.Pods.RemovePodSandbox(ctx, podID); err != nil {
				t.Fatal(err)
			}
			if held := f.held(); len(held) != 0 {
				t.Fatalf("left after removal: %v", held)
			}
		})
	}
}

// noded killed in StartContainer after the monitor started the container
// but before the record said so: recovery records it running.
func TestRecoverAStartTheRecordMissed(t *testing.T) {
	s, f := newTestService(t, nil)
	ctx := context.Background()
	podID, ctrID := runPodWithContainer(t, s, "st")
	f.mu.Lock()
	f.ctrs[ctrID].Status, f.ctrs[ctrID].Pid, f.ctrs[ctrID].StartedAt = oci.StatusRunning, 4242, time.Now()
	f.mu.Unlock()
	s2 := restartOnDisk(t, s)
	cs, _, err := s2.Containers.ContainerStatus(ctrID, false)
	if err != nil || cs.GetState() != runtimeapi.ContainerState_CONTAINER_RUNNING {
		t.Fatalf("after recovery: %v %v", cs.GetState(), err)
	}
	if err := s2.Pods.RemovePodSandbox(ctx, podID); err != nil {
		t.Fatal(err)
	}
}

// restartOnDisk stands for a restart of noded: s is closed, the records
// are read back from its state directory, and new services on the same
// host (fakes) recover; they are closed at the end of the test.
func restartOnDisk(t *testing.T, s *Services) *Services {
	t.Helper()
	s.Close()
	o := s.Pods.o
	o.FailAfter = nil
	st, _, err := state.Open(filepath.Join(filepath.Dir(o.PodsDir), "state"))
	if err != nil {
		t.Fatal(err)
	}
	o.Store = st
	s2 := New(o)
	t.Cleanup(s2.Close)
	s2.Recover(context.Background())
	return s2
}
