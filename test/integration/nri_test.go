//go:build integration

package integration

import (
	"context"
	"encoding/json"
	"errors"
	"os"
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
)

// nriPlugin is an NRI plugin written with the stub library, run in the
// test process against the daemon's private NRI socket. It records every
// event ("<event> <pod or container name>") and, at CreateContainer, adds
// an environment variable, a read-only mount of share and an annotation.
type nriPlugin struct {
	share string

	mu         sync.Mutex
	events     []string
	synced     []string
	failCreate error
	// blockRun, when set, holds RunPodSandbox until it is closed,
	// ignoring the request's deadline: a wedged plugin.
	blockRun chan struct{}

	ready     chan struct{}
	readyOnce sync.Once
}

func (p *nriPlugin) record(event, name string) {
	p.mu.Lock()
	defer p.mu.Unlock()
	p.events = append(p.events, event+" "+name)
}

func (p *nriPlugin) seen() []string {
	p.mu.Lock()
	defer p.mu.Unlock()
	return slices.Clone(p.events)
}

func (p *nriPlugin) Synchronize(_ context.Context, pods []*api.PodSandbox, ctrs []*api.Container) ([]*api.ContainerUpdate, error) {
	p.mu.Lock()
	for _, x := range pods {
		p.synced = append(p.synced, x.GetName())
	}
	for _, x := range ctrs {
		p.synced = append(p.synced, x.GetName())
	}
	p.mu.Unlock()
	p.readyOnce.Do(func() { close(p.ready) })
	return nil, nil
}

func (p *nriPlugin) RunPodSandbox(_ context.Context, pod *api.PodSandbox) error {
	p.record("RunPodSandbox", pod.GetName())
	if p.blockRun != nil {
		<-p.blockRun
	}
	return nil
}

func (p *nriPlugin) StopPodSandbox(_ context.Context, pod *api.PodSandbox) error {
	p.record("StopPodSandbox", pod.GetName())
	return nil
}

func (p *nriPlugin) RemovePodSandbox(_ context.Context, pod *api.PodSandbox) error {
	p.record("RemovePodSandbox", pod.GetName())
	return nil
}

func (p *nriPlugin) CreateContainer(_ context.Context, _ *api.PodSandbox, c *api.Container) (*api.ContainerAdjustment, []*api.ContainerUpdate, error) {
	p.record("CreateContainer", c.GetName())
	p.mu.Lock()
	fail := p.failCreate
	p.failCreate = nil
	p.mu.Unlock()
	if fail != nil {
		return nil, nil, fail
	}
	a := &api.ContainerAdjustment{}
	a.AddEnv("NRI_IT", "adjusted")
	a.AddMount(&api.Mount{Destination: "/nri", Source: p.share, Type: "bind", Options: []string{"rbind", "ro"}})
	a.AddAnnotation("nri.noded.test/adjusted", "yes")
	return a, nil, nil
}

func (p *nriPlugin) PostCreateContainer(_ context.Context, _ *api.PodSandbox, c *api.Container) error {
	p.record("PostCreateContainer", c.GetName())
	return nil
}

func (p *nriPlugin) StartContainer(_ context.Context, _ *api.PodSandbox, c *api.Container) error {
	p.record("StartContainer", c.GetName())
	return nil
}

func (p *nriPlugin) PostStartContainer(_ context.Context, _ *api.PodSandbox, c *api.Container) error {
	p.record("PostStartContainer", c.GetName())
	return nil
}

func (p *nriPlugin) UpdateContainer(_ context.Context, _ *api.PodSandbox, c *api.Container, _ *api.LinuxResources) ([]*api.ContainerUpdate, error) {
	p.record("UpdateContainer", c.GetName())
	return nil, nil
}

func (p *nriPlugin) PostUpdateContainer(_ context.Context, _ *api.PodSandbox, c *api.Container) error {
	p.record("PostUpdateContainer", c.GetName())
	return nil
}

func (p *nriPlugin) StopContainer(_ context.Context, _ *api.PodSandbox, c *api.Container) ([]*api.ContainerUpdate, error) {
	p.record("StopContainer", c.GetName())
	return nil, nil
}

func (p *nriPlugin) RemoveContainer(_ context.Context, _ *api.PodSandbox, c *api.Container) error {
	p.record("RemoveContainer", c.GetName())
	return nil
}

