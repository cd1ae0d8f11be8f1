// Package resize maps between the CRI's container resources and an OCI
// spec's linux.resources for in-place resizing: Merge applies what an
// UpdateContainerResources request asks for to a container's current
// resources, and CRI reports resources back as ContainerStatus.resources,
// which the kubelet reads after a resize to see what is applied.
//
// The rules follow the spec generator's (internal/specgen, which follows
// containerd's): zero in a request means "not set" and leaves the current
// value; swap is limited to the memory limit when the request does not say
// and the controller can; hugepage limits need the hugetlb controller and
// are dropped without it. Unified (cgroup v2) entries are kept on v2; on
// v1 the few with an exact v1 equivalent are mapped (unifiedV1) and any
// other is refused, as runc refuses any unified entry on v1.
package resize

import (
	"encoding/json"
	"fmt"
	"maps"
	"slices"
	"strconv"
	"strings"

	"github.com/opencontainers/cgroups"
	specs "github.com/opencontainers/runtime-spec/specs-go"
	runtimeapi "k8s.io/cri-api/pkg/apis/runtime/v1"
	"k8s.io/utils/cpuset"

	"github.com/noded-dev/noded/internal/errdefs"
	"github.com/noded-dev/noded/internal/specgen"
)

// Check refuses a request no cgroup takes before anything is changed: the
// spec generator's bounds (shares, CFS quota and period, negative memory,
// oom_score_adj) and cpuset lists that do not parse. A nil request is
// fine (nothing to change).
func Check(r *runtimeapi.LinuxContainerResources) error {
	if r == nil {
		return nil
	}
	// The same bounds as a CreateContainer's resources: one set of rules.
	if err := specgen.CheckContainerConfig(&runtimeapi.ContainerConfig{
		Linux: &runtimeapi.LinuxContainerConfig{Resources: r},
	}); err != nil {
		return err
	}
	for field, list := range map[string]string{"cpuset_cpus": r.GetCpusetCpus(), "cpuset_mems": r.GetCpusetMems()} {
		if _, err := cpuset.Parse(list); err != nil {
			return errdefs.InvalidArgument("%s %q: %v", field, list, err)
		}
	}
	for _, h := range r.GetHugepageLimits() {
		if h.GetPageSize() == "" {
			return errdefs.InvalidArgument("hugepage limit without a page size")
		}
	}
	return nil
}

// Merge returns cur with the limits r sets applied; cur is not changed
// (nil is a container created without resources). Device rules and
// everything else r cannot set are kept. oom_score_adj is not a cgroup
// value and is left as created, as runc's update leaves it.
func Merge(cur *specs.LinuxResources, r *runtimeapi.LinuxContainerResources, node *specgen.Node) (*specs.LinuxResources, error) {
	if err := Check(r); err != nil {
		return nil, err
	}
	out, err := clone(cur)
	if err != nil {
		return nil, err
	}
	if r == nil {
		return out, nil
	}
	req := proto(r)
	if len(r.GetUnified()) > 0 && !node.CgroupV2 {
		if err := unifiedV1(r.GetUnified(), req, node); err != nil {
			return nil, err
		}
	}
	mergeCPU(out, req)
	if err := mergeMemory(out, req, node.SwapAccounting); err != nil {
		return nil, err
	}
	if req.pids != 0 {
		out.Pids = &specs.LinuxPids{Limit: &req.pids}
	}
	if node.Hugetlb {
		if err := mergeHugepages(out, r.GetHugepageLimits()); err != nil {
			return nil, err
		}
	}
	if node.CgroupV2 && len(r.GetUnified()) > 0 {
		if out.Unified == nil {
			out.Unified = map[string]string{}
		}
		maps.Copy(out.Unified, r.GetUnified())
	}
	return out, nil
}

