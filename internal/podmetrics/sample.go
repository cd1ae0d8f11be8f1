package podmetrics

import (
	"time"

	"github.com/noded-dev/noded/internal/state"
)

// PodSample is one reading of a ready pod: its cgroup, its network
// namespace and its running containers. The CRI metrics RPCs turn it into
// cadvisor-style metrics (metrics.go), the stats RPCs into CRI stats
// (stats.go). A part that could not be read is nil (or, for a
// container, the container is left out); the reason has been logged.
type PodSample struct {
	Pod       *state.Sandbox
	Timestamp time.Time
	// CgroupDir is the pod cgroup relative to a hierarchy (as cadvisor
	// names it in the id label); "" when the pod has none of its own (no
	// cgroup_parent: its containers sit in a cgroup shared by such pods).
	CgroupDir string
	// Cgroup is the pod cgroup's reading: every container of the pod and
	// its pause process together.
	Cgroup    *CgroupSample
	Processes *ProcessSample
	// Network is the pod's interfaces, read inside its network
	// namespace, loopback left out; nil with host networking.
	Network    []InterfaceSample
	Containers []ContainerSample
}

// ContainerSample is one reading of a running container.
type ContainerSample struct {
	Container *state.Container
	CgroupDir string
	Cgroup    CgroupSample
	Processes *ProcessSample
	// WritableLayer is the container's writable layer on disk.
	WritableLayer *FsSample
}

// CgroupSample is what a cgroup says about its processes: usage counters
// and the limits set on it (which, unlike the request, follow updates).
type CgroupSample struct {
	CPU    CPUSample
	Memory MemorySample
	// Threads is pids.current (the pids controller counts tasks);
	// ThreadsMax is pids.max, 0 for no limit.
	Threads, ThreadsMax uint64
	// IO is per block device, ordered by device number.
	IO []IOSample
	// Hugetlb is per page size ("2MB", "1GB"), ordered by size name.
	Hugetlb []HugetlbSample
	// Pressure is the PSI totals; nil where the kernel keeps none for the
	// cgroup (cgroup v1).
	Pressure *PressureSample
	Limits   LimitsSample
}

// CPUSample holds cumulative CPU time and CFS bandwidth counters.
type CPUSample struct {
	UsageNanos, UserNanos, SystemNanos uint64
	// Periods is the number of elapsed CFS enforcement periods,
	// ThrottledPeriods those in which the cgroup was throttled, for
	// ThrottledNanos in all.
	Periods, ThrottledPeriods, ThrottledNanos uint64
}

// MemorySample is the cgroup's memory, in bytes unless named otherwise,
// with the meanings cadvisor gives them on each cgroup version.
type MemorySample struct {
	Usage, MaxUsage uint64
	// WorkingSet is Usage less inactive file pages: what the kubelet
	// evicts on.
	WorkingSet             uint64
	Cache, RSS, MappedFile uint64
	Swap, Kernel           uint64
	ActiveFile             uint64
	InactiveFile           uint64
	// Failcnt counts hits of the limit (v1; v2 keeps no such counter
	// and reports the memory.events max count instead).
	Failcnt uint64
	// Page faults in the cgroup itself and in its whole subtree (v2
	// keeps only the latter; both are reported from it).
	PgFault, PgMajFault         uint64
	HierPgFault, HierPgMajFault uint64
	OOMKills                    uint64
}

// IOSample is one block device's I/O by the cgroup. Bytes and Ops are by
// operation as the kernel names it ("Read", "Write", and on v1 "Sync",
// "Async", "Discard", "Total").
type IOSample struct {
	Major, Minor uint64
	// Device is the device node (/dev/vda), or "major:minor" when the
	// device is not known to sysfs.
	Device string
	Bytes  map[string]uint64
	Ops    map[string]uint64
}

// HugetlbSample is the hugetlb usage for one page size.
type HugetlbSample struct {
	PageSize        string
	Usage, MaxUsage uint64
}

// PressureSample is the cumulative stall times (PSI "total"), in
// microseconds: Some is time at least one task waited, Full time all did.
type PressureSample struct {
	CPUSome, CPUFull       uint64
	MemorySome, MemoryFull uint64
	IOSome, IOFull         uint64
	// The averages (percent of time stalled over 10, 60 and 300 s), for
	// the CRI stats; the metrics report totals only.
	CPUAvg, MemoryAvg, IOAvg PressureAverages
}

// PressureAverages is one resource's PSI averages over 10, 60 and 300 s.
type PressureAverages struct {
	Some, Full [3]float64
}

// LimitsSample is the cgroup's configured limits in cadvisor's units: CPU
// shares, CFS period and quota in microseconds (quota 0: none), memory in
// bytes (0: unlimited).
type LimitsSample struct {
	CPUShares, CPUPeriod, CPUQuota uint64
	Memory, MemoryReservation      uint64
	// Swap is v1's memory+swap limit (memory.memsw.limit_in_bytes) and
	// v2's swap limit (memory.swap.max), as cadvisor reports them.
	Swap uint64
}

// ProcessSample counts the processes in a cgroup and what they hold open.
type ProcessSample struct {
	Processes, FDs, Sockets uint64
	// OpenFilesSoft is the main process's soft RLIMIT_NOFILE; nil when
	// unknown (the pod level, which has no main process of its own).
	OpenFilesSoft *uint64
}

// InterfaceSample is one network interface's counters.
type InterfaceSample struct {
	Name                                    string
	RxBytes, RxPackets, RxErrors, RxDropped uint64
	TxBytes, TxPackets, TxErrors, TxDropped uint64
}

// FsSample is a writable layer's usage and the filesystem it is on.
type FsSample struct {
	// Mountpoint is the layer's directory (the CRI's filesystem ID).
	Mountpoint string
	// Device is the filesystem's source (e.g. /dev/vda1), as cadvisor's
	// device label names it.
	Device                string
	UsedBytes, InodesUsed uint64
	// CapacityBytes, InodesTotal and InodesFree are the filesystem's.
	CapacityBytes, AvailableBytes, InodesTotal, InodesFree uint64
}
