package nri

import (
	"context"
	"errors"
	"path/filepath"
	"slices"
	"strings"
	"sync"
	"testing"
	"time"

	api "github.com/containerd/nri/pkg/api"
	"github.com/containerd/nri/pkg/stub"
	specs "github.com/opencontainers/runtime-spec/specs-go"
	runtimeapi "k8s.io/cri-api/pkg/apis/runtime/v1"

	"github.com/noded-dev/noded/internal/errdefs"
	"github.com/noded-dev/noded/internal/ids"
	"github.com/noded-dev/noded/internal/state"
)

func testPod() *state.Sandbox {
	return &state.Sandbox{
		ID: ids.SandboxID("pod1"), State: state.SandboxReady, RuntimeHandler: "runc", CgroupParent: "/kubepods/pod1",
		NetNSPath: "/run/netns/pod1", IPs: []string{"10.0.0.2"}, PausePID: 42, Dir: "/nonexistent",
		Config: &runtimeapi.PodSandboxConfig{
			Metadata:    &runtimeapi.PodSandboxMetadata{Name: "web", Namespace: "default", Uid: "u1"},
			Labels:      map[string]string{"app": "web"},
			Annotations: map[string]string{"a": "b"},
		},
	}
}

func testContainer() *state.Container {
	return &state.Container{
		ID: ids.ContainerID("ctr1"), SandboxID: ids.SandboxID("pod1"), State: state.ContainerRunning, Pid: 7,
		Config: &runtimeapi.ContainerConfig{
			Metadata: &runtimeapi.ContainerMetadata{Name: "app"},
			Labels:   map[string]string{"l": "v"},
		},
		ImageRef: "docker.io/library/busybox:1.36", Bundle: "/nonexistent", CgroupsPath: "/kubepods/pod1/ctr1",
		User: state.User{UID: 1000, GID: 1000},
	}
}

func testSpec() *specs.Spec {
	shares := uint64(1024)
	return &specs.Spec{
		Process: &specs.Process{Args: []string{"sleep", "1"}, Env: []string{"PATH=/bin", "KEEP=1", "DROP=1"}},
		Mounts:  []specs.Mount{{Destination: "/proc", Type: "proc", Source: "proc"}},
		Linux: &specs.Linux{
			CgroupsPath: "/kubepods/pod1/ctr1",
			Resources:   &specs.LinuxResources{CPU: &specs.LinuxCPU{Shares: &shares}},
		},
		Annotations: map[string]string{"io.kubernetes.cri.container-type": "container"},
	}
}

func TestConvert(t *testing.T) {
	t.Run("pod", func(t *testing.T) {
		p := podSandbox(testPod())
		if p.GetId() != "pod1" || p.GetName() != "web" || p.GetNamespace() != "default" || p.GetUid() != "u1" {
			t.Errorf("metadata: %v", p)
		}
		if p.GetLabels()["app"] != "web" || p.GetAnnotations()["a"] != "b" || p.GetRuntimeHandler() != "runc" {
			t.Errorf("labels, annotations, handler: %v", p)
		}
		if p.GetLinux().GetCgroupParent() != "/kubepods/pod1" || p.GetPid() != 42 || !slices.Equal(p.GetIps(), []string{"10.0.0.2"}) {
			t.Errorf("linux, pid, ips: %v", p)
		}
		if ns := p.GetLinux().GetNamespaces(); len(ns) != 1 || ns[0].GetType() != "network" || ns[0].GetPath() != "/run/netns/pod1" {
			t.Errorf("namespaces without a pause bundle: %v", ns)
		}
	})
	t.Run("container with its spec", func(t *testing.T) {
		c := container(testContainer(), testSpec())
		if c.GetId() != "ctr1" || c.GetPodSandboxId() != "pod1" || c.GetName() != "app" || c.GetState() != api.ContainerState_CONTAINER_RUNNING {
			t.Errorf("identity: %v", c)
		}
		if !slices.Equal(c.GetArgs(), []string{"sleep", "1"}) || !slices.Contains(c.GetEnv(), "KEEP=1") || len(c.GetMounts()) != 1 {
			t.Errorf("process and mounts: %v", c)
		}
		if c.GetLinux().GetResources().GetCpu().GetShares().GetValue() != 1024 || c.GetLinux().GetCgroupsPath() != "/kubepods/pod1/ctr1" {
			t.Errorf("linux: %v", c.GetLinux())
		}
		if c.GetLabels()["l"] != "v" || c.GetAnnotations()["io.kubernetes.cri.container-type"] != "container" || c.GetUser().GetUid() != 1000 {
			t.Errorf("labels, annotations, user: %v", c)
		}
	})
	t.Run("container without a bundle", func(t *testing.T) {
		rec := testContainer()
		rec.State = state.ContainerExited
		rec.ExitCode = 3
		c := container(rec, nil)
		if c.GetName() != "app" || c.GetState() != api.ContainerState_CONTAINER_STOPPED || c.GetExitCode() != 3 {
			t.Errorf("%v", c)
		}
	})
}

