package resize

import (
	"encoding/json"
	"testing"

	specs "github.com/opencontainers/runtime-spec/specs-go"
	runtimeapi "k8s.io/cri-api/pkg/apis/runtime/v1"

	"github.com/noded-dev/noded/internal/errdefs"
	"github.com/noded-dev/noded/internal/specgen"
)

func ptr[T any](v T) *T { return &v }

// created is a container's resources as the spec generator writes them on
// a cgroup v1 node with swap accounting: 0.5 CPU, 64 MiB, no swap, and a
// device rule that a resize must keep.
func created() *specs.LinuxResources {
	return &specs.LinuxResources{
		Devices: []specs.LinuxDeviceCgroup{{Allow: false, Access: "rwm"}},
		CPU:     &specs.LinuxCPU{Shares: ptr[uint64](512), Quota: ptr[int64](50000), Period: ptr[uint64](100000)},
		Memory:  &specs.LinuxMemory{Limit: ptr[int64](64 << 20), Swap: ptr[int64](64 << 20)},
	}
}

var (
	v1     = specgen.Node{SwapAccounting: true}
	v1Bare = specgen.Node{}
	v2     = specgen.Node{CgroupV2: true, SwapAccounting: true}
)

func asJSON(t *testing.T, v any) string {
	t.Helper()
	b, err := json.Marshal(v)
	if err != nil {
		t.Fatal(err)
	}
	return string(b)
}

func TestMerge(t *testing.T) {
	for _, tc := range []struct {
		name string
		node specgen.Node
		req  *runtimeapi.LinuxContainerResources
		// want is cur's JSON after the merge.
		want string
	}{
		{
			name: "nil request changes nothing",
			node: v1,
			want: `{"devices":[{"allow":false,"access":"rwm"}],"memory":{"limit":67108864,"swap":67108864},"cpu":{"shares":512,"quota":50000,"period":100000}}`,
		},
		{
			name: "cpu up, memory down: swap follows the limit",
			node: v1,
			req:  &runtimeapi.LinuxContainerResources{CpuShares: 1024, CpuQuota: 100000, CpuPeriod: 100000, MemoryLimitInBytes: 32 << 20},
			want: `{"devices":[{"allow":false,"access":"rwm"}],"memory":{"limit":33554432,"swap":33554432},"cpu":{"shares":1024,"quota":100000,"period":100000}}`,
		},
		{
			name: "zero fields keep the current values",
			node: v1,
			req:  &runtimeapi.LinuxContainerResources{CpuQuota: 20000},
			want: `{"devices":[{"allow":false,"access":"rwm"}],"memory":{"limit":67108864,"swap":67108864},"cpu":{"shares":512,"quota":20000,"period":100000}}`,
		},
		{
			name: "explicit swap, cpuset",
			node: v1,
			req:  &runtimeapi.LinuxContainerResources{MemoryLimitInBytes: 128 << 20, MemorySwapLimitInBytes: 256 << 20, CpusetCpus: "0-1", CpusetMems: "0"},
			want: `{"devices":[{"allow":false,"access":"rwm"}],"memory":{"limit":134217728,"swap":268435456},"cpu":{"shares":512,"quota":50000,"period":100000,"cpus":"0-1","mems":"0"}}`,
		},
		{
			name: "no swap accounting: swap dropped as at create",
			node: v1Bare,
			req:  &runtimeapi.LinuxContainerResources{MemoryLimitInBytes: 128 << 20, MemorySwapLimitInBytes: 256 << 20},
			want: `{"devices":[{"allow":false,"access":"rwm"}],"memory":{"limit":134217728,"swap":67108864},"cpu":{"shares":512,"quota":50000,"period":100000}}`,
		},
		{
			name: "unified on v1: memory.max, memory.swap.max, cpu.max, pids.max",
			node: v1,
			req: &runtimeapi.LinuxContainerResources{Unified: map[string]string{
				"memory.max": "100000000", "memory.swap.max": "1000", "cpu.max": "max 50000", "pids.max": "64",
			}},
			want: `{"devices":[{"allow":false,"access":"rwm"}],"memory":{"limit":100000000,"swap":100001000},"cpu":{"shares":512,"quota":-1,"period":50000},"pids":{"limit":64}}`,
		},
		{
			name: "unified on v1: a field and its entry agreeing",
			node: v1,
			req:  &runtimeapi.LinuxContainerResources{MemoryLimitInBytes: 1 << 30, Unified: map[string]string{"memory.max": "1073741824", "memory.swap.max": "max"}},
			want: `{"devices":[{"allow":false,"access":"rwm"}],"memory":{"limit":1073741824,"swap":-1},"cpu":{"shares":512,"quota":50000,"period":100000}}`,
		},
		{
			name: "unified on v2 is kept as given",
			node: v2,
			req:  &runtimeapi.LinuxContainerResources{Unified: map[string]string{"memory.high": "50000000", "memory.swap.max": "0"}},
			want: `{"devices":[{"allow":false,"access":"rwm"}],"memory":{"limit":67108864,"swap":67108864},"cpu":{"shares":512,"quota":50000,"period":100000},"unified":{"memory.high":"50000000","memory.swap.max":"0"}}`,
		},
		{
			name: "hugepages without the hugetlb controller are dropped, as at create",
			node: v1,
			req:  &runtimeapi.LinuxContainerResources{HugepageLimits: []*runtimeapi.HugepageLimit{{PageSize: "2MB", Limit: 1 << 21}}},
			want: `{"devices":[{"allow":false,"access":"rwm"}],"memory":{"limit":67108864,"swap":67108864},"cpu":{"shares":512,"quota":50000,"period":100000}}`,
		},
	} {
		t.Run(tc.name, func(t *testing.T) {
			cur := created()
			before := asJSON(t, cur)
			got, err := Merge(cur, tc.req, &tc.node)
			if err != nil {
				t.Fatal(err)
			}
			if s := asJSON(t, got); s != tc.want {
				t.Errorf("merged\n got %s\nwant %s", s, tc.want)
			}
			if asJSON(t, cur) != before {
				t.Error("Merge changed its input")
			}
		})
	}
}

