//go:build integration

package integration

import (
	"context"
	"encoding/json"
	"fmt"
	"os"
	"path/filepath"
	"strconv"
	"strings"
	"testing"

	"golang.org/x/sys/unix"
	"google.golang.org/grpc/codes"
	"google.golang.org/grpc/status"
	runtimeapi "k8s.io/cri-api/pkg/apis/runtime/v1"

	"github.com/noded-dev/noded/internal/oci/runclayout"
	"github.com/noded-dev/noded/internal/oci/wire"
)

// limits is what a resize sets and what the test reads back, from the
// cgroup files, ContainerStatus and libcontainer's state.
type limits struct {
	shares, quota, period, memory int64
}

func (l limits) cri() *runtimeapi.LinuxContainerResources {
	return &runtimeapi.LinuxContainerResources{CpuShares: l.shares, CpuQuota: l.quota, CpuPeriod: l.period, MemoryLimitInBytes: l.memory}
}

func (l limits) String() string {
	return fmt.Sprintf("shares=%d quota=%d period=%d memory=%d", l.shares, l.quota, l.period, l.memory)
}

// cgroupFiles reads a container's limits from its cgroups: on v1 from each
// hierarchy (cpu.shares, cpu.cfs_quota_us, cpu.cfs_period_us,
// memory.limit_in_bytes, and memory.memsw.limit_in_bytes, which noded
// keeps at the memory limit: no swap); on v2 from cpu.max and memory.max
// (cpu.weight is a conversion of the shares, not compared).
func cgroupFiles(t *testing.T, cgroupsPath string, want limits) limits {
	t.Helper()
	read := func(parts ...string) string {
		b, err := os.ReadFile(filepath.Join(append([]string{"/sys/fs/cgroup"}, parts...)...))
		if err != nil {
			t.Fatal(err)
		}
		return strings.TrimSpace(string(b))
	}
	num := func(s string) int64 {
		n, err := strconv.ParseInt(s, 10, 64)
		if err != nil {
			t.Fatalf("cgroup value %q: %v", s, err)
		}
		return n
	}
	var st unix.Statfs_t
	if err := unix.Statfs("/sys/fs/cgroup", &st); err != nil {
		t.Fatal(err)
	}
	if st.Type == unix.CGROUP2_SUPER_MAGIC {
		q, p, _ := strings.Cut(read(cgroupsPath, "cpu.max"), " ")
		return limits{shares: want.shares, quota: num(q), period: num(p), memory: num(read(cgroupsPath, "memory.max"))}
	}
	got := limits{
		shares: num(read("cpu", cgroupsPath, "cpu.shares")),
		quota:  num(read("cpu", cgroupsPath, "cpu.cfs_quota_us")),
		period: num(read("cpu", cgroupsPath, "cpu.cfs_period_us")),
		memory: num(read("memory", cgroupsPath, "memory.limit_in_bytes")),
	}
	if _, err := os.Stat(filepath.Join("/sys/fs/cgroup/memory", cgroupsPath, "memory.memsw.limit_in_bytes")); err == nil {
		if sw := num(read("memory", cgroupsPath, "memory.memsw.limit_in_bytes")); sw != got.memory {
			t.Errorf("memory+swap limit %d, memory limit %d: want no swap", sw, got.memory)
		}
	}
	return got
}

// libcontainerState reads the limits libcontainer's state.json holds for
// the container (what it would apply again): they must follow a resize.
func libcontainerState(t *testing.T, runDir, pod, ctr string) limits {
	t.Helper()
	b, err := os.ReadFile(runclayout.StatePath(wire.MonitorDir(filepath.Join(runDir, "oci"), pod), ctr))
	if err != nil {
		t.Fatal(err)
	}
	var st struct {
		Config struct {
			Cgroups struct {
				Memory    int64 `json:"memory"`
				CPUShares int64 `json:"cpu_shares"`
				CPUQuota  int64 `json:"cpu_quota"`
				CPUPeriod int64 `json:"cpu_period"`
			} `json:"cgroups"`
		} `json:"config"`
	}
	if err := json.Unmarshal(b, &st); err != nil {
		t.Fatal(err)
	}
	c := st.Config.Cgroups
	return limits{shares: c.CPUShares, quota: c.CPUQuota, period: c.CPUPeriod, memory: c.Memory}
}

