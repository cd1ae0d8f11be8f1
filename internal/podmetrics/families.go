package podmetrics

import (
	"slices"
	"strconv"
	"time"

	runtimeapi "k8s.io/cri-api/pkg/apis/runtime/v1"
)

// The metrics are cadvisor's, by name, type, unit and labels, so that
// dashboards and alerts written for the kubelet's /metrics/cadvisor keep
// working when the kubelet takes them from the runtime instead
// (PodAndContainerStatsFromCRI). Every metric carries cadvisor's labels
// (baseLabels), then its own (cpu, interface, device, ...).
//
// The CRI carries integer values, so times are whole seconds, as in
// containerd and CRI-O.
var baseLabels = []string{"container", "id", "image", "name", "namespace", "pod"}

// target is one labelled subject: a pod (its cgroup, processes, network)
// or a container (its cgroup, processes, writable layer). A nil part
// reports nothing.
type target struct {
	// base are the values of baseLabels.
	base  []string
	cg    *CgroupSample
	proc  *ProcessSample
	net   []InterfaceSample
	fs    *FsSample
	start time.Time
	seen  time.Time
}

// point is one value of a family, with the values of its own labels.
type point struct {
	labels []string
	value  uint64
}

// family is one metric: its descriptor and how a target's sample gives
// its points.
type family struct {
	name, help string
	typ        runtimeapi.MetricType
	labels     []string
	points     func(t *target) []point
}

const (
	counter = runtimeapi.MetricType_COUNTER
	gauge   = runtimeapi.MetricType_GAUGE
)

func seconds(nanos uint64) uint64 { return nanos / uint64(time.Second) }

// fromCgroup is a single unlabelled value of the target's cgroup.
func fromCgroup(f func(*CgroupSample) uint64) func(*target) []point {
	return func(t *target) []point {
		if t.cg == nil {
			return nil
		}
		return []point{{value: f(t.cg)}}
	}
}

func fromProcesses(f func(*ProcessSample) uint64) func(*target) []point {
	return func(t *target) []point {
		if t.proc == nil {
			return nil
		}
		return []point{{value: f(t.proc)}}
	}
}

// perInterface is one value per network interface (label interface).
func perInterface(f func(*InterfaceSample) uint64) func(*target) []point {
	return func(t *target) []point {
		out := make([]point, 0, len(t.net))
		for i := range t.net {
			out = append(out, point{labels: []string{t.net[i].Name}, value: f(&t.net[i])})
		}
		return out
	}
}

// perDevice is one value per block device (label device).
func perDevice(f func(*IOSample) uint64) func(*target) []point {
	return func(t *target) []point {
		if t.cg == nil {
			return nil
		}
		out := make([]point, 0, len(t.cg.IO))
		for i := range t.cg.IO {
			out = append(out, point{labels: []string{t.cg.IO[i].Device}, value: f(&t.cg.IO[i])})
		}
		return out
	}
}

// fromFs is a value of the writable layer's filesystem (label device).
func fromFs(f func(*FsSample) uint64) func(*target) []point {
	return func(t *target) []point {
		if t.fs == nil {
			return nil
		}
		return []point{{labels: []string{t.fs.Device}, value: f(t.fs)}}
	}
}

func perPageSize(f func(*HugetlbSample) uint64) func(*target) []point {
	return func(t *target) []point {
		if t.cg == nil {
			return nil
		}
		out := make([]point, 0, len(t.cg.Hugetlb))
		for i := range t.cg.Hugetlb {
			out = append(out, point{labels: []string{t.cg.Hugetlb[i].PageSize}, value: f(&t.cg.Hugetlb[i])})
		}
		return out
	}
}

// fromPressure is a PSI total in seconds (cgroup v2 only).
func fromPressure(f func(*PressureSample) uint64) func(*target) []point {
	return func(t *target) []point {
		if t.cg == nil || t.cg.Pressure == nil {
			return nil
		}
		return []point{{value: f(t.cg.Pressure) / uint64(time.Second/time.Microsecond)}}
	}
}