func TestMergeRefuses(t *testing.T) {
	for _, tc := range []struct {
		name string
		node specgen.Node
		req  *runtimeapi.LinuxContainerResources
	}{
		{"shares beyond cgroup v1's range", v1, &runtimeapi.LinuxContainerResources{CpuShares: 1 << 20}},
		{"quota below 1 ms", v1, &runtimeapi.LinuxContainerResources{CpuQuota: 10}},
		{"negative memory", v1, &runtimeapi.LinuxContainerResources{MemoryLimitInBytes: -5}},
		{"cpuset that does not parse", v1, &runtimeapi.LinuxContainerResources{CpusetCpus: "0-x"}},
		{"swap below the memory limit", v1, &runtimeapi.LinuxContainerResources{MemoryLimitInBytes: 64 << 20, MemorySwapLimitInBytes: 32 << 20}},
		{"swap alone below the current limit", v1, &runtimeapi.LinuxContainerResources{MemorySwapLimitInBytes: 32 << 20}},
		{"unified entry without a v1 file", v1, &runtimeapi.LinuxContainerResources{Unified: map[string]string{"memory.high": "1000000"}}},
		{"cpu.weight is no exact v1 value", v1, &runtimeapi.LinuxContainerResources{Unified: map[string]string{"cpu.weight": "100"}}},
		{"unified entry and field disagree", v1, &runtimeapi.LinuxContainerResources{MemoryLimitInBytes: 1 << 30, Unified: map[string]string{"memory.max": "1000"}}},
		{"memory.swap.max without swap accounting", v1Bare, &runtimeapi.LinuxContainerResources{Unified: map[string]string{"memory.swap.max": "0"}}},
		{"memory.swap.max without a memory limit", v1, &runtimeapi.LinuxContainerResources{Unified: map[string]string{"memory.max": "max", "memory.swap.max": "1000"}}},
		{"cpu.max garbage", v1, &runtimeapi.LinuxContainerResources{Unified: map[string]string{"cpu.max": "lots"}}},
		{"cpu.max period out of range", v1, &runtimeapi.LinuxContainerResources{Unified: map[string]string{"cpu.max": "max 10"}}},
		{"pids.max zero", v1, &runtimeapi.LinuxContainerResources{Unified: map[string]string{"pids.max": "0"}}},
		{"hugepage limit without a size", v1, &runtimeapi.LinuxContainerResources{HugepageLimits: []*runtimeapi.HugepageLimit{{Limit: 1}}}},
		{"hugepage size the host lacks", specgen.Node{Hugetlb: true}, &runtimeapi.LinuxContainerResources{HugepageLimits: []*runtimeapi.HugepageLimit{{PageSize: "3KB", Limit: 1}}}},
	} {
		t.Run(tc.name, func(t *testing.T) {
			_, err := Merge(created(), tc.req, &tc.node)
			if !errdefs.IsInvalidArgument(err) {
				t.Fatalf("err = %v, want InvalidArgument", err)
			}
		})
	}
}