type fakeCDI struct{ got []string }

func (f *fakeCDI) Inject(spec *specs.Spec, devices []string) error {
	f.got = append(f.got, devices...)
	spec.Process.Env = append(spec.Process.Env, "CDI=1")
	return nil
}

func TestAdjust(t *testing.T) {
	for _, tc := range []struct {
		name  string
		adj   func(a *api.ContainerAdjustment)
		cdi   *fakeCDI
		swap  bool
		check func(t *testing.T, s *specs.Spec)
		err   string
	}{
		{
			name: "env added, changed and removed",
			adj: func(a *api.ContainerAdjustment) {
				a.AddEnv("NEW", "x")
				a.AddEnv("KEEP", "2")
				a.RemoveEnv("DROP")
			},
			check: func(t *testing.T, s *specs.Spec) {
				env := s.Process.Env
				if !slices.Contains(env, "NEW=x") || !slices.Contains(env, "KEEP=2") || slices.ContainsFunc(env, func(e string) bool { return strings.HasPrefix(e, "DROP=") }) {
					t.Errorf("env = %v", env)
				}
			},
		},
		{
			name: "mount and annotation",
			adj: func(a *api.ContainerAdjustment) {
				a.AddMount(&api.Mount{Destination: "/nri", Source: "/tmp", Type: "bind", Options: []string{"rbind", "ro"}})
				a.AddAnnotation("nri.test/x", "y")
			},
			check: func(t *testing.T, s *specs.Spec) {
				if !slices.ContainsFunc(s.Mounts, func(m specs.Mount) bool { return m.Destination == "/nri" && m.Source == "/tmp" }) {
					t.Errorf("mounts = %v", s.Mounts)
				}
				if s.Annotations["nri.test/x"] != "y" {
					t.Errorf("annotations = %v", s.Annotations)
				}
			},
		},
		{
			name: "hooks, rlimits, cpu and memory without swap accounting",
			adj: func(a *api.ContainerAdjustment) {
				a.AddHooks(&api.Hooks{CreateRuntime: []*api.Hook{{Path: "/bin/true"}}})
				a.AddRlimit("RLIMIT_NOFILE", 1024, 512)
				a.SetLinuxCPUShares(2)
				a.SetLinuxMemoryLimit(64 << 20)
			},
			check: func(t *testing.T, s *specs.Spec) {
				if s.Hooks == nil || len(s.Hooks.CreateRuntime) != 1 {
					t.Errorf("hooks = %v", s.Hooks)
				}
				if len(s.Process.Rlimits) != 1 || s.Process.Rlimits[0].Soft != 512 {
					t.Errorf("rlimits = %v", s.Process.Rlimits)
				}
				r := s.Linux.Resources
				if *r.CPU.Shares != 2 || *r.Memory.Limit != 64<<20 || r.Memory.Swap != nil {
					t.Errorf("resources = %+v %+v", r.CPU, r.Memory)
				}
			},
		},
		{
			name: "memory with swap accounting",
			adj:  func(a *api.ContainerAdjustment) { a.SetLinuxMemoryLimit(64 << 20) },
			swap: true,
			check: func(t *testing.T, s *specs.Spec) {
				if m := s.Linux.Resources.Memory; m.Swap == nil || *m.Swap != 64<<20 {
					t.Errorf("memory = %+v", m)
				}
			},
		},
		{
			name: "CDI devices through the registry",
			adj:  func(a *api.ContainerAdjustment) { a.AddCDIDevice(&api.CDIDevice{Name: "vendor.com/gpu=0"}) },
			cdi:  &fakeCDI{},
			check: func(t *testing.T, s *specs.Spec) {
				if !slices.Contains(s.Process.Env, "CDI=1") {
					t.Errorf("env = %v", s.Process.Env)
				}
			},
		},
		{
			name: "CDI devices without CDI",
			adj:  func(a *api.ContainerAdjustment) { a.AddCDIDevice(&api.CDIDevice{Name: "vendor.com/gpu=0"}) },
			err:  "cdi-spec-dirs",
		},
	} {
		t.Run(tc.name, func(t *testing.T) {
			a := &api.ContainerAdjustment{}
			tc.adj(a)
			spec := testSpec()
			var cdi cdiInjector
			if tc.cdi != nil {
				cdi = tc.cdi
			}
			err := adjust(spec, a, cdi, tc.swap)
			if tc.err != "" {
				if err == nil || !strings.Contains(err.Error(), tc.err) {
					t.Fatalf("err = %v, want one naming %q", err, tc.err)
				}
				return
			}
			if err != nil {
				t.Fatal(err)
			}
			tc.check(t, spec)
		})
	}
}

