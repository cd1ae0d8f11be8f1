package podmetrics

import (
	"fmt"
	"slices"
	"strings"
	"testing"
	"time"

	runtimeapi "k8s.io/cri-api/pkg/apis/runtime/v1"

	"github.com/noded-dev/noded/internal/state"
)

// cadvisorNames are the metrics the kubelet serves from cadvisor on
// /metrics/cadvisor (those critest v1.37 expects of a runtime).
var cadvisorNames = []string{
	"container_blkio_device_usage_total", "container_cpu_cfs_periods_total",
	"container_cpu_cfs_throttled_periods_total", "container_cpu_cfs_throttled_seconds_total",
	"container_cpu_system_seconds_total", "container_cpu_usage_seconds_total",
	"container_cpu_user_seconds_total", "container_file_descriptors", "container_fs_inodes_free",
	"container_fs_inodes_total", "container_fs_limit_bytes", "container_fs_reads_bytes_total",
	"container_fs_reads_total", "container_fs_usage_bytes", "container_fs_writes_bytes_total",
	"container_fs_writes_total", "container_hugetlb_max_usage_bytes", "container_hugetlb_usage_bytes",
	"container_last_seen", "container_memory_cache", "container_memory_failcnt",
	"container_memory_failures_total", "container_memory_kernel_usage", "container_memory_mapped_file",
	"container_memory_max_usage_bytes", "container_memory_rss", "container_memory_swap",
	"container_memory_usage_bytes", "container_memory_working_set_bytes",
	"container_network_receive_bytes_total", "container_network_receive_errors_total",
	"container_network_receive_packets_dropped_total", "container_network_receive_packets_total",
	"container_network_transmit_bytes_total", "container_network_transmit_errors_total",
	"container_network_transmit_packets_dropped_total", "container_network_transmit_packets_total",
	"container_oom_events_total", "container_pressure_cpu_stalled_seconds_total",
	"container_pressure_cpu_waiting_seconds_total", "container_pressure_io_stalled_seconds_total",
	"container_pressure_io_waiting_seconds_total", "container_pressure_memory_stalled_seconds_total",
	"container_pressure_memory_waiting_seconds_total", "container_processes", "container_sockets",
	"container_spec_cpu_period", "container_spec_cpu_quota", "container_spec_cpu_shares",
	"container_spec_memory_limit_bytes", "container_spec_memory_reservation_limit_bytes",
	"container_spec_memory_swap_limit_bytes", "container_start_time_seconds", "container_threads",
	"container_threads_max", "container_ulimits_soft",
}

func TestDescriptors(t *testing.T) {
	descs := NewMetrics(nil).ListMetricDescriptors()
	byName := map[string]*runtimeapi.MetricDescriptor{}
	for _, d := range descs {
		if byName[d.GetName()] != nil {
			t.Errorf("descriptor %s twice", d.GetName())
		}
		byName[d.GetName()] = d
		if d.GetHelp() == "" {
			t.Errorf("%s has no help", d.GetName())
		}
	}
	for _, name := range cadvisorNames {
		if byName[name] == nil {
			t.Errorf("no descriptor for cadvisor's %s", name)
		}
	}
	// cadvisor's own labels of each metric, after the common ones.
	extra := map[string][]string{
		"container_cpu_usage_seconds_total":  {"cpu"},
		"container_memory_failures_total":    {"failure_type", "scope"},
		"container_blkio_device_usage_total": {"device", "major", "minor", "operation"},
		"container_ulimits_soft":             {"ulimit"},
		"container_hugetlb_usage_bytes":      {"pagesize"},
		"container_hugetlb_max_usage_bytes":  {"pagesize"},
	}
	for _, d := range descs {
		name := d.GetName()
		want := extra[name]
		switch {
		case strings.HasPrefix(name, "container_network_"):
			want = []string{"interface"}
		case strings.HasPrefix(name, "container_fs_"):
			want = []string{"device"}
		}
		t.Run(name, func(t *testing.T) {
			if keys := append(slices.Clone(baseLabels), want...); !slices.Equal(d.GetLabelKeys(), keys) {
				t.Errorf("label keys %q, want %q", d.GetLabelKeys(), keys)
			}
		})
	}
	for _, f := range families {
		// container_fs_inodes_total is the filesystem's inode count.
		isCounter := strings.HasSuffix(f.name, "_total") && f.name != "container_fs_inodes_total" ||
			f.name == "container_memory_failcnt"
		if (f.typ == counter) != isCounter {
			t.Errorf("%s is a %v", f.name, f.typ)
		}
	}
}

