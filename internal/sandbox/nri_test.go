package sandbox

import (
	"context"
	"errors"
	"fmt"
	"slices"
	"sync"
	"syscall"
	"testing"
	"time"

	specs "github.com/opencontainers/runtime-spec/specs-go"
	runtimeapi "k8s.io/cri-api/pkg/apis/runtime/v1"

	"github.com/noded-dev/noded/internal/ids"
	"github.com/noded-dev/noded/internal/state"
)

// fakeNRI records the hooks the flows call and what the services show
// while each runs: the contracts of the NRI plugins' view.
type fakeNRI struct {
	s *Services

	mu        sync.Mutex
	calls     []string
	problems  []string
	failRun   error
	failCreat error
	stopped   chan string
}

func (f *fakeNRI) call(format string, args ...any) {
	f.mu.Lock()
	defer f.mu.Unlock()
	f.calls = append(f.calls, fmt.Sprintf(format, args...))
}

func (f *fakeNRI) problem(format string, args ...any) {
	f.mu.Lock()
	defer f.mu.Unlock()
	f.problems = append(f.problems, fmt.Sprintf(format, args...))
}

func (f *fakeNRI) seen() ([]string, []string) {
	f.mu.Lock()
	defer f.mu.Unlock()
	return slices.Clone(f.calls), slices.Clone(f.problems)
}

func (f *fakeNRI) BlockSync() func() { return func() {} }

func (f *fakeNRI) RunPodSandbox(_ context.Context, pod *state.Sandbox) error {
	f.call("RunPodSandbox %s", pod.Config.GetMetadata().GetName())
	if _, _, err := f.s.Pods.PodSandboxStatus(pod.ID, false); err == nil || len(f.s.Pods.ListPodSandbox(nil)) != 0 {
		f.problem("pod %s visible during its RunPodSandbox hook", pod.ID.Short())
	}
	if pod.PausePID == 0 {
		f.problem("RunPodSandbox hook before the pause runs")
	}
	err := f.failRun
	f.failRun = nil
	return err
}

func (f *fakeNRI) StopPodSandbox(_ context.Context, pod *state.Sandbox) {
	f.call("StopPodSandbox %s", pod.Config.GetMetadata().GetName())
	if _, _, err := f.s.Pods.PodSandboxStatus(pod.ID, false); err != nil {
		f.problem("pod gone during its StopPodSandbox hook: %v", err)
	}
	for _, c := range f.s.Containers.ListContainers(&runtimeapi.ContainerFilter{PodSandboxId: string(pod.ID)}) {
		if c.GetState() != runtimeapi.ContainerState_CONTAINER_EXITED {
			f.problem("container %s is %s during StopPodSandbox", c.GetMetadata().GetName(), c.GetState())
		}
	}
}

func (f *fakeNRI) RemovePodSandbox(_ context.Context, pod *state.Sandbox) {
	f.call("RemovePodSandbox %s", pod.Config.GetMetadata().GetName())
}

func (f *fakeNRI) CreateContainer(_ context.Context, _ *state.Sandbox, c *state.Container, spec *specs.Spec) error {
	f.call("CreateContainer %s", c.Config.GetMetadata().GetName())
	if _, _, err := f.s.Containers.ContainerStatus(c.ID, false); err == nil || len(f.s.Containers.ListContainers(nil)) != 0 {
		f.problem("container %s visible during its CreateContainer hook", c.ID.Short())
	}
	err := f.failCreat
	f.failCreat = nil
	if err == nil {
		spec.Process.Env = append(spec.Process.Env, "FROM_NRI=1")
	}
	return err
}

func (f *fakeNRI) PostCreateContainer(_ context.Context, _ *state.Sandbox, c *state.Container) {
	f.call("PostCreateContainer %s", c.Config.GetMetadata().GetName())
}

func (f *fakeNRI) StartContainer(_ context.Context, _ *state.Sandbox, c *state.Container) error {
	f.call("StartContainer %s", c.Config.GetMetadata().GetName())
	return nil
}

func (f *fakeNRI) PostStartContainer(_ context.Context, _ *state.Sandbox, c *state.Container) {
	f.call("PostStartContainer %s", c.Config.GetMetadata().GetName())
}

func (f *fakeNRI) UpdateContainer(_ context.Context, _ *state.Sandbox, c *state.Container, r *runtimeapi.LinuxContainerResources) (*runtimeapi.LinuxContainerResources, error) {
	f.call("UpdateContainer %s", c.Config.GetMetadata().GetName())
	// The plugin halves the CPU shares asked for.
	return &runtimeapi.LinuxContainerResources{CpuShares: r.GetCpuShares() / 2}, nil
}