func TestResources(t *testing.T) {
	for _, tc := range []struct {
		name       string
		base, over *runtimeapi.LinuxContainerResources
		want       *runtimeapi.LinuxContainerResources
	}{
		{
			name: "plugin sets shares only",
			base: &runtimeapi.LinuxContainerResources{CpuShares: 1024, MemoryLimitInBytes: 1 << 30},
			over: &runtimeapi.LinuxContainerResources{CpuShares: 512},
			want: &runtimeapi.LinuxContainerResources{CpuShares: 512, MemoryLimitInBytes: 1 << 30},
		},
		{
			name: "plugin sets cpuset and unified",
			base: &runtimeapi.LinuxContainerResources{CpuQuota: 100000, Unified: map[string]string{"a": "1"}},
			over: &runtimeapi.LinuxContainerResources{CpusetCpus: "0", Unified: map[string]string{"b": "2"}},
			want: &runtimeapi.LinuxContainerResources{CpuQuota: 100000, CpusetCpus: "0", Unified: map[string]string{"a": "1", "b": "2"}},
		},
	} {
		t.Run(tc.name, func(t *testing.T) {
			// Through NRI's form and back, as a plugin's answer comes.
			over := criResources(nriResources(tc.over))
			got := mergeCRI(tc.base, over)
			if got.String() != tc.want.String() {
				t.Errorf("got %v, want %v", got, tc.want)
			}
		})
	}
}

// A nil *NRI (nri-enable = false) does nothing, and says yes.
func TestDisabled(t *testing.T) {
	var n *NRI
	ctx := context.Background()
	pod, ctr, spec := testPod(), testContainer(), testSpec()
	n.BlockSync()()
	if err := n.Start(nil, nil); err != nil {
		t.Fatal(err)
	}
	if err := n.RunPodSandbox(ctx, pod); err != nil {
		t.Fatal(err)
	}
	if err := n.CreateContainer(ctx, pod, ctr, spec); err != nil {
		t.Fatal(err)
	}
	if err := n.StartContainer(ctx, pod, ctr); err != nil {
		t.Fatal(err)
	}
	r := &runtimeapi.LinuxContainerResources{CpuShares: 2}
	if got, err := n.UpdateContainer(ctx, pod, ctr, r); err != nil || got != r {
		t.Fatalf("UpdateContainer = %v, %v", got, err)
	}
	n.PostCreateContainer(ctx, pod, ctr)
	n.PostStartContainer(ctx, pod, ctr)
	n.PostUpdateContainer(ctx, pod, ctr)
	n.StopContainer(ctx, pod, ctr)
	n.RemoveContainer(ctx, pod, ctr)
	n.StopPodSandbox(ctx, pod)
	n.RemovePodSandbox(ctx, pod)
	n.Stop()
}

// fakeRecords and fakeRuntime stand in for the store and the containers
// service.
type fakeRecords struct {
	pods []*state.Sandbox
	ctrs []*state.Container
}

func (f *fakeRecords) Sandboxes() []*state.Sandbox    { return f.pods }
func (f *fakeRecords) Containers() []*state.Container { return f.ctrs }
func (f *fakeRecords) Sandbox(id ids.SandboxID) (*state.Sandbox, error) {
	for _, p := range f.pods {
		if p.ID == id {
			return p, nil
		}
	}
	return nil, errdefs.NotFound("pod %s", id)
}

func (f *fakeRecords) Container(id ids.ContainerID) (*state.Container, error) {
	for _, c := range f.ctrs {
		if c.ID == id {
			return c, nil
		}
	}
	return nil, errdefs.NotFound("container %s", id)
}

type fakeRuntime struct {
	updates chan *runtimeapi.LinuxContainerResources
	evicted chan string
}

func (f *fakeRuntime) UpdateResources(_ context.Context, _ ids.ContainerID, r *runtimeapi.LinuxContainerResources) error {
	f.updates <- r
	return nil
}

