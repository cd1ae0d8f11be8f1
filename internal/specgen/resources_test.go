package specgen

import (
	"errors"
	"testing"

	specs "github.com/opencontainers/runtime-spec/specs-go"
	runtimeapi "k8s.io/cri-api/pkg/apis/runtime/v1"

	"github.com/noded-dev/noded/internal/errdefs"
)

func ptr[T any](v T) *T { return &v }

func TestResources(t *testing.T) {
	full := &runtimeapi.LinuxContainerResources{
		CpuPeriod: 100000, CpuQuota: 50000, CpuShares: 512,
		CpusetCpus: "0-1", CpusetMems: "0",
		MemoryLimitInBytes: 1 << 30,
		HugepageLimits:     []*runtimeapi.HugepageLimit{{PageSize: "2MB", Limit: 1 << 21}},
		Unified:            map[string]string{"memory.high": "max"},
	}
	cpu := &specs.LinuxCPU{Shares: ptr[uint64](512), Quota: ptr[int64](50000), Period: ptr[uint64](100000), Cpus: "0-1", Mems: "0"}
	for _, tc := range []struct {
		desc string
		r    *runtimeapi.LinuxContainerResources
		node Node
		want *specs.LinuxResources
	}{
		{desc: "nil", want: &specs.LinuxResources{}},
		{desc: "zeros leave fields out", r: &runtimeapi.LinuxContainerResources{}, want: &specs.LinuxResources{}},
		{desc: "cgroup v1 without swap accounting or hugetlb", r: full,
			want: &specs.LinuxResources{CPU: cpu, Memory: &specs.LinuxMemory{Limit: ptr[int64](1 << 30)}}},
		{desc: "swap limited to the memory limit", r: full, node: Node{SwapAccounting: true},
			want: &specs.LinuxResources{CPU: cpu, Memory: &specs.LinuxMemory{Limit: ptr[int64](1 << 30), Swap: ptr[int64](1 << 30)}}},
		{desc: "explicit swap limit", node: Node{SwapAccounting: true},
			r:    &runtimeapi.LinuxContainerResources{MemoryLimitInBytes: 100, MemorySwapLimitInBytes: 300},
			want: &specs.LinuxResources{Memory: &specs.LinuxMemory{Limit: ptr[int64](100), Swap: ptr[int64](300)}}},
		{desc: "swap limit ignored without accounting",
			r:    &runtimeapi.LinuxContainerResources{MemorySwapLimitInBytes: 300},
			want: &specs.LinuxResources{}},
		{desc: "hugepages with the controller", r: full, node: Node{Hugetlb: true},
			want: &specs.LinuxResources{CPU: cpu, Memory: &specs.LinuxMemory{Limit: ptr[int64](1 << 30)},
				HugepageLimits: []specs.LinuxHugepageLimit{{Pagesize: "2MB", Limit: 1 << 21}}}},
		{desc: "unified on cgroup v2 only", r: full, node: Node{CgroupV2: true},
			want: &specs.LinuxResources{CPU: cpu, Memory: &specs.LinuxMemory{Limit: ptr[int64](1 << 30)},
				Unified: map[string]string{"memory.high": "max"}}},
		{desc: "cpuset only", r: &runtimeapi.LinuxContainerResources{CpusetCpus: "3"},
			want: &specs.LinuxResources{CPU: &specs.LinuxCPU{Cpus: "3"}}},
	} {
		t.Run(tc.desc, func(t *testing.T) {
			assertEqual(t, "resources", resources(tc.r, &tc.node), tc.want)
		})
	}
}

func TestOOMScoreAdj(t *testing.T) {
	for _, tc := range []struct {
		desc    string
		adj     int64
		min     int
		want    int
		wantErr error
	}{
		{desc: "kept", adj: 500, want: 500},
		{desc: "negative clamped to the floor", adj: -997, min: 0, want: 0},
		{desc: "negative allowed above the floor", adj: -500, min: -999, want: -500},
		{desc: "floor raised", adj: 100, min: 200, want: 200},
		{desc: "too large", adj: 1001, wantErr: errdefs.ErrInvalidArgument},
		{desc: "too small", adj: -1001, wantErr: errdefs.ErrInvalidArgument},
	} {
		t.Run(tc.desc, func(t *testing.T) {
			got, err := oomScoreAdj(tc.adj, &Node{OOMScoreAdjMin: tc.min})
			if checkErr(t, err, tc.wantErr) {
				assertEqual(t, "adj", *got, tc.want)
			}
		})
	}
}