// series renders a metric with its label keys, as Prometheus shows it.
func series(t *testing.T, keys map[string][]string, m *runtimeapi.Metric) string {
	t.Helper()
	k := keys[m.GetName()]
	if len(k) != len(m.GetLabelValues()) {
		t.Fatalf("%s: %d label values for %d keys", m.GetName(), len(m.GetLabelValues()), len(k))
	}
	var b strings.Builder
	b.WriteString(m.GetName())
	for i, v := range m.GetLabelValues() {
		fmt.Fprintf(&b, ",%s=%s", k[i], v)
	}
	return b.String()
}

func samplePod() *PodSample {
	soft := uint64(1024)
	return &PodSample{
		Pod: &state.Sandbox{
			ID: "p1", CreatedAt: time.Unix(1000, 5).UnixNano(),
			Config: &runtimeapi.PodSandboxConfig{Metadata: &runtimeapi.PodSandboxMetadata{Name: "web", Namespace: "prod"}},
		},
		Timestamp: time.Unix(2000, 0),
		CgroupDir: "/kubepods/podu1",
		Cgroup:    &CgroupSample{CPU: CPUSample{UsageNanos: 9_900_000_000}, Memory: MemorySample{WorkingSet: 700}},
		Processes: &ProcessSample{Processes: 3},
		Network: []InterfaceSample{
			{Name: "eth0", RxBytes: 100, RxPackets: 2, TxBytes: 200, TxPackets: 3, RxDropped: 4, TxErrors: 5},
			{Name: "net1", RxBytes: 7},
		},
		Containers: []ContainerSample{{
			Container: &state.Container{
				ID: "c1", StartedAt: time.Unix(1500, 0).UnixNano(), ImageRef: "docker.io/library/nginx:1",
				Config: &runtimeapi.ContainerConfig{Metadata: &runtimeapi.ContainerMetadata{Name: "nginx"}},
			},
			CgroupDir: "/kubepods/podu1/c1",
			Cgroup: CgroupSample{
				CPU: CPUSample{UsageNanos: 2_500_000_000, UserNanos: 1_999_999_999, SystemNanos: 500_000_000,
					Periods: 10, ThrottledPeriods: 3, ThrottledNanos: 1_000_000_000},
				Memory: MemorySample{Usage: 1000, MaxUsage: 1500, WorkingSet: 600, Cache: 400, RSS: 300, MappedFile: 20,
					Kernel: 50, Failcnt: 1, PgFault: 11, PgMajFault: 1, HierPgFault: 12, HierPgMajFault: 2, OOMKills: 1},
				Threads: 4, ThreadsMax: 100,
				IO: []IOSample{{Major: 8, Minor: 0, Device: "/dev/sda",
					Bytes: map[string]uint64{"Read": 4096, "Write": 8192}, Ops: map[string]uint64{"Read": 1, "Write": 2}}},
				Hugetlb:  []HugetlbSample{{PageSize: "2MB", Usage: 2 << 20}},
				Pressure: &PressureSample{CPUSome: 3_000_000, IOFull: 1_500_000},
				Limits:   LimitsSample{CPUShares: 512, CPUPeriod: 100000, CPUQuota: 50000, Memory: 1 << 30},
			},
			Processes:     &ProcessSample{Processes: 2, FDs: 9, Sockets: 1, OpenFilesSoft: &soft},
			WritableLayer: &FsSample{Device: "/dev/vda1", UsedBytes: 8192, CapacityBytes: 1 << 40, InodesTotal: 1000, InodesFree: 900},
		}},
	}
}