func statusLimits(t *testing.T, rt runtimeapi.RuntimeServiceClient, ctr string) limits {
	t.Helper()
	st, err := rt.ContainerStatus(context.Background(), &runtimeapi.ContainerStatusRequest{ContainerId: ctr})
	if err != nil {
		t.Fatal(err)
	}
	r := st.GetStatus().GetResources().GetLinux()
	if r == nil {
		t.Fatalf("ContainerStatus has no resources: %v", st.GetStatus())
	}
	return limits{shares: r.GetCpuShares(), quota: r.GetCpuQuota(), period: r.GetCpuPeriod(), memory: r.GetMemoryLimitInBytes()}
}

// A running container is resized up and down (CPU and memory): each call
// returns with the cgroup files, ContainerStatus and libcontainer's state
// holding the new values; a memory limit below the container's usage is
// refused and changes nothing; after noded is killed and restarted
// ContainerStatus still reports the applied values and a resize still
// works.
func TestResizeRunningContainer(t *testing.T) {
	e := newPodEnv(t)
	ctx := context.Background()
	created := limits{shares: 512, quota: 50000, period: 100000, memory: 64 << 20}
	pcfg, podID, ctr := e.resizable(t, "resize", created)
	runDir := filepath.Join(e.d.Dir, "run")
	check := func(t *testing.T, want limits) {
		t.Helper()
		e.checkLimits(t, pcfg, podID, ctr, want)
	}
	update := func(l limits) error {
		_, err := e.rt.UpdateContainerResources(ctx, &runtimeapi.UpdateContainerResourcesRequest{ContainerId: ctr, Linux: l.cri()})
		return err
	}
	t.Run("created", func(t *testing.T) { check(t, created) })

	down := limits{shares: 256, quota: 25000, period: 100000, memory: 32 << 20}
	for _, tc := range []struct {
		name string
		to   limits
	}{
		{"up", limits{shares: 1024, quota: 150000, period: 100000, memory: 128 << 20}},
		{"down", down},
	} {
		t.Run(tc.name, func(t *testing.T) {
			if err := update(tc.to); err != nil {
				t.Fatalf("UpdateContainerResources: %v\n%s", err, e.d.Log)
			}
			check(t, tc.to)
		})
	}

	t.Run("below usage changes nothing", func(t *testing.T) {
		// 8 MiB in the pod's /dev/shm (tmpfs), charged to the container.
		if r, err := e.exec(t, ctr, 30, "sh", "-c", "head -c 8388608 /dev/zero > /dev/shm/fill"); err != nil || r.GetExitCode() != 0 {
			t.Fatalf("filling memory: %v %v", r, err)
		}
		err := update(limits{shares: 300, quota: 30000, period: 100000, memory: 4 << 20})
		if status.Code(err) != codes.FailedPrecondition || !strings.Contains(err.Error(), "usage") {
			t.Fatalf("limit below usage: %v, want FailedPrecondition naming the usage", err)
		}
		t.Logf("refused: %v", err)
		check(t, down)
	})

	t.Run("bad input", func(t *testing.T) {
		_, err := e.rt.UpdateContainerResources(ctx, &runtimeapi.UpdateContainerResourcesRequest{ContainerId: "0123456789abcdef", Linux: down.cri()})
		if status.Code(err) != codes.NotFound {
			t.Errorf("unknown container: %v, want NotFound", err)
		}
		_, err = e.rt.UpdateContainerResources(ctx, &runtimeapi.UpdateContainerResourcesRequest{ContainerId: ctr, Linux: &runtimeapi.LinuxContainerResources{CpuQuota: 5}})
		if status.Code(err) != codes.InvalidArgument {
			t.Errorf("quota of 5 µs: %v, want InvalidArgument", err)
		}
		check(t, down)
	})

	t.Run("pod resources are recorded", func(t *testing.T) {
		_, err := e.rt.UpdatePodSandboxResources(ctx, &runtimeapi.UpdatePodSandboxResourcesRequest{
			PodSandboxId: podID, Resources: down.cri(), Overhead: &runtimeapi.LinuxContainerResources{CpuShares: 10},
		})
		if err != nil {
			t.Fatal(err)
		}
	})

	t.Run("created, not started", func(t *testing.T) {
		c, err := e.rt.CreateContainer(ctx, &runtimeapi.CreateContainerRequest{
			PodSandboxId: podID, SandboxConfig: pcfg,
			Config: &runtimeapi.ContainerConfig{
				Metadata: &runtimeapi.ContainerMetadata{Name: "later"},
				Image:    &runtimeapi.ImageSpec{Image: busyboxImage},
				Command:  []string{"sleep", "3600"},
				Linux:    &runtimeapi.LinuxContainerConfig{Resources: created.cri()},
			},
		})
		if err != nil {
			t.Fatal(err)
		}
		later := c.GetContainerId()
		want := limits{shares: 2048, quota: 200000, period: 100000, memory: 96 << 20}
		if _, err := e.rt.UpdateContainerResources(ctx, &runtimeapi.UpdateContainerResourcesRequest{ContainerId: later, Linux: want.cri()}); err != nil {
			t.Fatalf("UpdateContainerResources of a created container: %v\n%s", err, e.d.Log)
		}
		if _, err := e.rt.StartContainer(ctx, &runtimeapi.StartContainerRequest{ContainerId: later}); err != nil {
			t.Fatal(err)
		}
		path := pcfg.GetLinux().GetCgroupParent() + "/" + later
		if got := cgroupFiles(t, path, want); got != want {
			t.Errorf("cgroup files after the start: %v, want %v", got, want)
		}
		if got := statusLimits(t, e.rt, later); got != want {
			t.Errorf("ContainerStatus: %v, want %v", got, want)
		}
		if got := libcontainerState(t, runDir, podID, later); got != want {
			t.Errorf("libcontainer state: %v, want %v", got, want)
		}
	})

	// The new daemon stops at cleanup before the first one's pod removal
	// would run: remove the pods through it.
	e.d.Kill(t)
	d2 := e.d.Restart(t)
	e.d, e.rt = d2, d2.Runtime(t)
	t.Cleanup(func() { e.removeAll(t) })
	t.Run("after a restart", func(t *testing.T) {
		check(t, down)
		again := limits{shares: 512, quota: 40000, period: 50000, memory: 48 << 20}
		if err := update(again); err != nil {
			t.Fatalf("UpdateContainerResources after the restart: %v\n%s", err, e.d.Log)
		}
		check(t, again)
	})

	t.Run("exited: the record only", func(t *testing.T) {
		if _, err := e.rt.StopContainer(ctx, &runtimeapi.StopContainerRequest{ContainerId: ctr}); err != nil {
			t.Fatal(err)
		}
		last := limits{shares: 128, quota: 10000, period: 100000, memory: 16 << 20}
		if err := update(last); err != nil {
			t.Fatalf("UpdateContainerResources of an exited container: %v", err)
		}
		if got := statusLimits(t, e.rt, ctr); got != last {
			t.Errorf("ContainerStatus: %v, want %v", got, last)
		}
	})
}

