package podmetrics

import (
	"sync"
	"time"

	runtimeapi "k8s.io/cri-api/pkg/apis/runtime/v1"

	"github.com/noded-dev/noded/internal/state"
)

// CPURates keeps the previous CPU sample of each pod and container, so
// that a stats call reports usage_nano_cores, the rate between two
// samples (as cadvisor computes it between its housekeeping reads),
// besides the cumulative time. Entries of removed pods and containers are
// dropped by Forget or Keep.
type CPURates struct {
	mu   sync.Mutex
	last map[string]cpuPoint
}

type cpuPoint struct {
	at    time.Time
	nanos uint64
}

// Rate records a sample of key and returns the CPU rate since the
// previous one, in nanoseconds per second (nano-cores); false for a first
// sample, or when the counter went back (a new cgroup under the same ID).
func (r *CPURates) Rate(key string, at time.Time, nanos uint64) (uint64, bool) {
	r.mu.Lock()
	defer r.mu.Unlock()
	if r.last == nil {
		r.last = map[string]cpuPoint{}
	}
	prev, ok := r.last[key]
	r.last[key] = cpuPoint{at: at, nanos: nanos}
	if !ok || !at.After(prev.at) || nanos < prev.nanos {
		return 0, false
	}
	return uint64(float64(nanos-prev.nanos) / at.Sub(prev.at).Seconds()), true
}

// Forget drops key's sample.
func (r *CPURates) Forget(key string) {
	r.mu.Lock()
	defer r.mu.Unlock()
	delete(r.last, key)
}

// Keep drops the samples of every key live says is gone.
func (r *CPURates) Keep(live func(key string) bool) {
	r.mu.Lock()
	defer r.mu.Unlock()
	for k := range r.last {
		if !live(k) {
			delete(r.last, k)
		}
	}
}

// Len is the number of samples kept.
func (r *CPURates) Len() int {
	r.mu.Lock()
	defer r.mu.Unlock()
	return len(r.last)
}

// PodKey is a pod's key in CPURates: pod and container IDs are drawn
// from one space, but a pod's cgroup is not its pause container's.
func PodKey(id string) string { return "pod/" + id }

// PodSandboxStats turns a pod's sample into the CRI's stats: the pod
// cgroup's CPU, memory and pressure, its network namespace's interfaces,
// its process count, and one entry per container in ctrs (the pod's): a
// running container read in s with its usage, any other with its
// attributes and timestamps only. A sample without readings (a stopped
// pod) gives the attributes and timestamps only.
func PodSandboxStats(s *PodSample, ctrs []*state.Container, rates *CPURates) *runtimeapi.PodSandboxStats {
	ts := s.Timestamp.UnixNano()
	sb := s.Pod
	l := &runtimeapi.LinuxPodSandboxStats{
		Cpu:     &runtimeapi.CpuUsage{Timestamp: ts},
		Memory:  &runtimeapi.MemoryUsage{Timestamp: ts},
		Process: &runtimeapi.ProcessUsage{Timestamp: ts},
	}
	if cg := s.Cgroup; cg != nil {
		l.Cpu = cpuUsage(&cg.CPU, cg.Pressure, s.Timestamp, PodKey(string(sb.ID)), rates)
		l.Memory = memoryUsage(cg, ts)
		l.Io = ioUsage(cg.Pressure, ts)
	}
	if s.Processes != nil {
		l.Process.ProcessCount = u64(s.Processes.Processes)
	}
	if s.Network != nil {
		l.Network = networkUsage(s.Network, ts)
	}
	read := map[string]*ContainerSample{}
	for i := range s.Containers {
		read[string(s.Containers[i].Container.ID)] = &s.Containers[i]
	}
	for _, c := range ctrs {
		l.Containers = append(l.Containers, ContainerStats(c, read[string(c.ID)], s.Timestamp, rates))
	}
	return &runtimeapi.PodSandboxStats{
		Attributes: &runtimeapi.PodSandboxAttributes{
			Id: string(sb.ID), Metadata: sb.Config.GetMetadata(),
			Labels: sb.Config.GetLabels(), Annotations: sb.Config.GetAnnotations(),
		},
		Linux: l,
	}
}