// request is what a request sets, with the unified entries mapped on v1
// folded in (zero: not set, as in the CRI). swapSet says swap was given
// (by memory_swap_limit_in_bytes or memory.swap.max); swapOnly is a
// memory.swap.max value in bytes (-1: max), which becomes memory+swap once
// the memory limit is known.
type request struct {
	shares, period uint64
	quota          int64
	cpus, mems     string
	limit, swap    int64
	swapOnly       int64
	swapOnlySet    bool
	pids           int64
}

func proto(r *runtimeapi.LinuxContainerResources) *request {
	return &request{
		shares: uint64(r.GetCpuShares()), period: uint64(r.GetCpuPeriod()), quota: r.GetCpuQuota(),
		cpus: r.GetCpusetCpus(), mems: r.GetCpusetMems(),
		limit: r.GetMemoryLimitInBytes(), swap: r.GetMemorySwapLimitInBytes(),
	}
}

func mergeCPU(out *specs.LinuxResources, req *request) {
	if req.shares == 0 && req.quota == 0 && req.period == 0 && req.cpus == "" && req.mems == "" {
		return
	}
	if out.CPU == nil {
		out.CPU = &specs.LinuxCPU{}
	}
	if req.shares != 0 {
		out.CPU.Shares = &req.shares
	}
	if req.quota != 0 {
		out.CPU.Quota = &req.quota
	}
	if req.period != 0 {
		out.CPU.Period = &req.period
	}
	if req.cpus != "" {
		out.CPU.Cpus = req.cpus
	}
	if req.mems != "" {
		out.CPU.Mems = req.mems
	}
}

// mergeMemory sets the memory limit and memory+swap. Without a swap value
// and with swap accounting, a new memory limit also becomes memory+swap
// (no swap), as at create; without swap accounting swap values are
// dropped, as at create.
func mergeMemory(out *specs.LinuxResources, req *request, swapAccounting bool) error {
	if req.limit == 0 && req.swap == 0 && !req.swapOnlySet {
		return nil
	}
	if out.Memory == nil {
		out.Memory = &specs.LinuxMemory{}
	}
	if req.limit != 0 {
		out.Memory.Limit = &req.limit
	}
	if !swapAccounting {
		return nil
	}
	swap := req.swap
	if req.swapOnlySet {
		limit := int64(-1)
		if out.Memory.Limit != nil {
			limit = *out.Memory.Limit
		}
		switch {
		case req.swapOnly == -1 || limit == -1 && req.swapOnly == 0:
			swap = -1
		case limit == -1:
			return errdefs.InvalidArgument("unified memory.swap.max %d needs a memory limit on cgroup v1, which limits memory and swap together", req.swapOnly)
		default:
			swap = limit + req.swapOnly
		}
		if req.swap != 0 && req.swap != swap {
			return errdefs.InvalidArgument("memory_swap_limit_in_bytes %d and unified memory.swap.max (memory+swap %d) disagree", req.swap, swap)
		}
	}
	if swap == 0 && req.limit != 0 {
		swap = req.limit
	}
	if swap != 0 {
		out.Memory.Swap = &swap
	}
	if l, s := out.Memory.Limit, out.Memory.Swap; l != nil && s != nil && *s != -1 && (*l == -1 || *s < *l) {
		return errdefs.InvalidArgument("memory+swap limit %d is below the memory limit %d", *s, *l)
	}
	return nil
}

// mergeHugepages replaces the limits of the page sizes the request names;
// a size the kernel does not have is refused (the cgroup has no file for it).
func mergeHugepages(out *specs.LinuxResources, limits []*runtimeapi.HugepageLimit) error {
	sizes := cgroups.HugePageSizes()
	for _, h := range limits {
		if !slices.Contains(sizes, h.GetPageSize()) {
			return errdefs.InvalidArgument("hugepage size %q: this host has %v", h.GetPageSize(), sizes)
		}
		i := slices.IndexFunc(out.HugepageLimits, func(l specs.LinuxHugepageLimit) bool { return l.Pagesize == h.GetPageSize() })
		if i < 0 {
			out.HugepageLimits = append(out.HugepageLimits, specs.LinuxHugepageLimit{Pagesize: h.GetPageSize(), Limit: h.GetLimit()})
			continue
		}
		out.HugepageLimits[i].Limit = h.GetLimit()
	}
	return nil
}

