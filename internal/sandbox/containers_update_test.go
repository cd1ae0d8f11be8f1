package sandbox

import (
	"context"
	"errors"
	"fmt"
	"os"
	"path/filepath"
	"sync"
	"testing"

	runtimeapi "k8s.io/cri-api/pkg/apis/runtime/v1"

	"github.com/noded-dev/noded/internal/errdefs"
	"github.com/noded-dev/noded/internal/ids"
	"github.com/noded-dev/noded/internal/oci"
	"github.com/noded-dev/noded/internal/state"
)

// Update is the fakes' monitor update: it applies nothing (resizeMonitor
// stands in where a test looks at updates).
func (f *fakes) Update(context.Context, oci.PodID, oci.ContainerID) error { return nil }

// resizeMonitor is the fake monitor with an update that reads the
// bundle's memory limit as the real one would, and refuses one below
// usage as the helper does.
type resizeMonitor struct {
	*fakes
	mu      sync.Mutex
	usage   int64
	applied []int64 // the memory limit of each update, as the bundle had it
}

func (m *resizeMonitor) Update(_ context.Context, pod oci.PodID, id oci.ContainerID) error {
	m.mu.Lock()
	defer m.mu.Unlock()
	c, ok := m.ctrs[id]
	if !ok || c.Status == oci.StatusExited {
		return errdefs.FailedPrecondition("container %s is not running", id)
	}
	spec, err := readBundle(filepath.Join(m.dir, "pods", string(pod), "containers", string(id)))
	if err != nil {
		return err
	}
	limit := *spec.Linux.Resources.Memory.Limit
	if limit < m.usage {
		return errdefs.FailedPrecondition("memory limit %d is below the usage %d", limit, m.usage)
	}
	m.applied = append(m.applied, limit)
	return nil
}

func (m *resizeMonitor) updates() []int64 {
	m.mu.Lock()
	defer m.mu.Unlock()
	return append([]int64(nil), m.applied...)
}

// newResizeService is newTestService with resizeMonitor as the monitor,
// and a running container of 0.5 CPU and 64 MiB.
func newResizeService(t *testing.T, failAfter failHook) (*Services, *resizeMonitor, ids.ContainerID) {
	t.Helper()
	s, f := newTestService(t, failAfter)
	m := &resizeMonitor{fakes: f, usage: 20 << 20}
	s.Containers.o.Monitor = m // the services share one base
	ctx := context.Background()
	pod, err := s.Pods.RunPodSandbox(ctx, podConfig("resize"), "")
	if err != nil {
		t.Fatal(err)
	}
	cfg := containerConfig("app")
	cfg.Linux = &runtimeapi.LinuxContainerConfig{Resources: &runtimeapi.LinuxContainerResources{
		CpuShares: 512, CpuQuota: 50000, CpuPeriod: 100000, MemoryLimitInBytes: 64 << 20,
	}}
	id, err := s.Containers.CreateContainer(ctx, pod, cfg)
	if err != nil {
		t.Fatal(err)
	}
	if err := s.Containers.StartContainer(ctx, id); err != nil {
		t.Fatal(err)
	}
	return s, m, id
}

// statusResources is what ContainerStatus reports as applied.
func statusResources(t *testing.T, s *Services, id ids.ContainerID) *runtimeapi.LinuxContainerResources {
	t.Helper()
	st, _, err := s.Containers.ContainerStatus(id, false)
	if err != nil {
		t.Fatal(err)
	}
	return st.GetResources().GetLinux()
}

func bundleOf(t *testing.T, s *Services, id ids.ContainerID) []byte {
	t.Helper()
	c, err := s.Containers.o.Store.Container(id)
	if err != nil {
		t.Fatal(err)
	}
	b, err := os.ReadFile(filepath.Join(c.Bundle, "config.json"))
	if err != nil {
		t.Fatal(err)
	}
	return b
}

func cpuMem(r *runtimeapi.LinuxContainerResources) string {
	return fmt.Sprintf("shares=%d quota=%d period=%d memory=%d", r.GetCpuShares(), r.GetCpuQuota(), r.GetCpuPeriod(), r.GetMemoryLimitInBytes())
}