func (f *fakeNRI) PostUpdateContainer(_ context.Context, _ *state.Sandbox, c *state.Container) {
	f.call("PostUpdateContainer %s", c.Config.GetMetadata().GetName())
}

func (f *fakeNRI) StopContainer(_ context.Context, _ *state.Sandbox, c *state.Container) {
	if c.State != state.ContainerExited {
		f.problem("StopContainer hook for %s in state %s", c.Config.GetMetadata().GetName(), c.State)
	}
	// Called by each path that sees the exit; told once (as internal/nri
	// does).
	calls, _ := f.seen()
	if slices.Contains(calls, "StopContainer "+c.Config.GetMetadata().GetName()) {
		return
	}
	f.call("StopContainer %s", c.Config.GetMetadata().GetName())
	if f.stopped != nil {
		f.stopped <- c.Config.GetMetadata().GetName()
	}
}

func (f *fakeNRI) RemoveContainer(_ context.Context, _ *state.Sandbox, c *state.Container) {
	f.call("RemoveContainer %s", c.Config.GetMetadata().GetName())
}

func newNRITestService(t *testing.T) (*Services, *fakes, *fakeNRI) {
	s, f := newTestService(t, nil)
	n := &fakeNRI{s: s, stopped: make(chan string, 16)}
	s.Pods.o.NRI = n // one base: every service sees it
	return s, f, n
}