// connectNRI runs p as plugin idx-name on the daemon's NRI socket until the
// test ends. It returns the stub and a channel closed when the daemon
// disconnects the plugin.
func connectNRI(t *testing.T, e *podEnv, name, idx string, p *nriPlugin) (stub.Stub, <-chan struct{}) {
	t.Helper()
	p.ready = make(chan struct{})
	closed := make(chan struct{})
	s, err := stub.New(p, stub.WithPluginName(name), stub.WithPluginIdx(idx), stub.WithSocketPath(e.d.NRISocket),
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
		t.Fatalf("plugin %s ended before it was synchronized: %v\n%s", name, err, e.d.Log)
	case <-time.After(30 * time.Second):
		t.Fatalf("plugin %s was not synchronized within 30 s\n%s", name, e.d.Log)
	}
	return s, closed
}

// TestNRIPlugins: a plugin (the NRI stub library, as plugins are written)
// connected to noded's NRI socket is synchronized with the pods that exist,
// its adjustments at CreateContainer reach the container (environment,
// mount, annotation in the bundle), its unsolicited update changes a
// container's CPU shares as UpdateContainerResources would, and it hears
// every lifecycle event of a pod in order. A refusing CreateContainer hook
// fails CreateContainer and leaves nothing; a retry succeeds. A plugin
// that hangs in a hook is disconnected after the request timeout while
// pods keep starting.
func TestNRIPlugins(t *testing.T) {
	e := newPodEnv(t)
	ctx := context.Background()
	share := t.TempDir()
	if err := os.WriteFile(filepath.Join(share, "file"), []byte("from the plugin\n"), 0o644); err != nil {
		t.Fatal(err)
	}
	// A pod before the plugin: Synchronize must give it.
	early, _, _ := e.runPod(t, "nri-early", []string{"sleep", "3600"})

	p := &nriPlugin{share: share}
	s, _ := connectNRI(t, e, "noded-it", "10", p)
	if !slices.Contains(p.synced, "nri-early") || !slices.Contains(p.synced, "main") {
		t.Errorf("Synchronize gave %v, want the existing pod and its container", p.synced)
	}
	if _, err := e.rt.RemovePodSandbox(ctx, &runtimeapi.RemovePodSandboxRequest{PodSandboxId: early}); err != nil {
		t.Fatal(err)
	}

	pcfg := e.podConfig("nri")
	if err := os.MkdirAll(pcfg.LogDirectory, 0o755); err != nil {
		t.Fatal(err)
	}
	run, err := e.rt.RunPodSandbox(ctx, &runtimeapi.RunPodSandboxRequest{Config: pcfg})
	if err != nil {
		t.Fatalf("RunPodSandbox: %v\n%s", err, e.d.Log)
	}
	pod := run.GetPodSandboxId()
	ctr := e.createStart(t, pod, pcfg, "adjusted", []string{"sleep", "3600"})

	t.Run("adjustments reach the container", func(t *testing.T) {
		resp, err := e.exec(t, ctr, 10, "sh", "-c", `echo "env=$NRI_IT" && cat /nri/file && ! touch /nri/new`)
		if err != nil || resp.GetExitCode() != 0 {
			t.Fatalf("in the container: %v %s %s", err, resp.GetStdout(), resp.GetStderr())
		}
		if out := string(resp.GetStdout()); !strings.Contains(out, "env=adjusted") || !strings.Contains(out, "from the plugin") {
			t.Errorf("container sees:\n%s", out)
		}
		b, err := os.ReadFile(filepath.Join(e.d.Dir, "state", "pods", pod, "containers", ctr, "config.json"))
		if err != nil {
			t.Fatal(err)
		}
		var spec specs.Spec
		if err := json.Unmarshal(b, &spec); err != nil {
			t.Fatal(err)
		}
		if spec.Annotations["nri.noded.test/adjusted"] != "yes" {
			t.Errorf("bundle annotations: %v", spec.Annotations)
		}
	})

	t.Run("unsolicited update changes CPU shares", func(t *testing.T) {
		u := &api.ContainerUpdate{ContainerId: ctr}
		u.SetLinuxCPUShares(512)
		failed, err := s.UpdateContainers([]*api.ContainerUpdate{u})
		if err != nil || len(failed) != 0 {
			t.Fatalf("UpdateContainers: failed %v, %v\n%s", failed, err, e.d.Log)
		}
		st, err := e.rt.ContainerStatus(ctx, &runtimeapi.ContainerStatusRequest{ContainerId: ctr})
		if err != nil {
			t.Fatal(err)
		}
		if got := st.GetStatus().GetResources().GetLinux().GetCpuShares(); got != 512 {
			t.Errorf("cpu_shares after the plugin's update = %d, want 512", got)
		}
	})

	t.Run("a refused CreateContainer leaves nothing and a retry works", func(t *testing.T) {
		baseline := e.held(t)
		p.mu.Lock()
		p.failCreate = errors.New("refused by the test plugin")
		p.mu.Unlock()
		cfg := &runtimeapi.ContainerConfig{
			Metadata: &runtimeapi.ContainerMetadata{Name: "refused"},
			Image:    &runtimeapi.ImageSpec{Image: busyboxImage},
			Command:  []string{"sleep", "3600"},
			LogPath:  "refused.log",
		}
		_, err := e.rt.CreateContainer(ctx, &runtimeapi.CreateContainerRequest{PodSandboxId: pod, SandboxConfig: pcfg, Config: cfg})
		if err == nil || !strings.Contains(err.Error(), "refused by the test plugin") {
			t.Fatalf("CreateContainer with a refusing plugin: %v", err)
		}
		if h := e.held(t); !equalHeld(h, baseline) {
			t.Errorf("the refused create left %+v; before it: %+v", h, baseline)
		}
		list, err := e.rt.ListContainers(ctx, &runtimeapi.ListContainersRequest{Filter: &runtimeapi.ContainerFilter{PodSandboxId: pod}})
		if err != nil {
			t.Fatal(err)
		}
		for _, c := range list.GetContainers() {
			if c.GetMetadata().GetName() == "refused" {
				t.Errorf("the refused container is listed: %v", c)
			}
		}
		retry, err := e.rt.CreateContainer(ctx, &runtimeapi.CreateContainerRequest{PodSandboxId: pod, SandboxConfig: pcfg, Config: cfg})
		if err != nil {
			t.Fatalf("retry: %v", err)
		}
		if _, err := e.rt.RemoveContainer(ctx, &runtimeapi.RemoveContainerRequest{ContainerId: retry.GetContainerId()}); err != nil {
			t.Fatal(err)
		}
	})

	t.Run("lifecycle events in order", func(t *testing.T) {
		if _, err := e.rt.UpdateContainerResources(ctx, &runtimeapi.UpdateContainerResourcesRequest{
			ContainerId: ctr, Linux: &runtimeapi.LinuxContainerResources{CpuShares: 256},
		}); err != nil {
			t.Fatal(err)
		}
		if _, err := e.rt.StopContainer(ctx, &runtimeapi.StopContainerRequest{ContainerId: ctr, Timeout: 0}); err != nil {
			t.Fatal(err)
		}
		if _, err := e.rt.RemoveContainer(ctx, &runtimeapi.RemoveContainerRequest{ContainerId: ctr}); err != nil {
			t.Fatal(err)
		}
		for range 2 { // the second stop is a no-op, for the plugins too
			if _, err := e.rt.StopPodSandbox(ctx, &runtimeapi.StopPodSandboxRequest{PodSandboxId: pod}); err != nil {
				t.Fatal(err)
			}
		}
		if _, err := e.rt.RemovePodSandbox(ctx, &runtimeapi.RemovePodSandboxRequest{PodSandboxId: pod}); err != nil {
			t.Fatal(err)
		}
		var got []string
		for _, ev := range p.seen() {
			if strings.HasSuffix(ev, " nri") || strings.HasSuffix(ev, " adjusted") {
				got = append(got, ev)
			}
		}
		want := []string{
			"RunPodSandbox nri",
			"CreateContainer adjusted", "PostCreateContainer adjusted",
			"StartContainer adjusted", "PostStartContainer adjusted",
			"UpdateContainer adjusted", "PostUpdateContainer adjusted",
			"StopContainer adjusted", "RemoveContainer adjusted",
			"StopPodSandbox nri", "RemovePodSandbox nri",
		}
		if !slices.Equal(got, want) {
			t.Errorf("events:\n got %q\nwant %q", got, want)
		}
	})

	t.Run("a hung plugin is disconnected and pods keep starting", func(t *testing.T) {
		release := make(chan struct{})
		defer close(release)
		hung := &nriPlugin{share: share, blockRun: release}
		_, disconnected := connectNRI(t, e, "noded-it-hung", "20", hung)
		for _, name := range []string{"nri-hung-1", "nri-hung-2"} {
			cfg := e.podConfig(name)
			start := time.Now()
			if _, err := e.rt.RunPodSandbox(ctx, &runtimeapi.RunPodSandboxRequest{Config: cfg}); err != nil {
				t.Fatalf("RunPodSandbox %s with a hung plugin: %v\n%s", name, err, e.d.Log)
			}
			t.Logf("%s ran in %v", name, time.Since(start).Round(time.Millisecond))
		}
		select {
		case <-disconnected:
		case <-time.After(30 * time.Second):
			t.Fatalf("the hung plugin is still connected\n%s", e.d.Log)
		}
		if got := hung.seen(); !slices.Equal(got, []string{"RunPodSandbox nri-hung-1"}) {
			t.Errorf("the hung plugin was told %v, want only the first pod", got)
		}
		if got := p.seen(); !slices.Contains(got, "RunPodSandbox nri-hung-2") {
			t.Errorf("the working plugin missed the second pod: %v", got)
		}
	})
}