func (f *fakeRuntime) Evict(_ context.Context, id ids.ContainerID, _ string) error {
	f.evicted <- string(id)
	return nil
}

// plugin is a stub-library plugin that records what it is told and
// answers as the test sets.
type plugin struct {
	mu     sync.Mutex
	events []string
	synced []string
	ready  chan struct{}
	once   sync.Once

	onCreate func(ctx context.Context) (*api.ContainerAdjustment, error)
}

func (p *plugin) record(e string) {
	p.mu.Lock()
	defer p.mu.Unlock()
	p.events = append(p.events, e)
}

func (p *plugin) seen() []string {
	p.mu.Lock()
	defer p.mu.Unlock()
	return slices.Clone(p.events)
}

func (p *plugin) Synchronize(_ context.Context, pods []*api.PodSandbox, ctrs []*api.Container) ([]*api.ContainerUpdate, error) {
	p.mu.Lock()
	for _, x := range pods {
		p.synced = append(p.synced, x.GetId())
	}
	for _, x := range ctrs {
		p.synced = append(p.synced, x.GetId())
	}
	p.mu.Unlock()
	p.once.Do(func() { close(p.ready) })
	return nil, nil
}

func (p *plugin) RunPodSandbox(_ context.Context, pod *api.PodSandbox) error {
	p.record("RunPodSandbox " + pod.GetId())
	return nil
}

func (p *plugin) CreateContainer(ctx context.Context, _ *api.PodSandbox, c *api.Container) (*api.ContainerAdjustment, []*api.ContainerUpdate, error) {
	p.record("CreateContainer " + c.GetName())
	if p.onCreate == nil {
		return nil, nil, nil
	}
	a, err := p.onCreate(ctx)
	return a, nil, err
}

func (p *plugin) StopContainer(_ context.Context, _ *api.PodSandbox, c *api.Container) ([]*api.ContainerUpdate, error) {
	p.record("StopContainer " + c.GetId())
	return nil, nil
}

// connect runs p as plugin idx-name on n's socket until the test ends,
// and returns once n has it among its plugins.
func connect(t *testing.T, n *NRI, socket, name, idx string, p *plugin) stub.Stub {
	t.Helper()
	p.ready = make(chan struct{})
	closed := make(chan struct{})
	s, err := stub.New(p, stub.WithPluginName(name), stub.WithPluginIdx(idx), stub.WithSocketPath(socket),
		stub.WithOnClose(func() { close(closed) }))
	if err != nil {
		t.Fatal(err)
	}
	ctx, cancel := context.WithCancel(context.Background())
	done := make(chan error, 1)
	go func() { done <- s.Run(ctx) }()
	t.Cleanup(func() {
		cancel()
		s.Stop()
		if err := <-done; err != nil && !errors.Is(err, context.Canceled) {
			t.Logf("plugin %s ended: %v", name, err)
		}
	})
	select {
	case <-p.ready:
	case err := <-done:
		t.Fatalf("plugin %s ended before it was synchronized: %v", name, err)
	}
	// The library adds a plugin once its Synchronize returned, before it
	// lets creations (BlockSync) go on.
	n.BlockSync()()
	return s
}