// TestPodSandboxMetrics maps a sample's values to cadvisor's series.
func TestPodSandboxMetrics(t *testing.T) {
	keys := map[string][]string{}
	for _, d := range NewMetrics(nil).ListMetricDescriptors() {
		keys[d.GetName()] = d.GetLabelKeys()
	}
	got := PodSandboxMetrics(samplePod())
	if got.GetPodSandboxId() != "p1" || len(got.GetContainerMetrics()) != 1 || got.GetContainerMetrics()[0].GetContainerId() != "c1" {
		t.Fatalf("ids: %v", got)
	}
	values := map[string]uint64{}
	collect := func(ms []*runtimeapi.Metric) {
		for _, m := range ms {
			s := series(t, keys, m)
			if _, dup := values[s]; dup {
				t.Errorf("series %s twice: the kubelet would reject the scrape", s)
			}
			values[s] = m.GetValue().GetValue()
			if m.GetTimestamp() != 0 {
				t.Errorf("%s: timestamp %d, want 0 (read live)", s, m.GetTimestamp())
			}
			if want := families[slices.IndexFunc(families, func(f family) bool { return f.name == m.GetName() })].typ; m.GetMetricType() != want {
				t.Errorf("%s: type %v", s, m.GetMetricType())
			}
		}
	}
	collect(got.GetMetrics())
	collect(got.GetContainerMetrics()[0].GetMetrics())

	pod := ",container=,id=/kubepods/podu1,image=,name=p1,namespace=prod,pod=web"
	ctr := ",container=nginx,id=/kubepods/podu1/c1,image=docker.io/library/nginx:1,name=c1,namespace=prod,pod=web"
	tests := []struct {
		series string
		want   uint64
	}{
		{"container_cpu_usage_seconds_total" + pod + ",cpu=total", 9},
		{"container_memory_working_set_bytes" + pod, 700},
		{"container_processes" + pod, 3},
		{"container_start_time_seconds" + pod, 1000},
		{"container_last_seen" + pod, 2000},
		{"container_network_receive_bytes_total" + pod + ",interface=eth0", 100},
		{"container_network_receive_bytes_total" + pod + ",interface=net1", 7},
		{"container_network_receive_packets_total" + pod + ",interface=eth0", 2},
		{"container_network_receive_packets_dropped_total" + pod + ",interface=eth0", 4},
		{"container_network_transmit_bytes_total" + pod + ",interface=eth0", 200},
		{"container_network_transmit_packets_total" + pod + ",interface=eth0", 3},
		{"container_network_transmit_errors_total" + pod + ",interface=eth0", 5},

		{"container_cpu_usage_seconds_total" + ctr + ",cpu=total", 2},
		{"container_cpu_user_seconds_total" + ctr, 1},
		{"container_cpu_system_seconds_total" + ctr, 0},
		{"container_cpu_cfs_periods_total" + ctr, 10},
		{"container_cpu_cfs_throttled_periods_total" + ctr, 3},
		{"container_cpu_cfs_throttled_seconds_total" + ctr, 1},
		{"container_memory_usage_bytes" + ctr, 1000},
		{"container_memory_max_usage_bytes" + ctr, 1500},
		{"container_memory_working_set_bytes" + ctr, 600},
		{"container_memory_cache" + ctr, 400},
		{"container_memory_rss" + ctr, 300},
		{"container_memory_mapped_file" + ctr, 20},
		{"container_memory_kernel_usage" + ctr, 50},
		{"container_memory_failcnt" + ctr, 1},
		{"container_memory_failures_total" + ctr + ",failure_type=pgfault,scope=container", 11},
		{"container_memory_failures_total" + ctr + ",failure_type=pgmajfault,scope=container", 1},
		{"container_memory_failures_total" + ctr + ",failure_type=pgfault,scope=hierarchy", 12},
		{"container_memory_failures_total" + ctr + ",failure_type=pgmajfault,scope=hierarchy", 2},
		{"container_oom_events_total" + ctr, 1},
		{"container_hugetlb_usage_bytes" + ctr + ",pagesize=2MB", 2 << 20},
		{"container_pressure_cpu_waiting_seconds_total" + ctr, 3},
		{"container_pressure_io_stalled_seconds_total" + ctr, 1},
		{"container_blkio_device_usage_total" + ctr + ",device=/dev/sda,major=8,minor=0,operation=Read", 4096},
		{"container_blkio_device_usage_total" + ctr + ",device=/dev/sda,major=8,minor=0,operation=Write", 8192},
		{"container_fs_reads_bytes_total" + ctr + ",device=/dev/sda", 4096},
		{"container_fs_writes_bytes_total" + ctr + ",device=/dev/sda", 8192},
		{"container_fs_reads_total" + ctr + ",device=/dev/sda", 1},
		{"container_fs_writes_total" + ctr + ",device=/dev/sda", 2},
		{"container_fs_usage_bytes" + ctr + ",device=/dev/vda1", 8192},
		{"container_fs_limit_bytes" + ctr + ",device=/dev/vda1", 1 << 40},
		{"container_fs_inodes_total" + ctr + ",device=/dev/vda1", 1000},
		{"container_fs_inodes_free" + ctr + ",device=/dev/vda1", 900},
		{"container_processes" + ctr, 2},
		{"container_file_descriptors" + ctr, 9},
		{"container_sockets" + ctr, 1},
		{"container_threads" + ctr, 4},
		{"container_threads_max" + ctr, 100},
		{"container_ulimits_soft" + ctr + ",ulimit=max_open_files", 1024},
		{"container_spec_cpu_shares" + ctr, 512},
		{"container_spec_cpu_period" + ctr, 100000},
		{"container_spec_cpu_quota" + ctr, 50000},
		{"container_spec_memory_limit_bytes" + ctr, 1 << 30},
		{"container_spec_memory_reservation_limit_bytes" + ctr, 0},
		{"container_spec_memory_swap_limit_bytes" + ctr, 0},
		{"container_start_time_seconds" + ctr, 1500},
		{"container_last_seen" + ctr, 2000},
	}
	for _, tt := range tests {
		t.Run(tt.series, func(t *testing.T) {
			v, ok := values[tt.series]
			if !ok {
				t.Fatalf("missing")
			}
			if v != tt.want {
				t.Fatalf("= %d, want %d", v, tt.want)
			}
		})
	}
	// Network belongs to the pod (every container shares its namespace);
	// the filesystem and limits to containers.
	for s := range values {
		if strings.HasPrefix(s, "container_network_") && strings.Contains(s, ",container=nginx,") {
			t.Errorf("network series on a container: %s", s)
		}
		if strings.HasPrefix(s, "container_fs_usage") && strings.Contains(s, ",container=,") {
			t.Errorf("filesystem series on the pod: %s", s)
		}
	}
}