// resizable starts a pod with a container of the given limits running
// sleep; it returns the pod's config and ID and the container's ID.
func (e *podEnv) resizable(t *testing.T, name string, l limits) (*runtimeapi.PodSandboxConfig, string, string) {
	t.Helper()
	ctx := context.Background()
	pcfg := e.podConfig(name)
	if err := os.MkdirAll(pcfg.LogDirectory, 0o755); err != nil {
		t.Fatal(err)
	}
	pod, err := e.rt.RunPodSandbox(ctx, &runtimeapi.RunPodSandboxRequest{Config: pcfg})
	if err != nil {
		t.Fatalf("RunPodSandbox: %v\n%s", err, e.d.Log)
	}
	c, err := e.rt.CreateContainer(ctx, &runtimeapi.CreateContainerRequest{
		PodSandboxId: pod.GetPodSandboxId(), SandboxConfig: pcfg,
		Config: &runtimeapi.ContainerConfig{
			Metadata: &runtimeapi.ContainerMetadata{Name: "app"},
			Image:    &runtimeapi.ImageSpec{Image: busyboxImage},
			Command:  []string{"sleep", "3600"},
			LogPath:  "app.log",
			Linux:    &runtimeapi.LinuxContainerConfig{Resources: l.cri()},
		},
	})
	if err != nil {
		t.Fatalf("CreateContainer: %v\n%s", err, e.d.Log)
	}
	if _, err := e.rt.StartContainer(ctx, &runtimeapi.StartContainerRequest{ContainerId: c.GetContainerId()}); err != nil {
		t.Fatalf("StartContainer: %v\n%s", err, e.d.Log)
	}
	return pcfg, pod.GetPodSandboxId(), c.GetContainerId()
}