// unifiedV1 folds the unified entries that mean exactly a cgroup v1 value
// into req: memory.max, memory.swap.max, cpu.max, pids.max, cpuset.cpus
// and cpuset.mems. Any other entry has no v1 file (memory.high, io.*) or
// no exact one (cpu.weight to shares is not invertible) and is refused,
// as runc refuses unified entries on v1 ("cannot use unified on cgroup
// v1") rather than ignoring a limit. An entry and the request's own field
// for the same value must agree.
func unifiedV1(unified map[string]string, req *request, node *specgen.Node) error {
	for _, key := range slices.Sorted(maps.Keys(unified)) {
		val := strings.TrimSpace(unified[key])
		var err error
		switch key {
		case "memory.max":
			err = setInt(&req.limit, key, val, "memory_limit_in_bytes")
		case "memory.swap.max":
			if !node.SwapAccounting {
				return errdefs.InvalidArgument("unified %s: this cgroup v1 node has no swap accounting", key)
			}
			req.swapOnly, err = maxOrInt(key, val)
			req.swapOnlySet = true
		case "pids.max":
			err = setInt(&req.pids, key, val, "")
		case "cpu.max":
			err = cpuMax(req, val)
		case "cpuset.cpus":
			err = setString(&req.cpus, key, val, "cpuset_cpus")
		case "cpuset.mems":
			err = setString(&req.mems, key, val, "cpuset_mems")
		default:
			return errdefs.InvalidArgument("unified %s: no cgroup v1 equivalent (this node runs cgroup v1; unified entries are cgroup v2 files)", key)
		}
		if err != nil {
			return err
		}
	}
	return nil
}

// maxOrInt parses a cgroup v2 limit: "max" is -1, else a non-negative
// integer.
func maxOrInt(key, val string) (int64, error) {
	if val == "max" {
		return -1, nil
	}
	n, err := strconv.ParseInt(val, 10, 64)
	if err != nil || n < 0 {
		return 0, errdefs.InvalidArgument("unified %s %q: \"max\" or a non-negative integer", key, val)
	}
	return n, nil
}

func setInt(dst *int64, key, val, field string) error {
	n, err := maxOrInt(key, val)
	if err != nil {
		return err
	}
	if n == 0 {
		// Zero is "not set" in the CRI fields it lands in; a zero limit
		// is no limit a container can run under.
		return errdefs.InvalidArgument("unified %s 0: no process could run", key)
	}
	if *dst != 0 && *dst != n {
		return errdefs.InvalidArgument("unified %s %q and %s %d disagree", key, val, field, *dst)
	}
	*dst = n
	return nil
}

func setString(dst *string, key, val, field string) error {
	if _, err := cpuset.Parse(val); err != nil {
		return errdefs.InvalidArgument("unified %s %q: %v", key, val, err)
	}
	if *dst != "" && *dst != val {
		return errdefs.InvalidArgument("unified %s %q and %s %q disagree", key, val, field, *dst)
	}
	*dst = val
	return nil
}

// cpuMax parses cpu.max, "QUOTA [PERIOD]" with QUOTA "max" for none, into
// the CFS quota and period (µs), as runc's v1-to-v2 conversion writes it.
func cpuMax(req *request, val string) error {
	f := strings.Fields(val)
	if len(f) == 0 || len(f) > 2 {
		return errdefs.InvalidArgument("unified cpu.max %q: \"QUOTA [PERIOD]\"", val)
	}
	quota, err := maxOrInt("cpu.max", f[0])
	if err != nil {
		return err
	}
	if quota == 0 || (quota > 0 && quota < 1000) {
		return errdefs.InvalidArgument("unified cpu.max quota %d: \"max\" or at least 1000 (µs)", quota)
	}
	if req.quota != 0 && req.quota != quota {
		return errdefs.InvalidArgument("unified cpu.max %q and cpu_quota %d disagree", val, req.quota)
	}
	req.quota = quota
	if len(f) == 2 {
		period, err := strconv.ParseUint(f[1], 10, 64)
		if err != nil || period < 1000 || period > 1000000 {
			return errdefs.InvalidArgument("unified cpu.max period %q: 1000 to 1000000 (µs)", f[1])
		}
		if req.period != 0 && req.period != period {
			return errdefs.InvalidArgument("unified cpu.max %q and cpu_period %d disagree", val, req.period)
		}
		req.period = period
	}
	return nil
}