// preinstalledEnv makes this test binary the pre-installed plugin of
// TestNRIPreinstalledPlugin when noded starts it (through a script in
// nri-plugin-dir).
const preinstalledEnv = "NODED_IT_NRI_PREINSTALLED"

// preinstalled is the pre-installed plugin: it sets PREINSTALLED=yes in
// every container.
type preinstalled struct{}

func (preinstalled) CreateContainer(context.Context, *api.PodSandbox, *api.Container) (*api.ContainerAdjustment, []*api.ContainerUpdate, error) {
	a := &api.ContainerAdjustment{}
	a.AddEnv("PREINSTALLED", "yes")
	return a, nil, nil
}

// TestNRIPreinstalledPlugin: an executable in nri-plugin-dir is started by
// noded, connected over the socket noded hands it, and adjusts containers;
// with nri-enable = false noded starts none, opens no NRI socket, and
// containers are as they would be without NRI.
func TestNRIPreinstalledPlugin(t *testing.T) {
	if os.Getenv(preinstalledEnv) != "" {
		// Started by noded: the stub finds its name, index and socket in
		// the environment noded gave it.
		s, err := stub.New(preinstalled{})
		if err != nil {
			t.Fatal(err)
		}
		if err := s.Run(context.Background()); err != nil {
			t.Logf("plugin ended: %v", err)
		}
		return
	}
	self, err := os.Executable()
	if err != nil {
		t.Fatal(err)
	}
	plugins := t.TempDir()
	script := "#!/bin/sh\n" + preinstalledEnv + "=1 exec " + self + " -test.run='^TestNRIPreinstalledPlugin$' -test.count=1\n"
	if err := os.WriteFile(filepath.Join(plugins, "10-noded-it-preinstalled"), []byte(script), 0o755); err != nil {
		t.Fatal(err)
	}
	for _, tc := range []struct {
		name string
		args []string
		want string
	}{
		{name: "started and adjusting", args: []string{"--nri-plugin-dir", plugins}, want: "preinstalled=yes"},
		{name: "nri-enable false", args: []string{"--nri-plugin-dir", plugins, "--nri-enable", "false"}, want: "preinstalled="},
	} {
		t.Run(tc.name, func(t *testing.T) {
			e := newPodEnv(t, tc.args...)
			_, ctr, _ := e.runPod(t, "nri-pre", []string{"sleep", "3600"})
			resp, err := e.exec(t, ctr, 10, "sh", "-c", `echo "preinstalled=$PREINSTALLED"`)
			if err != nil || resp.GetExitCode() != 0 {
				t.Fatalf("in the container: %v %s", err, resp.GetStderr())
			}
			if got := strings.TrimSpace(string(resp.GetStdout())); got != tc.want {
				t.Errorf("container sees %q, want %q", got, tc.want)
			}
			_, err = os.Stat(e.d.NRISocket)
			if enabled := !slices.Contains(tc.args, "false"); enabled != (err == nil) {
				t.Errorf("NRI socket with nri-enable %v: %v", enabled, err)
			}
		})
	}
}
