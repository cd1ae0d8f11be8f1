package specgen

import (
	"maps"
	"path"
	"strings"

	specs "github.com/opencontainers/runtime-spec/specs-go"
	runtimeapi "k8s.io/cri-api/pkg/apis/runtime/v1"

	"github.com/noded-dev/noded/internal/errdefs"
)

// Sandbox defaults, containerd's: the pause process needs next to no CPU
// and should be the last thing the OOM killer picks.
const (
	sandboxCPUShares   = 2
	sandboxOOMScoreAdj = -998
	cgroupPrefix       = "noded"
)

// resources maps the request's limits. Zero means "not set" in CRI, so it
// leaves the field out. Swap is limited to the memory limit (no swap) when
// the request does not say and the controller can, as containerd does.
// Hugepage limits need the hugetlb controller and are dropped without it
// (containerd's tolerate_missing_hugetlb_controller default); unified
// entries exist only on cgroup v2.
// checkResources refuses values no cgroup takes, which would otherwise
// fail in the container's init with an error of no class (the kernel's
// write error): shares beyond cgroup v1's range, a CFS quota or period
// out of the kernel's bounds (µs), negative memory, oom_score_adj outside
// ±1000.
func checkResources(r *runtimeapi.LinuxContainerResources) error {
	if r == nil {
		return nil
	}
	switch {
	case r.GetCpuShares() < 0 || r.GetCpuShares() > 262144:
		return errdefs.InvalidArgument("cpu_shares %d is outside 0 to 262144", r.GetCpuShares())
	case r.GetCpuQuota() < -1 || r.GetCpuQuota() > 0 && r.GetCpuQuota() < 1000:
		return errdefs.InvalidArgument("cpu_quota %d: -1, 0 or at least 1000 (µs)", r.GetCpuQuota())
	case r.GetCpuPeriod() < 0 || r.GetCpuPeriod() > 0 && (r.GetCpuPeriod() < 1000 || r.GetCpuPeriod() > 1000000):
		return errdefs.InvalidArgument("cpu_period %d: 0 or 1000 to 1000000 (µs)", r.GetCpuPeriod())
	case r.GetMemoryLimitInBytes() < 0:
		return errdefs.InvalidArgument("memory_limit_in_bytes %d is negative", r.GetMemoryLimitInBytes())
	case r.GetMemorySwapLimitInBytes() < -1:
		return errdefs.InvalidArgument("memory_swap_limit_in_bytes %d: -1 or more", r.GetMemorySwapLimitInBytes())
	case r.GetOomScoreAdj() < -1000 || r.GetOomScoreAdj() > 1000:
		return errdefs.InvalidArgument("oom_score_adj %d is outside -1000 to 1000", r.GetOomScoreAdj())
	}
	return nil
}

func resources(r *runtimeapi.LinuxContainerResources, node *Node) *specs.LinuxResources {
	out := &specs.LinuxResources{}
	if r == nil {
		return out
	}
	out.CPU = cpuResources(r)
	out.Memory = memoryResources(r, node.SwapAccounting)
	if node.Hugetlb {
		for _, h := range r.GetHugepageLimits() {
			out.HugepageLimits = append(out.HugepageLimits, specs.LinuxHugepageLimit{Pagesize: h.GetPageSize(), Limit: h.GetLimit()})
		}
	}
	if node.CgroupV2 && len(r.GetUnified()) > 0 {
		out.Unified = maps.Clone(r.GetUnified())
	}
	return out
}

func cpuResources(r *runtimeapi.LinuxContainerResources) *specs.LinuxCPU {
	cpu := &specs.LinuxCPU{Cpus: r.GetCpusetCpus(), Mems: r.GetCpusetMems()}
	if v := uint64(r.GetCpuShares()); v != 0 {
		cpu.Shares = &v
	}
	if v := r.GetCpuQuota(); v != 0 {
		cpu.Quota = &v
	}
	if v := uint64(r.GetCpuPeriod()); v != 0 {
		cpu.Period = &v
	}
	if *cpu == (specs.LinuxCPU{}) {
		return nil
	}
	return cpu
}

func memoryResources(r *runtimeapi.LinuxContainerResources, swap bool) *specs.LinuxMemory {
	limit, swapLimit := r.GetMemoryLimitInBytes(), r.GetMemorySwapLimitInBytes()
	if limit == 0 && (swapLimit == 0 || !swap) {
		return nil
	}
	mem := &specs.LinuxMemory{}
	if limit != 0 {
		mem.Limit = &limit
		if swap && swapLimit == 0 {
			mem.Swap = &limit
		}
	}
	if swap && swapLimit != 0 {
		mem.Swap = &swapLimit
	}
	return mem
}

// oomScoreAdj validates adj and raises it to the node's floor: noded cannot
// give a process a lower score than its own without CAP_SYS_RESOURCE, and
// runc would fail to start it. As for capabilities, this is the only place
// the score is fitted to the host; the monitor's helper does not.
func oomScoreAdj(adj int64, node *Node) (*int, error) {
	if adj < -1000 || adj > 1000 {
		return nil, errdefs.InvalidArgument("oom_score_adj %d is outside [-1000, 1000]", adj)
	}
	v := max(int(adj), node.OOMScoreAdjMin)
	return &v, nil
}

// cgroupsPath places a container under its pod's cgroup. With cgroupfs it
// is "<parent>/<id>"; systemd wants runc's "slice:prefix:name" form, where
// the slice is the last element of the parent (the kubelet's systemd driver
// sends a slice name such as kubepods-besteffort-pod<uid>.slice).
func cgroupsPath(manager, parent, id string) (string, error) {
	switch manager {
	case "", CgroupfsManager:
		if parent == "" {
			parent = "/" + cgroupPrefix
		}
		if !strings.HasPrefix(parent, "/") {
			parent = "/" + parent
		}
		return path.Join(parent, id), nil
	case SystemdManager:
		slice := path.Base(parent)
		if parent == "" {
			slice = "system.slice"
		}
		if !strings.HasSuffix(slice, ".slice") {
			return "", errdefs.InvalidArgument("cgroup parent %q is not a systemd slice, as the systemd cgroup manager needs", parent)
		}
		return slice + ":" + cgroupPrefix + ":" + id, nil
	}
	return "", errdefs.InvalidArgument("unknown cgroup manager %q", manager)
}