// TestPlugins runs NRI with plugins of the stub library on a private
// socket: Synchronize gives them the existing pod and container, their
// adjustments reach the spec, an unsolicited update and an eviction reach
// the runtime, a refusal fails the hook, StopContainer is told once, and
// a plugin that does not answer is disconnected while the hook goes on.
func TestPlugins(t *testing.T) {
	socket := filepath.Join(t.TempDir(), "nri.sock")
	n, err := New(Options{Socket: socket, PluginDir: filepath.Join(t.TempDir(), "none"), RequestTimeout: 500 * time.Millisecond})
	if err != nil {
		t.Fatal(err)
	}
	pod, existing := testPod(), testContainer()
	rt := &fakeRuntime{updates: make(chan *runtimeapi.LinuxContainerResources, 4), evicted: make(chan string, 4)}
	if err := n.Start(&fakeRecords{pods: []*state.Sandbox{pod}, ctrs: []*state.Container{existing}}, rt); err != nil {
		t.Fatal(err)
	}
	t.Cleanup(n.Stop)
	ctx := context.Background()

	t.Run("a second runtime on the socket is refused", func(t *testing.T) {
		other, err := New(Options{Socket: socket})
		if err != nil {
			t.Fatal(err)
		}
		if err := other.Start(&fakeRecords{}, rt); err == nil || !strings.Contains(err.Error(), "already serving") {
			t.Fatalf("Start on a served socket: %v", err)
		}
	})

	good := &plugin{}
	good.onCreate = func(context.Context) (*api.ContainerAdjustment, error) {
		a := &api.ContainerAdjustment{}
		a.AddEnv("FROM_NRI", "1")
		a.AddMount(&api.Mount{Destination: "/nri", Source: "/tmp", Type: "bind", Options: []string{"rbind"}})
		a.AddAnnotation("nri/x", "y")
		return a, nil
	}
	// No plugin: the hooks do nothing (no bundle is read, nothing changes).
	if spec := testSpec(); n.active() || n.CreateContainer(ctx, pod, testContainer(), spec) != nil || len(spec.Process.Env) != 3 {
		t.Fatal("hooks ran with no plugin connected")
	}
	s := connect(t, n, socket, "good", "10", good)
	if !n.active() {
		t.Fatal("a synchronized plugin is not counted")
	}
	if !slices.Contains(good.synced, "pod1") || !slices.Contains(good.synced, "ctr1") {
		t.Fatalf("Synchronize gave %v, want the pod and its container", good.synced)
	}

	t.Run("adjustments reach the spec", func(t *testing.T) {
		spec := testSpec()
		c := testContainer()
		c.ID, c.State = "ctr2", state.ContainerCreated
		if err := n.CreateContainer(ctx, pod, c, spec); err != nil {
			t.Fatal(err)
		}
		if !slices.Contains(spec.Process.Env, "FROM_NRI=1") || spec.Annotations["nri/x"] != "y" ||
			!slices.ContainsFunc(spec.Mounts, func(m specs.Mount) bool { return m.Destination == "/nri" }) {
			t.Errorf("spec after the hook: env %v, annotations %v, mounts %v", spec.Process.Env, spec.Annotations, spec.Mounts)
		}
	})

	t.Run("unsolicited update", func(t *testing.T) {
		shares := &api.ContainerUpdate{ContainerId: "ctr1"}
		shares.SetLinuxCPUShares(256)
		failed, err := s.UpdateContainers([]*api.ContainerUpdate{shares})
		if err != nil || len(failed) != 0 {
			t.Fatalf("UpdateContainers: %v %v", failed, err)
		}
		if r := <-rt.updates; r.GetCpuShares() != 256 {
			t.Errorf("runtime got %v", r)
		}
	})

	t.Run("StopContainer is told once", func(t *testing.T) {
		c := testContainer()
		c.ID, c.State = "ctr3", state.ContainerExited
		n.StopContainer(ctx, pod, c)
		n.StopContainer(ctx, pod, c)
		n.RemoveContainer(ctx, pod, c)
		count := 0
		for _, e := range good.seen() {
			if e == "StopContainer ctr3" {
				count++
			}
		}
		if count != 1 {
			t.Errorf("StopContainer told %d times: %v", count, good.seen())
		}
	})

	t.Run("a refusal fails the hook", func(t *testing.T) {
		good.onCreate = func(context.Context) (*api.ContainerAdjustment, error) { return nil, errors.New("no, thanks") }
		defer func() { good.onCreate = nil }()
		c := testContainer()
		c.ID = "ctr4"
		if err := n.CreateContainer(ctx, pod, c, testSpec()); err == nil || !strings.Contains(err.Error(), "no, thanks") {
			t.Fatalf("CreateContainer = %v, want the plugin's refusal", err)
		}
	})

	t.Run("a hung plugin is disconnected", func(t *testing.T) {
		release := make(chan struct{})
		defer close(release)
		// It ignores its context (whose deadline the runtime's is), as a
		// wedged plugin would.
		hung := &plugin{onCreate: func(context.Context) (*api.ContainerAdjustment, error) {
			<-release
			return nil, nil
		}}
		connect(t, n, socket, "hung", "20", hung)
		c := testContainer()
		c.ID = "ctr5"
		if err := n.CreateContainer(ctx, pod, c, testSpec()); err != nil {
			t.Fatalf("CreateContainer with a hung plugin: %v", err)
		}
		// Disconnected: the next hook no longer reaches it, and the good
		// plugin still answers.
		c.ID = "ctr6"
		if err := n.CreateContainer(ctx, pod, c, testSpec()); err != nil {
			t.Fatal(err)
		}
		if got := hung.seen(); len(got) != 1 {
			t.Errorf("the hung plugin was told %v, want only the first CreateContainer", got)
		}
		if got := good.seen(); !slices.Contains(got, "CreateContainer app") {
			t.Errorf("the good plugin was told %v", got)
		}
	})
}