func TestCRI(t *testing.T) {
	for _, tc := range []struct {
		name string
		res  *specs.LinuxResources
		oom  *int
		want *runtimeapi.LinuxContainerResources
	}{
		{"nothing", nil, nil, &runtimeapi.LinuxContainerResources{}},
		{"created", created(), ptr(-997), &runtimeapi.LinuxContainerResources{
			CpuShares: 512, CpuQuota: 50000, CpuPeriod: 100000, MemoryLimitInBytes: 64 << 20, MemorySwapLimitInBytes: 64 << 20, OomScoreAdj: -997,
		}},
		{"cpuset, hugepages, unified", &specs.LinuxResources{
			CPU:            &specs.LinuxCPU{Cpus: "1", Mems: "0"},
			HugepageLimits: []specs.LinuxHugepageLimit{{Pagesize: "2MB", Limit: 4 << 20}},
			Unified:        map[string]string{"memory.high": "1000"},
		}, nil, &runtimeapi.LinuxContainerResources{
			CpusetCpus: "1", CpusetMems: "0", HugepageLimits: []*runtimeapi.HugepageLimit{{PageSize: "2MB", Limit: 4 << 20}},
			Unified: map[string]string{"memory.high": "1000"},
		}},
	} {
		t.Run(tc.name, func(t *testing.T) {
			got := CRI(tc.res, tc.oom)
			if g, w := asJSON(t, got.GetLinux()), asJSON(t, tc.want); g != w {
				t.Errorf("got %s\nwant %s", g, w)
			}
		})
	}
}

// A record keeps everything but the device rules, and shares nothing with
// the spec it came from.
func TestRecorded(t *testing.T) {
	res := created()
	rec := Recorded(res)
	if rec.Devices != nil {
		t.Errorf("devices recorded: %v", rec.Devices)
	}
	*rec.CPU.Shares = 2
	if *res.CPU.Shares != 512 {
		t.Error("the record shares the spec's values")
	}
}

func TestFromCRI(t *testing.T) {
	got := FromCRI(&runtimeapi.LinuxContainerResources{CpuShares: 256, CpuQuota: 30000, CpuPeriod: 100000, MemoryLimitInBytes: 1 << 30})
	want := `{"memory":{"limit":1073741824},"cpu":{"shares":256,"quota":30000,"period":100000}}`
	if s := asJSON(t, got); s != want {
		t.Errorf("got %s, want %s", s, want)
	}
	if FromCRI(nil) != nil {
		t.Error("nil resources recorded as something")
	}
}