// TestPodSandboxMetricsSparse: a pod without a cgroup of its own, a
// network namespace, or a container's processes and layer reports what it
// has and nothing for the rest.
func TestPodSandboxMetricsSparse(t *testing.T) {
	s := samplePod()
	s.CgroupDir, s.Cgroup, s.Processes, s.Network = "", nil, nil, nil
	s.Containers[0].Processes, s.Containers[0].WritableLayer = nil, nil
	s.Containers[0].Cgroup.Pressure, s.Containers[0].Cgroup.Limits.CPUQuota = nil, 0
	got := PodSandboxMetrics(s)
	var podNames []string
	for _, m := range got.GetMetrics() {
		podNames = append(podNames, m.GetName())
	}
	if want := []string{"container_start_time_seconds", "container_last_seen"}; !slices.Equal(podNames, want) {
		t.Errorf("pod metrics %q, want %q", podNames, want)
	}
	for _, m := range got.GetContainerMetrics()[0].GetMetrics() {
		switch n := m.GetName(); {
		case strings.HasPrefix(n, "container_fs_usage"), strings.HasPrefix(n, "container_pressure_"),
			n == "container_file_descriptors", n == "container_spec_cpu_quota", n == "container_ulimits_soft":
			t.Errorf("container reports %s without the data", n)
		}
	}
}