// clone deep-copies resources through their JSON form, which is what the
// bundle holds anyway.
func clone(r *specs.LinuxResources) (*specs.LinuxResources, error) {
	out := &specs.LinuxResources{}
	if r == nil {
		return out, nil
	}
	b, err := json.Marshal(r)
	if err != nil {
		return nil, err
	}
	if err := json.Unmarshal(b, out); err != nil {
		return nil, fmt.Errorf("copying resources: %w", err)
	}
	return out, nil
}

// Recorded is what a container record keeps of its resources: all but the
// device rules (a long list the kubelet never reads back, and which a
// resize never changes). It shares nothing with r.
func Recorded(r *specs.LinuxResources) *specs.LinuxResources {
	out, err := clone(r)
	if err != nil {
		return &specs.LinuxResources{}
	}
	out.Devices = nil
	return out
}

// CRI reports resources (and the process's oom_score_adj, nil if unset)
// as ContainerStatus.resources.linux does: what is applied.
func CRI(r *specs.LinuxResources, oomScoreAdj *int) *runtimeapi.ContainerResources {
	out := &runtimeapi.LinuxContainerResources{}
	if oomScoreAdj != nil {
		out.OomScoreAdj = int64(*oomScoreAdj)
	}
	if r == nil {
		return &runtimeapi.ContainerResources{Linux: out}
	}
	if c := r.CPU; c != nil {
		out.CpusetCpus, out.CpusetMems = c.Cpus, c.Mems
		if c.Shares != nil {
			out.CpuShares = int64(*c.Shares)
		}
		if c.Quota != nil {
			out.CpuQuota = *c.Quota
		}
		if c.Period != nil {
			out.CpuPeriod = int64(*c.Period)
		}
	}
	if m := r.Memory; m != nil {
		if m.Limit != nil {
			out.MemoryLimitInBytes = *m.Limit
		}
		if m.Swap != nil {
			out.MemorySwapLimitInBytes = *m.Swap
		}
	}
	for _, h := range r.HugepageLimits {
		out.HugepageLimits = append(out.HugepageLimits, &runtimeapi.HugepageLimit{PageSize: h.Pagesize, Limit: h.Limit})
	}
	if len(r.Unified) > 0 {
		out.Unified = maps.Clone(r.Unified)
	}
	return &runtimeapi.ContainerResources{Linux: out}
}

// FromCRI converts pod-level resources (UpdatePodSandboxResources) to the
// form records keep, as the request gives them: noded applies none of
// them (the pod cgroup is the kubelet's), so they are not fitted to the
// host either. Check them first.
func FromCRI(r *runtimeapi.LinuxContainerResources) *specs.LinuxResources {
	if r == nil {
		return nil
	}
	out := &specs.LinuxResources{}
	req := proto(r)
	mergeCPU(out, req)
	if req.limit != 0 || req.swap != 0 {
		out.Memory = &specs.LinuxMemory{}
		if req.limit != 0 {
			out.Memory.Limit = &req.limit
		}
		if req.swap != 0 {
			out.Memory.Swap = &req.swap
		}
	}
	for _, h := range r.GetHugepageLimits() {
		out.HugepageLimits = append(out.HugepageLimits, specs.LinuxHugepageLimit{Pagesize: h.GetPageSize(), Limit: h.GetLimit()})
	}
	if len(r.GetUnified()) > 0 {
		out.Unified = maps.Clone(r.GetUnified())
	}
	return out
}