func TestCgroupsPath(t *testing.T) {
	for _, tc := range []struct {
		desc, manager, parent string
		want                  string
		wantErr               error
	}{
		{desc: "cgroupfs", manager: "cgroupfs", parent: "/kubepods/burstable/pod1", want: "/kubepods/burstable/pod1/c1"},
		{desc: "cgroupfs is the default", parent: "/kubepods", want: "/kubepods/c1"},
		{desc: "cgroupfs relative parent", parent: "kubepods", want: "/kubepods/c1"},
		{desc: "cgroupfs without parent", want: "/noded/c1"},
		{desc: "systemd slice", manager: "systemd", parent: "kubepods-burstable-pod1.slice", want: "kubepods-burstable-pod1.slice:noded:c1"},
		{desc: "systemd nested slice path", manager: "systemd", parent: "/kubepods.slice/kubepods-pod1.slice", want: "kubepods-pod1.slice:noded:c1"},
		{desc: "systemd without parent", manager: "systemd", want: "system.slice:noded:c1"},
		{desc: "systemd with a non-slice", manager: "systemd", parent: "/kubepods/pod1", wantErr: errdefs.ErrInvalidArgument},
		{desc: "unknown manager", manager: "cgmanager", wantErr: errdefs.ErrInvalidArgument},
	} {
		t.Run(tc.desc, func(t *testing.T) {
			got, err := cgroupsPath(tc.manager, tc.parent, "c1")
			if checkErr(t, err, tc.wantErr) {
				assertEqual(t, "path", got, tc.want)
			}
		})
	}
}

func TestCheckSysctlsAndResources(t *testing.T) {
	hostNet := &runtimeapi.NamespaceOption{Network: runtimeapi.NamespaceMode_NODE}
	hostIPC := &runtimeapi.NamespaceOption{Ipc: runtimeapi.NamespaceMode_NODE}
	sysctls := []struct {
		name string
		key  string
		ns   *runtimeapi.NamespaceOption
		ok   bool
	}{
		{"net of a pod network", "net.ipv4.ip_forward", nil, true},
		{"net of the host's network", "net.ipv4.ip_forward", hostNet, false},
		{"ipc", "kernel.shmmax", nil, true},
		{"mqueue on the host's ipc", "fs.mqueue.msg_max", hostIPC, false},
		{"uts", "kernel.domainname", nil, true},
		{"no namespace", "kernel.panic", nil, false},
		{"vm", "vm.swappiness", nil, false},
	}
	for _, tc := range sysctls {
		t.Run("sysctl "+tc.name, func(t *testing.T) {
			err := checkSysctls(map[string]string{tc.key: "1"}, tc.ns)
			if (err == nil) != tc.ok || err != nil && !errors.Is(err, errdefs.ErrInvalidArgument) {
				t.Errorf("checkSysctls(%s) = %v, want ok %v", tc.key, err, tc.ok)
			}
		})
	}
	res := []struct {
		name string
		r    *runtimeapi.LinuxContainerResources
		ok   bool
	}{
		{"none", nil, true},
		{"the kubelet's", &runtimeapi.LinuxContainerResources{CpuShares: 102, CpuQuota: 50000, CpuPeriod: 100000, MemoryLimitInBytes: 64 << 20, OomScoreAdj: 999}, true},
		{"unlimited quota", &runtimeapi.LinuxContainerResources{CpuQuota: -1}, true},
		{"negative shares", &runtimeapi.LinuxContainerResources{CpuShares: -1}, false},
		{"shares beyond v1", &runtimeapi.LinuxContainerResources{CpuShares: 262145}, false},
		{"quota under 1 ms", &runtimeapi.LinuxContainerResources{CpuQuota: 999}, false},
		{"period over 1 s", &runtimeapi.LinuxContainerResources{CpuPeriod: 1000001}, false},
		{"negative memory", &runtimeapi.LinuxContainerResources{MemoryLimitInBytes: -1}, false},
		{"oom_score_adj", &runtimeapi.LinuxContainerResources{OomScoreAdj: 1001}, false},
	}
	for _, tc := range res {
		t.Run("resources "+tc.name, func(t *testing.T) {
			err := checkResources(tc.r)
			if (err == nil) != tc.ok || err != nil && !errors.Is(err, errdefs.ErrInvalidArgument) {
				t.Errorf("checkResources = %v, want ok %v", err, tc.ok)
			}
		})
	}
}