// ContainerStats turns a container's sample into the CRI's stats: CPU,
// memory, swap and pressure from its cgroup, and its writable layer. A
// nil sample (the container does not run, or its cgroup could not be
// read) gives the attributes and valid timestamps with no usage, as
// containerd does.
func ContainerStats(c *state.Container, s *ContainerSample, at time.Time, rates *CPURates) *runtimeapi.ContainerStats {
	ts := at.UnixNano()
	st := &runtimeapi.ContainerStats{
		Attributes: &runtimeapi.ContainerAttributes{
			Id: string(c.ID), Metadata: c.Config.GetMetadata(),
			Labels: c.Config.GetLabels(), Annotations: c.Config.GetAnnotations(),
		},
		Cpu:    &runtimeapi.CpuUsage{Timestamp: ts},
		Memory: &runtimeapi.MemoryUsage{Timestamp: ts},
	}
	if s == nil {
		return st
	}
	cg := &s.Cgroup
	st.Cpu = cpuUsage(&cg.CPU, cg.Pressure, at, string(c.ID), rates)
	st.Memory = memoryUsage(cg, ts)
	st.Swap = &runtimeapi.SwapUsage{Timestamp: ts, SwapUsageBytes: u64(cg.Memory.Swap)}
	st.Io = ioUsage(cg.Pressure, ts)
	if fs := s.WritableLayer; fs != nil {
		st.WritableLayer = &runtimeapi.FilesystemUsage{
			Timestamp: ts, FsId: &runtimeapi.FilesystemIdentifier{Mountpoint: fs.Mountpoint},
			UsedBytes: u64(fs.UsedBytes), InodesUsed: u64(fs.InodesUsed),
		}
	}
	return st
}

func cpuUsage(c *CPUSample, p *PressureSample, at time.Time, key string, rates *CPURates) *runtimeapi.CpuUsage {
	u := &runtimeapi.CpuUsage{Timestamp: at.UnixNano(), UsageCoreNanoSeconds: u64(c.UsageNanos)}
	// A first sample has no rate: left unset, so that the kubelet
	// computes it from its own cache rather than reading an idle 0.
	if rate, ok := rates.Rate(key, at, c.UsageNanos); ok {
		u.UsageNanoCores = u64(rate)
	}
	if p != nil {
		u.Psi = psiStats(p.CPUSome, p.CPUFull, p.CPUAvg)
	}
	return u
}

// memoryUsage reports the figures the kubelet reads, with cadvisor's
// meanings: available is the limit less the working set, unset without a
// limit (the kubelet then uses the node's).
func memoryUsage(cg *CgroupSample, ts int64) *runtimeapi.MemoryUsage {
	m := &cg.Memory
	u := &runtimeapi.MemoryUsage{
		Timestamp: ts, WorkingSetBytes: u64(m.WorkingSet), UsageBytes: u64(m.Usage), RssBytes: u64(m.RSS),
		PageFaults: u64(m.HierPgFault), MajorPageFaults: u64(m.HierPgMajFault),
	}
	if cg.Limits.Memory > 0 {
		u.AvailableBytes = u64(sub(cg.Limits.Memory, m.WorkingSet))
	}
	if p := cg.Pressure; p != nil {
		u.Psi = psiStats(p.MemorySome, p.MemoryFull, p.MemoryAvg)
	}
	return u
}

// ioUsage is the I/O pressure; nil where the kernel keeps none (v1).
func ioUsage(p *PressureSample, ts int64) *runtimeapi.IoUsage {
	if p == nil {
		return nil
	}
	return &runtimeapi.IoUsage{Timestamp: ts, Psi: psiStats(p.IOSome, p.IOFull, p.IOAvg)}
}

func psiStats(some, full uint64, avg PressureAverages) *runtimeapi.PsiStats {
	data := func(total uint64, a [3]float64) *runtimeapi.PsiData {
		return &runtimeapi.PsiData{Total: total, Avg10: a[0], Avg60: a[1], Avg300: a[2]}
	}
	return &runtimeapi.PsiStats{Some: data(some, avg.Some), Full: data(full, avg.Full)}
}

// defaultInterface is the interface the kubelet reports as the pod's
// network (its own default name), else the first.
const defaultInterface = "eth0"

func networkUsage(ifs []InterfaceSample, ts int64) *runtimeapi.NetworkUsage {
	n := &runtimeapi.NetworkUsage{Timestamp: ts}
	for i := range ifs {
		f := &ifs[i]
		n.Interfaces = append(n.Interfaces, &runtimeapi.NetworkInterfaceUsage{
			Name: f.Name, RxBytes: u64(f.RxBytes), RxErrors: u64(f.RxErrors),
			TxBytes: u64(f.TxBytes), TxErrors: u64(f.TxErrors),
		})
		if f.Name == defaultInterface {
			n.DefaultInterface = n.Interfaces[i]
		}
	}
	if n.DefaultInterface == nil && len(n.Interfaces) > 0 {
		n.DefaultInterface = n.Interfaces[0]
	}
	return n
}

func u64(v uint64) *runtimeapi.UInt64Value { return &runtimeapi.UInt64Value{Value: v} }