// checkLimits compares the container's cgroup files, ContainerStatus and
// libcontainer state with want.
func (e *podEnv) checkLimits(t *testing.T, pcfg *runtimeapi.PodSandboxConfig, pod, ctr string, want limits) {
	t.Helper()
	if got := cgroupFiles(t, pcfg.GetLinux().GetCgroupParent()+"/"+ctr, want); got != want {
		t.Errorf("cgroup files: %v, want %v", got, want)
	}
	if got := statusLimits(t, e.rt, ctr); got != want {
		t.Errorf("ContainerStatus: %v, want %v", got, want)
	}
	if got := libcontainerState(t, filepath.Join(e.d.Dir, "run"), pod, ctr); got != want {
		t.Errorf("libcontainer state: %v, want %v", got, want)
	}
}

// TestKilledResize kills noded (its failpoints build) right after each
// step of UpdateContainerResources (the bundle rewritten; the cgroups
// written), restarts it and replays the kubelet's retry: until the retry,
// ContainerStatus reports the old limits (the record is written last, so
// the kubelet sees the resize as not done and retries), and the retry
// applies the new ones everywhere.
func TestKilledResize(t *testing.T) {
	bin := failpointsBin(t)
	e := newPodEnv(t)
	pt := t // daemons started in a subtest must outlive it
	ctx := context.Background()
	old := limits{shares: 512, quota: 50000, period: 100000, memory: 64 << 20}
	for i, step := range []string{"update-bundle", "update-apply"} {
		t.Run(step, func(t *testing.T) {
			e.removed = false
			pcfg, pod, ctr := e.resizable(t, fmt.Sprintf("killresize%d", i), old)
			next := limits{shares: 1024, quota: 80000, period: 100000, memory: 96 << 20}
			req := &runtimeapi.UpdateContainerResourcesRequest{ContainerId: ctr, Linux: next.cri()}
			e.killedAt(t, pt, bin, step, func(rt runtimeapi.RuntimeServiceClient) error {
				_, err := rt.UpdateContainerResources(ctx, req)
				return err
			})
			if got := statusLimits(t, e.rt, ctr); got != old {
				t.Errorf("ContainerStatus after the kill: %v, want the old %v", got, old)
			}
			if _, err := e.rt.UpdateContainerResources(ctx, req); err != nil {
				t.Fatalf("retry: %v\n%s", err, e.d.Log)
			}
			e.checkLimits(t, pcfg, pod, ctr, next)
			e.removeAll(t)
		})
	}
}