func TestUpdateContainerResources(t *testing.T) {
	s, m, id := newResizeService(t, nil)
	ctx := context.Background()
	const created = "shares=512 quota=50000 period=100000 memory=67108864"
	if got := cpuMem(statusResources(t, s, id)); got != created {
		t.Fatalf("status at create: %s, want %s", got, created)
	}
	for _, tc := range []struct {
		name string
		req  *runtimeapi.LinuxContainerResources
		want string
	}{
		{"up", &runtimeapi.LinuxContainerResources{CpuShares: 1024, CpuQuota: 100000, CpuPeriod: 100000, MemoryLimitInBytes: 128 << 20}, "shares=1024 quota=100000 period=100000 memory=134217728"},
		{"down, above usage", &runtimeapi.LinuxContainerResources{CpuShares: 256, CpuQuota: 25000, CpuPeriod: 100000, MemoryLimitInBytes: 32 << 20}, "shares=256 quota=25000 period=100000 memory=33554432"},
		{"cpu only", &runtimeapi.LinuxContainerResources{CpuQuota: 30000}, "shares=256 quota=30000 period=100000 memory=33554432"},
	} {
		t.Run(tc.name, func(t *testing.T) {
			if err := s.Containers.UpdateContainerResources(ctx, id, tc.req); err != nil {
				t.Fatal(err)
			}
			if got := cpuMem(statusResources(t, s, id)); got != tc.want {
				t.Errorf("status: %s, want %s", got, tc.want)
			}
			spec, err := readBundle(bundleDirOf(t, s, id))
			if err != nil {
				t.Fatal(err)
			}
			if got := cpuMem(resourcesStatus(&state.Container{Resources: spec.Linux.Resources}).GetLinux()); got != tc.want {
				t.Errorf("bundle: %s, want %s", got, tc.want)
			}
			if len(spec.Linux.Resources.Devices) == 0 {
				t.Error("the bundle lost its device rules")
			}
		})
	}
	if got, want := fmt.Sprint(m.updates()), "[134217728 33554432 33554432]"; got != want {
		t.Errorf("monitor updates with memory limits %s, want %s", got, want)
	}
}

func bundleDirOf(t *testing.T, s *Services, id ids.ContainerID) string {
	t.Helper()
	c, err := s.Containers.o.Store.Container(id)
	if err != nil {
		t.Fatal(err)
	}
	return c.Bundle
}

// A refused update, by the monitor (below usage) or by the checks, leaves
// the bundle byte for byte, the record and the status as they were.
func TestUpdateContainerResourcesRefused(t *testing.T) {
	ctx := context.Background()
	for _, tc := range []struct {
		name  string
		id    func(ids.ContainerID) ids.ContainerID
		req   *runtimeapi.LinuxContainerResources
		class error
	}{
		{"memory below usage", nil, &runtimeapi.LinuxContainerResources{MemoryLimitInBytes: 4 << 20, CpuQuota: 20000}, errdefs.ErrFailedPrecondition},
		{"out of range", nil, &runtimeapi.LinuxContainerResources{CpuShares: -1}, errdefs.ErrInvalidArgument},
		{"unified on cgroup v1", nil, &runtimeapi.LinuxContainerResources{Unified: map[string]string{"memory.high": "1"}}, errdefs.ErrInvalidArgument},
		{"unknown container", func(ids.ContainerID) ids.ContainerID { return ids.NewContainerID() }, &runtimeapi.LinuxContainerResources{CpuQuota: 20000}, errdefs.ErrNotFound},
	} {
		t.Run(tc.name, func(t *testing.T) {
			s, m, id := newResizeService(t, nil)
			target := id
			if tc.id != nil {
				target = tc.id(id)
			}
			bundle, before := bundleOf(t, s, id), cpuMem(statusResources(t, s, id))
			err := s.Containers.UpdateContainerResources(ctx, target, tc.req)
			if !errors.Is(err, tc.class) {
				t.Fatalf("err = %v, want %v", err, tc.class)
			}
			if string(bundleOf(t, s, id)) != string(bundle) {
				t.Error("the bundle changed")
			}
			if after := cpuMem(statusResources(t, s, id)); after != before {
				t.Errorf("status changed: %s, was %s", after, before)
			}
			if u := m.updates(); len(u) != 0 {
				t.Errorf("applied: %v", u)
			}
		})
	}
}

