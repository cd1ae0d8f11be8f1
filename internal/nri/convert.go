package nri

import (
	"encoding/json"
	"maps"
	"os"
	"path/filepath"

	api "github.com/containerd/nri/pkg/api"
	specs "github.com/opencontainers/runtime-spec/specs-go"
	runtimeapi "k8s.io/cri-api/pkg/apis/runtime/v1"

	"github.com/noded-dev/noded/internal/resize"
	"github.com/noded-dev/noded/internal/state"
)

// Short names of the library's request and reply types.
type (
	runPodReq     = api.RunPodSandboxRequest
	stopPodReq    = api.StopPodSandboxRequest
	removePodReq  = api.RemovePodSandboxRequest
	createCtrReq  = api.CreateContainerRequest
	postCreateReq = api.PostCreateContainerRequest
	startCtrReq   = api.StartContainerRequest
	postStartReq  = api.PostStartContainerRequest
	updateCtrReq  = api.UpdateContainerRequest
	postUpdateReq = api.PostUpdateContainerRequest
	stopCtrReq    = api.StopContainerRequest
	removeCtrReq  = api.RemoveContainerRequest
	updateReq     = api.ContainerUpdate
	evictReq      = api.ContainerEviction
)

// podSandbox is a pod record as plugins see it: the CRI metadata, labels
// and annotations of its config, its cgroup parent, namespaces, resources
// and addresses.
func podSandbox(p *state.Sandbox) *api.PodSandbox {
	m := p.Config.GetMetadata()
	out := &api.PodSandbox{
		Id:             string(p.ID),
		Name:           m.GetName(),
		Uid:            m.GetUid(),
		Namespace:      m.GetNamespace(),
		Labels:         maps.Clone(p.Config.GetLabels()),
		Annotations:    maps.Clone(p.Config.GetAnnotations()),
		RuntimeHandler: p.RuntimeHandler,
		Pid:            uint32(max(p.PausePID, 0)),
		Ips:            append([]string(nil), p.IPs...),
		Linux: &api.LinuxPodSandbox{
			CgroupParent: p.CgroupParent,
			PodOverhead:  api.FromOCILinuxResources(p.Overhead, nil),
			PodResources: api.FromOCILinuxResources(p.Resources, nil),
		},
	}
	// The pause container's bundle (internal/sandbox keeps it under the
	// pod's directory) has the pod's cgroup and namespaces.
	if spec := readSpec(filepath.Join(p.Dir, "containers", string(p.ID))); spec != nil && spec.Linux != nil {
		out.Linux.CgroupsPath = spec.Linux.CgroupsPath
		out.Linux.Resources = api.FromOCILinuxResources(spec.Linux.Resources, nil)
		out.Linux.Namespaces = api.FromOCILinuxNamespaces(spec.Linux.Namespaces)
	} else if p.NetNSPath != "" {
		out.Linux.Namespaces = []*api.LinuxNamespace{{Type: "network", Path: p.NetNSPath}}
	}
	return out
}

// container is a container record as plugins see it. spec is its OCI spec
// when the caller has it (CreateContainer); otherwise the bundle's is read.
func container(c *state.Container, spec *specs.Spec) *api.Container {
	out := &api.Container{
		Id:            string(c.ID),
		PodSandboxId:  string(c.SandboxID),
		Name:          c.Config.GetMetadata().GetName(),
		State:         containerState(c.State),
		Labels:        maps.Clone(c.Config.GetLabels()),
		Annotations:   maps.Clone(c.Config.GetAnnotations()),
		Pid:           uint32(max(c.Pid, 0)),
		CreatedAt:     c.CreatedAt,
		StartedAt:     c.StartedAt,
		FinishedAt:    c.FinishedAt,
		ExitCode:      c.ExitCode,
		StatusReason:  c.Reason,
		StatusMessage: c.Message,
		Linux:         &api.LinuxContainer{CgroupsPath: c.CgroupsPath},
		User:          &api.User{Uid: c.User.UID, Gid: c.User.GID, AdditionalGids: append([]uint32(nil), c.User.AdditionalGIDs...)},
	}
	if c.ImageRef != "" {
		out.Image = &api.Image{Name: c.ImageRef}
	}
	for _, d := range c.Config.GetCDIDevices() {
		out.CDIDevices = append(out.CDIDevices, &api.CDIDevice{Name: d.GetName()})
	}
	if spec == nil {
		spec = readSpec(c.Bundle)
	}
	if spec == nil {
		out.Linux.Resources = api.FromOCILinuxResources(c.Resources, nil)
		return out
	}
	if len(spec.Annotations) > 0 {
		out.Annotations = maps.Clone(spec.Annotations)
	}
	out.Mounts = api.FromOCIMounts(spec.Mounts)
	out.Hooks = api.FromOCIHooks(spec.Hooks)
	if p := spec.Process; p != nil {
		out.Args = append([]string(nil), p.Args...)
		out.Env = append([]string(nil), p.Env...)
		for _, r := range p.Rlimits {
			out.Rlimits = append(out.Rlimits, &api.POSIXRlimit{Type: r.Type, Hard: r.Hard, Soft: r.Soft})
		}
		if p.OOMScoreAdj != nil {
			out.Linux.OomScoreAdj = api.Int(*p.OOMScoreAdj)
		}
		out.Linux.IoPriority = api.FromOCILinuxIOPriority(p.IOPriority)
		out.Linux.Scheduler = api.FromOCILinuxScheduler(p.Scheduler)
	}
	if l := spec.Linux; l != nil {
		out.Linux.Namespaces = api.FromOCILinuxNamespaces(l.Namespaces)
		out.Linux.Devices = api.FromOCILinuxDevices(l.Devices)
		out.Linux.Resources = api.FromOCILinuxResources(l.Resources, nil)
		if l.Seccomp != nil {
			out.Linux.SeccompPolicy = api.FromOCILinuxSeccomp(l.Seccomp)
		}
		out.Linux.Sysctl = maps.Clone(l.Sysctl)
		if l.CgroupsPath != "" {
			out.Linux.CgroupsPath = l.CgroupsPath
		}
	}
	return out
}