// families is every metric noded reports, in cadvisor's groups.
var families = []family{
	// CPU.
	{"container_cpu_usage_seconds_total", "Cumulative cpu time consumed in seconds.", counter, []string{"cpu"},
		func(t *target) []point {
			if t.cg == nil {
				return nil
			}
			// cadvisor's per-CPU series are off in the kubelet: only the total.
			return []point{{labels: []string{"total"}, value: seconds(t.cg.CPU.UsageNanos)}}
		}},
	{"container_cpu_user_seconds_total", "Cumulative user cpu time consumed in seconds.", counter, nil,
		fromCgroup(func(c *CgroupSample) uint64 { return seconds(c.CPU.UserNanos) })},
	{"container_cpu_system_seconds_total", "Cumulative system cpu time consumed in seconds.", counter, nil,
		fromCgroup(func(c *CgroupSample) uint64 { return seconds(c.CPU.SystemNanos) })},
	{"container_cpu_cfs_periods_total", "Number of elapsed enforcement period intervals.", counter, nil,
		fromCgroup(func(c *CgroupSample) uint64 { return c.CPU.Periods })},
	{"container_cpu_cfs_throttled_periods_total", "Number of throttled period intervals.", counter, nil,
		fromCgroup(func(c *CgroupSample) uint64 { return c.CPU.ThrottledPeriods })},
	{"container_cpu_cfs_throttled_seconds_total", "Total time duration the container has been throttled.", counter, nil,
		fromCgroup(func(c *CgroupSample) uint64 { return seconds(c.CPU.ThrottledNanos) })},

	// Memory.
	{"container_memory_usage_bytes", "Current memory usage in bytes, including all memory regardless of when it was accessed.", gauge, nil,
		fromCgroup(func(c *CgroupSample) uint64 { return c.Memory.Usage })},
	{"container_memory_max_usage_bytes", "Maximum memory usage recorded in bytes.", gauge, nil,
		fromCgroup(func(c *CgroupSample) uint64 { return c.Memory.MaxUsage })},
	{"container_memory_working_set_bytes", "Current working set in bytes.", gauge, nil,
		fromCgroup(func(c *CgroupSample) uint64 { return c.Memory.WorkingSet })},
	{"container_memory_cache", "Number of bytes of page cache memory.", gauge, nil,
		fromCgroup(func(c *CgroupSample) uint64 { return c.Memory.Cache })},
	{"container_memory_rss", "Size of RSS in bytes.", gauge, nil,
		fromCgroup(func(c *CgroupSample) uint64 { return c.Memory.RSS })},
	{"container_memory_mapped_file", "Size of memory mapped files in bytes.", gauge, nil,
		fromCgroup(func(c *CgroupSample) uint64 { return c.Memory.MappedFile })},
	{"container_memory_swap", "Container swap usage in bytes.", gauge, nil,
		fromCgroup(func(c *CgroupSample) uint64 { return c.Memory.Swap })},
	{"container_memory_kernel_usage", "Size of kernel memory allocated in bytes.", gauge, nil,
		fromCgroup(func(c *CgroupSample) uint64 { return c.Memory.Kernel })},
	{"container_memory_total_active_file_bytes", "Current total active file in bytes.", gauge, nil,
		fromCgroup(func(c *CgroupSample) uint64 { return c.Memory.ActiveFile })},
	{"container_memory_total_inactive_file_bytes", "Current total inactive file in bytes.", gauge, nil,
		fromCgroup(func(c *CgroupSample) uint64 { return c.Memory.InactiveFile })},
	{"container_memory_failcnt", "Number of memory usage hits limits.", counter, nil,
		fromCgroup(func(c *CgroupSample) uint64 { return c.Memory.Failcnt })},
	{"container_memory_failures_total", "Cumulative count of memory allocation failures.", counter, []string{"failure_type", "scope"},
		func(t *target) []point {
			if t.cg == nil {
				return nil
			}
			m := t.cg.Memory
			return []point{
				{labels: []string{"pgfault", "container"}, value: m.PgFault},
				{labels: []string{"pgmajfault", "container"}, value: m.PgMajFault},
				{labels: []string{"pgfault", "hierarchy"}, value: m.HierPgFault},
				{labels: []string{"pgmajfault", "hierarchy"}, value: m.HierPgMajFault},
			}
		}},
	{"container_oom_events_total", "Count of out of memory events observed for the container.", counter, nil,
		fromCgroup(func(c *CgroupSample) uint64 { return c.Memory.OOMKills })},

	// Hugetlb (no values where the hugetlb controller is not mounted).
	{"container_hugetlb_usage_bytes", "Current hugepage usage in bytes.", gauge, []string{"pagesize"},
		perPageSize(func(h *HugetlbSample) uint64 { return h.Usage })},
	{"container_hugetlb_max_usage_bytes", "Maximum hugepage usage recorded in bytes.", gauge, []string{"pagesize"},
		perPageSize(func(h *HugetlbSample) uint64 { return h.MaxUsage })},

	// Pressure stall information (cgroup v2 only).
	{"container_pressure_cpu_stalled_seconds_total", "Total time duration no tasks in the container could make progress due to CPU congestion.", counter, nil,
		fromPressure(func(p *PressureSample) uint64 { return p.CPUFull })},
	{"container_pressure_cpu_waiting_seconds_total", "Total time duration tasks in the container have waited due to CPU congestion.", counter, nil,
		fromPressure(func(p *PressureSample) uint64 { return p.CPUSome })},
	{"container_pressure_memory_stalled_seconds_total", "Total time duration no tasks in the container could make progress due to memory congestion.", counter, nil,
		fromPressure(func(p *PressureSample) uint64 { return p.MemoryFull })},
	{"container_pressure_memory_waiting_seconds_total", "Total time duration tasks in the container have waited due to memory congestion.", counter, nil,
		fromPressure(func(p *PressureSample) uint64 { return p.MemorySome })},
	{"container_pressure_io_stalled_seconds_total", "Total time duration no tasks in the container could make progress due to IO congestion.", counter, nil,
		fromPressure(func(p *PressureSample) uint64 { return p.IOFull })},
	{"container_pressure_io_waiting_seconds_total", "Total time duration tasks in the container have waited due to IO congestion.", counter, nil,
		fromPressure(func(p *PressureSample) uint64 { return p.IOSome })},

	// Block I/O, per device.
	{"container_blkio_device_usage_total", "Blkio device bytes usage.", counter, []string{"device", "major", "minor", "operation"},
		func(t *target) []point {
			if t.cg == nil {
				return nil
			}
			var out []point
			for _, d := range t.cg.IO {
				major, minor := strconv.FormatUint(d.Major, 10), strconv.FormatUint(d.Minor, 10)
				for _, op := range sortedKeys(d.Bytes) {
					out = append(out, point{labels: []string{d.Device, major, minor, op}, value: d.Bytes[op]})
				}
			}
			return out
		}},
	{"container_fs_reads_bytes_total", "Cumulative count of bytes read.", counter, []string{"device"},
		perDevice(func(d *IOSample) uint64 { return d.Bytes["Read"] })},
	{"container_fs_writes_bytes_total", "Cumulative count of bytes written.", counter, []string{"device"},
		perDevice(func(d *IOSample) uint64 { return d.Bytes["Write"] })},
	{"container_fs_reads_total", "Cumulative count of reads completed.", counter, []string{"device"},
		perDevice(func(d *IOSample) uint64 { return d.Ops["Read"] })},
	{"container_fs_writes_total", "Cumulative count of writes completed.", counter, []string{"device"},
		perDevice(func(d *IOSample) uint64 { return d.Ops["Write"] })},

	// Writable layer and its filesystem.
	{"container_fs_usage_bytes", "Number of bytes that are consumed by the container on this filesystem.", gauge, []string{"device"},
		fromFs(func(f *FsSample) uint64 { return f.UsedBytes })},
	{"container_fs_limit_bytes", "Number of bytes that can be consumed by the container on this filesystem.", gauge, []string{"device"},
		fromFs(func(f *FsSample) uint64 { return f.CapacityBytes })},
	{"container_fs_inodes_total", "Number of Inodes.", gauge, []string{"device"},
		fromFs(func(f *FsSample) uint64 { return f.InodesTotal })},
	{"container_fs_inodes_free", "Number of available Inodes.", gauge, []string{"device"},
		fromFs(func(f *FsSample) uint64 { return f.InodesFree })},

	// Network, read in the pod's namespace: at the pod level only, as
	// every container of a pod shares it.
	{"container_network_receive_bytes_total", "Cumulative count of bytes received.", counter, []string{"interface"},
		perInterface(func(i *InterfaceSample) uint64 { return i.RxBytes })},
	{"container_network_receive_packets_total", "Cumulative count of packets received.", counter, []string{"interface"},
		perInterface(func(i *InterfaceSample) uint64 { return i.RxPackets })},
	{"container_network_receive_packets_dropped_total", "Cumulative count of packets dropped while receiving.", counter, []string{"interface"},
		perInterface(func(i *InterfaceSample) uint64 { return i.RxDropped })},
	{"container_network_receive_errors_total", "Cumulative count of errors encountered while receiving.", counter, []string{"interface"},
		perInterface(func(i *InterfaceSample) uint64 { return i.RxErrors })},
	{"container_network_transmit_bytes_total", "Cumulative count of bytes transmitted.", counter, []string{"interface"},
		perInterface(func(i *InterfaceSample) uint64 { return i.TxBytes })},
	{"container_network_transmit_packets_total", "Cumulative count of packets transmitted.", counter, []string{"interface"},
		perInterface(func(i *InterfaceSample) uint64 { return i.TxPackets })},
	{"container_network_transmit_packets_dropped_total", "Cumulative count of packets dropped while transmitting.", counter, []string{"interface"},
		perInterface(func(i *InterfaceSample) uint64 { return i.TxDropped })},
	{"container_network_transmit_errors_total", "Cumulative count of errors encountered while transmitting.", counter, []string{"interface"},
		perInterface(func(i *InterfaceSample) uint64 { return i.TxErrors })},

	// Processes.
	{"container_processes", "Number of processes running inside the container.", gauge, nil,
		fromProcesses(func(p *ProcessSample) uint64 { return p.Processes })},
	{"container_file_descriptors", "Number of open file descriptors for the container.", gauge, nil,
		fromProcesses(func(p *ProcessSample) uint64 { return p.FDs })},
	{"container_sockets", "Number of open sockets for the container.", gauge, nil,
		fromProcesses(func(p *ProcessSample) uint64 { return p.Sockets })},
	{"container_threads", "Number of threads running inside the container.", gauge, nil,
		fromCgroup(func(c *CgroupSample) uint64 { return c.Threads })},
	{"container_threads_max", "Maximum number of threads allowed inside the container, infinity if value is zero.", gauge, nil,
		fromCgroup(func(c *CgroupSample) uint64 { return c.ThreadsMax })},
	{"container_ulimits_soft", "Soft ulimit values for the container root process. Unlimited if -1, except priority and nice.", gauge, []string{"ulimit"},
		func(t *target) []point {
			if t.proc == nil || t.proc.OpenFilesSoft == nil {
				return nil
			}
			return []point{{labels: []string{"max_open_files"}, value: *t.proc.OpenFilesSoft}}
		}},

	// The cgroup's limits.
	{"container_spec_cpu_shares", "CPU share of the container.", gauge, nil,
		fromCgroup(func(c *CgroupSample) uint64 { return c.Limits.CPUShares })},
	{"container_spec_cpu_period", "CPU period of the container.", gauge, nil,
		func(t *target) []point {
			if t.cg == nil || t.cg.Limits.CPUPeriod == 0 {
				return nil
			}
			return []point{{value: t.cg.Limits.CPUPeriod}}
		}},
	{"container_spec_cpu_quota", "CPU quota of the container.", gauge, nil,
		func(t *target) []point {
			// cadvisor reports a quota only when one is set.
			if t.cg == nil || t.cg.Limits.CPUQuota == 0 {
				return nil
			}
			return []point{{value: t.cg.Limits.CPUQuota}}
		}},
	{"container_spec_memory_limit_bytes", "Memory limit for the container.", gauge, nil,
		fromCgroup(func(c *CgroupSample) uint64 { return c.Limits.Memory })},
	{"container_spec_memory_reservation_limit_bytes", "Memory reservation limit for the container.", gauge, nil,
		fromCgroup(func(c *CgroupSample) uint64 { return c.Limits.MemoryReservation })},
	{"container_spec_memory_swap_limit_bytes", "Memory swap limit for the container.", gauge, nil,
		fromCgroup(func(c *CgroupSample) uint64 { return c.Limits.Swap })},

	// Times.
	{"container_start_time_seconds", "Start time of the container since unix epoch in seconds.", gauge, nil,
		func(t *target) []point {
			if t.start.IsZero() {
				return nil
			}
			return []point{{value: uint64(t.start.Unix())}} //nolint:gosec // after the epoch
		}},
	{"container_last_seen", "Last time a container was seen by the exporter.", gauge, nil,
		func(t *target) []point { return []point{{value: uint64(t.seen.Unix())}} }}, //nolint:gosec // after the epoch
}

func sortedKeys(m map[string]uint64) []string {
	keys := make([]string, 0, len(m))
	for k := range m {
		keys = append(keys, k)
	}
	slices.Sort(keys)
	return keys
}