// A failure after the monitor applied the new values puts the old ones
// back: in the bundle, and through the monitor in the cgroups.
func TestUpdateContainerResourcesRollback(t *testing.T) {
	fail := errors.New("injected")
	s, m, id := newResizeService(t, func(step string) error {
		if step == "update-apply" {
			return fail
		}
		return nil
	})
	bundle := bundleOf(t, s, id)
	err := s.Containers.UpdateContainerResources(context.Background(), id, &runtimeapi.LinuxContainerResources{MemoryLimitInBytes: 128 << 20})
	if !errors.Is(err, fail) {
		t.Fatalf("err = %v", err)
	}
	if string(bundleOf(t, s, id)) != string(bundle) {
		t.Error("the bundle was not restored")
	}
	if got, want := fmt.Sprint(m.updates()), "[134217728 67108864]"; got != want {
		t.Errorf("monitor updates %s, want %s (the new limit, then the old one back)", got, want)
	}
	if got := statusResources(t, s, id).GetMemoryLimitInBytes(); got != 64<<20 {
		t.Errorf("status memory %d", got)
	}
}

// An exited container gets the new values in its bundle and record only,
// as containerd updates only the spec of a container without a task.
func TestUpdateExitedContainer(t *testing.T) {
	s, m, id := newResizeService(t, nil)
	ctx := context.Background()
	if err := s.Containers.StopContainer(ctx, id, 0); err != nil {
		t.Fatal(err)
	}
	if err := s.Containers.UpdateContainerResources(ctx, id, &runtimeapi.LinuxContainerResources{MemoryLimitInBytes: 128 << 20}); err != nil {
		t.Fatal(err)
	}
	if got := statusResources(t, s, id).GetMemoryLimitInBytes(); got != 128<<20 {
		t.Errorf("status memory %d", got)
	}
	if u := m.updates(); len(u) != 0 {
		t.Errorf("applied to an exited container: %v", u)
	}
}

// A record written before noded kept resources reports its bundle's.
func TestResourcesStatusOfLegacyRecord(t *testing.T) {
	s, _, id := newResizeService(t, nil)
	c, err := s.Containers.o.Store.Container(id)
	if err != nil {
		t.Fatal(err)
	}
	c.Resources, c.OOMScoreAdj = nil, nil
	if got, want := cpuMem(resourcesStatus(c).GetLinux()), "shares=512 quota=50000 period=100000 memory=67108864"; got != want {
		t.Errorf("legacy status %s, want %s", got, want)
	}
}

func TestUpdatePodSandboxResources(t *testing.T) {
	s, _ := newTestService(t, nil)
	ctx := context.Background()
	pod, err := s.Pods.RunPodSandbox(ctx, podConfig("p"), "")
	if err != nil {
		t.Fatal(err)
	}
	overhead := &runtimeapi.LinuxContainerResources{CpuShares: 10, MemoryLimitInBytes: 1 << 20}
	total := &runtimeapi.LinuxContainerResources{CpuShares: 1024, CpuQuota: 100000, CpuPeriod: 100000, MemoryLimitInBytes: 256 << 20}
	if err := s.Pods.UpdatePodSandboxResources(ctx, pod, overhead, total); err != nil {
		t.Fatal(err)
	}
	rec, err := s.Pods.o.Store.Sandbox(pod)
	if err != nil {
		t.Fatal(err)
	}
	if *rec.Overhead.Memory.Limit != 1<<20 || *rec.Resources.CPU.Quota != 100000 || *rec.Resources.Memory.Limit != 256<<20 {
		t.Errorf("recorded overhead %+v resources %+v", rec.Overhead, rec.Resources)
	}
	if err := s.Pods.UpdatePodSandboxResources(ctx, pod, nil, &runtimeapi.LinuxContainerResources{CpuQuota: 5}); !errdefs.IsInvalidArgument(err) {
		t.Errorf("bad quota: %v", err)
	}
	if err := s.Pods.UpdatePodSandboxResources(ctx, ids.NewSandboxID(), nil, total); !errdefs.IsNotFound(err) {
		t.Errorf("unknown pod: %v", err)
	}
}