func containerState(s state.ContainerState) api.ContainerState {
	switch s {
	case state.ContainerCreated:
		return api.ContainerState_CONTAINER_CREATED
	case state.ContainerRunning:
		return api.ContainerState_CONTAINER_RUNNING
	case state.ContainerExited:
		return api.ContainerState_CONTAINER_STOPPED
	default:
		return api.ContainerState_CONTAINER_UNKNOWN
	}
}

// readSpec reads a bundle's config.json; nil if it cannot (a container
// whose bundle is gone is still reported, with what its record holds).
func readSpec(bundle string) *specs.Spec {
	b, err := os.ReadFile(filepath.Join(bundle, "config.json"))
	if err != nil {
		return nil
	}
	var spec specs.Spec
	if json.Unmarshal(b, &spec) != nil {
		return nil
	}
	return &spec
}

// nriResources is a CRI resource request as plugins see it.
func nriResources(r *runtimeapi.LinuxContainerResources) *api.LinuxResources {
	if r == nil {
		return nil
	}
	out := &api.LinuxResources{Cpu: &api.LinuxCPU{Cpus: r.GetCpusetCpus(), Mems: r.GetCpusetMems()}, Memory: &api.LinuxMemory{}}
	if v := r.GetCpuShares(); v != 0 {
		out.Cpu.Shares = api.UInt64(uint64(v))
	}
	if v := r.GetCpuQuota(); v != 0 {
		out.Cpu.Quota = api.Int64(v)
	}
	if v := r.GetCpuPeriod(); v != 0 {
		out.Cpu.Period = api.UInt64(uint64(v))
	}
	if v := r.GetMemoryLimitInBytes(); v != 0 {
		out.Memory.Limit = api.Int64(v)
	}
	if v := r.GetMemorySwapLimitInBytes(); v != 0 {
		out.Memory.Swap = api.Int64(v)
	}
	for _, h := range r.GetHugepageLimits() {
		out.HugepageLimits = append(out.HugepageLimits, &api.HugepageLimit{PageSize: h.GetPageSize(), Limit: h.GetLimit()})
	}
	out.Unified = maps.Clone(r.GetUnified())
	return out
}

// criResources is what a plugin's resources set, as a CRI update request
// (zero: not set). nil when it sets nothing.
func criResources(r *api.LinuxResources) *runtimeapi.LinuxContainerResources {
	if r == nil {
		return nil
	}
	out := resize.CRI(r.ToOCI(), nil).GetLinux()
	if out == nil {
		return nil
	}
	return out
}

// mergeCRI is base with what over sets (non-zero fields) replacing it.
func mergeCRI(base, over *runtimeapi.LinuxContainerResources) *runtimeapi.LinuxContainerResources {
	out := &runtimeapi.LinuxContainerResources{}
	if base != nil {
		out = &runtimeapi.LinuxContainerResources{
			CpuPeriod: base.GetCpuPeriod(), CpuQuota: base.GetCpuQuota(), CpuShares: base.GetCpuShares(),
			MemoryLimitInBytes: base.GetMemoryLimitInBytes(), OomScoreAdj: base.GetOomScoreAdj(),
			CpusetCpus: base.GetCpusetCpus(), CpusetMems: base.GetCpusetMems(),
			HugepageLimits: base.GetHugepageLimits(), Unified: maps.Clone(base.GetUnified()),
			MemorySwapLimitInBytes: base.GetMemorySwapLimitInBytes(),
		}
	}
	if over == nil {
		return out
	}
	setInt := func(dst *int64, v int64) {
		if v != 0 {
			*dst = v
		}
	}
	setInt(&out.CpuPeriod, over.GetCpuPeriod())
	setInt(&out.CpuQuota, over.GetCpuQuota())
	setInt(&out.CpuShares, over.GetCpuShares())
	setInt(&out.MemoryLimitInBytes, over.GetMemoryLimitInBytes())
	setInt(&out.MemorySwapLimitInBytes, over.GetMemorySwapLimitInBytes())
	if v := over.GetCpusetCpus(); v != "" {
		out.CpusetCpus = v
	}
	if v := over.GetCpusetMems(); v != "" {
		out.CpusetMems = v
	}
	if len(over.GetHugepageLimits()) > 0 {
		out.HugepageLimits = over.GetHugepageLimits()
	}
	if len(over.GetUnified()) > 0 {
		if out.Unified == nil {
			out.Unified = map[string]string{}
		}
		maps.Copy(out.Unified, over.GetUnified())
	}
	return out
}