// TestNRIHooks: each flow calls its NRI hook at the point the plugins'
// contracts need (nothing visible during a creation's hook, workload
// stopped and pod inspectable during StopPodSandbox, stop told once even
// for a container that exits by itself), an adjusted spec is the one
// written, a plugin's change of an update is what is applied, and a
// refusing hook fails the creation with nothing left and a working retry.
func TestNRIHooks(t *testing.T) {
	ctx := context.Background()

	t.Run("lifecycle", func(t *testing.T) {
		s, _, n := newNRITestService(t)
		pod, err := s.Pods.RunPodSandbox(ctx, podConfig("p"), "")
		if err != nil {
			t.Fatal(err)
		}
		ctr, err := s.Containers.CreateContainer(ctx, pod, containerConfig("c"))
		if err != nil {
			t.Fatal(err)
		}
		c, _ := s.Containers.o.Store.Container(ctr)
		spec, err := readBundle(c.Bundle)
		if err != nil || !slices.Contains(spec.Process.Env, "FROM_NRI=1") {
			t.Fatalf("bundle env %v, %v: want the plugin's variable", spec.Process.Env, err)
		}
		if err := s.Containers.StartContainer(ctx, ctr); err != nil {
			t.Fatal(err)
		}
		if err := s.Containers.UpdateContainerResources(ctx, ctr, &runtimeapi.LinuxContainerResources{CpuShares: 512}); err != nil {
			t.Fatal(err)
		}
		if st, _, _ := s.Containers.ContainerStatus(ctr, false); st.GetResources().GetLinux().GetCpuShares() != 256 {
			t.Errorf("cpu_shares = %d, want the plugin's 256", st.GetResources().GetLinux().GetCpuShares())
		}
		for range 2 {
			if err := s.Pods.StopPodSandbox(ctx, pod); err != nil {
				t.Fatal(err)
			}
		}
		if err := s.Pods.RemovePodSandbox(ctx, pod); err != nil {
			t.Fatal(err)
		}
		calls, problems := n.seen()
		want := []string{
			"RunPodSandbox p", "CreateContainer c", "PostCreateContainer c", "StartContainer c", "PostStartContainer c",
			"UpdateContainer c", "PostUpdateContainer c", "StopContainer c", "StopPodSandbox p", "RemoveContainer c", "RemovePodSandbox p",
		}
		if !slices.Equal(calls, want) {
			t.Errorf("hooks:\n got %q\nwant %q", calls, want)
		}
		if len(problems) > 0 {
			t.Errorf("contracts broken: %q", problems)
		}
	})

	t.Run("an exit by itself is told", func(t *testing.T) {
		s, f, n := newNRITestService(t)
		pod, err := s.Pods.RunPodSandbox(ctx, podConfig("p"), "")
		if err != nil {
			t.Fatal(err)
		}
		ctr, err := s.Containers.CreateContainer(ctx, pod, containerConfig("c"))
		if err != nil {
			t.Fatal(err)
		}
		if err := s.Containers.StartContainer(ctx, ctr); err != nil {
			t.Fatal(err)
		}
		// The process ends on its own: the exit watcher records it.
		if err := f.Kill(ctx, pod, ctr, syscall.SIGKILL); err != nil {
			t.Fatal(err)
		}
		select {
		case name := <-n.stopped:
			if name != "c" {
				t.Fatalf("StopContainer for %q", name)
			}
		case <-time.After(10 * time.Second):
			t.Fatal("no StopContainer hook after the exit")
		}
		if _, problems := n.seen(); len(problems) > 0 {
			t.Errorf("contracts broken: %q", problems)
		}
	})

	t.Run("a pod whose pause died is told at its stop", func(t *testing.T) {
		s, _, n := newNRITestService(t)
		pod, err := s.Pods.RunPodSandbox(ctx, podConfig("p"), "")
		if err != nil {
			t.Fatal(err)
		}
		// As the pause watcher (or a restart's recovery) leaves it.
		if _, err := s.Pods.o.Store.UpdateSandbox(pod, func(r *state.Sandbox) error {
			r.State = state.SandboxUnknown
			return nil
		}); err != nil {
			t.Fatal(err)
		}
		if err := s.Pods.StopPodSandbox(ctx, pod); err != nil {
			t.Fatal(err)
		}
		if calls, _ := n.seen(); !slices.Contains(calls, "StopPodSandbox p") {
			t.Errorf("hooks %q: no StopPodSandbox for the pod whose pause died", calls)
		}
	})

	t.Run("a refused RunPodSandbox leaves nothing", func(t *testing.T) {
		s, f, n := newNRITestService(t)
		n.failRun = errors.New("refused")
		if _, err := s.Pods.RunPodSandbox(ctx, podConfig("p"), ""); err == nil || !contains(err.Error(), "refused") {
			t.Fatalf("RunPodSandbox = %v, want the refusal", err)
		}
		if held := f.held(); len(held) != 0 {
			t.Fatalf("left behind: %v", held)
		}
		if calls, _ := n.seen(); !slices.Contains(calls, "RemovePodSandbox p") {
			t.Errorf("plugins not told the refused pod is gone: %q", calls)
		}
		if _, err := s.Pods.RunPodSandbox(ctx, podConfig("p"), ""); err != nil {
			t.Fatalf("retry: %v", err)
		}
	})

	t.Run("a refused CreateContainer leaves nothing", func(t *testing.T) {
		s, f, n := newNRITestService(t)
		pod, err := s.Pods.RunPodSandbox(ctx, podConfig("p"), "")
		if err != nil {
			t.Fatal(err)
		}
		before := f.held()
		n.failCreat = errors.New("refused")
		if _, err := s.Containers.CreateContainer(ctx, pod, containerConfig("c")); err == nil || !contains(err.Error(), "refused") {
			t.Fatalf("CreateContainer = %v, want the refusal", err)
		}
		if held := f.held(); fmt.Sprint(held) != fmt.Sprint(before) {
			t.Fatalf("left behind: %v (before: %v)", held, before)
		}
		if _, err := s.Containers.CreateContainer(ctx, pod, containerConfig("c")); err != nil {
			t.Fatalf("retry: %v", err)
		}
	})

	t.Run("a plugin's update and eviction", func(t *testing.T) {
		s, _, _ := newNRITestService(t)
		pod, err := s.Pods.RunPodSandbox(ctx, podConfig("p"), "")
		if err != nil {
			t.Fatal(err)
		}
		ctr, err := s.Containers.CreateContainer(ctx, pod, containerConfig("c"))
		if err != nil {
			t.Fatal(err)
		}
		if err := s.Containers.StartContainer(ctx, ctr); err != nil {
			t.Fatal(err)
		}
		// Applied as asked: the plugins are not asked again.
		if err := s.Containers.UpdateResources(ctx, ctr, &runtimeapi.LinuxContainerResources{CpuShares: 300}); err != nil {
			t.Fatal(err)
		}
		if st, _, _ := s.Containers.ContainerStatus(ctr, false); st.GetResources().GetLinux().GetCpuShares() != 300 {
			t.Errorf("cpu_shares = %d, want 300", st.GetResources().GetLinux().GetCpuShares())
		}
		if err := s.Containers.Evict(ctx, ctr, "test"); err != nil {
			t.Fatal(err)
		}
		if st, _, _ := s.Containers.ContainerStatus(ctr, false); st.GetState() != runtimeapi.ContainerState_CONTAINER_EXITED {
			t.Errorf("evicted container is %s", st.GetState())
		}
		if err := s.Containers.Evict(ctx, ids.ContainerID("nope"), "test"); err == nil {
			t.Error("evicting an unknown container succeeded")
		}
	})
}
