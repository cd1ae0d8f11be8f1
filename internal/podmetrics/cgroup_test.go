package podmetrics

import (
	"errors"
	"math"
	"os"
	"path/filepath"
	"reflect"
	"testing"

	"github.com/opencontainers/cgroups"
)

// TestMain lets runc's cgroup readers read the fake trees: outside of
// test mode they refuse a file that is not on a cgroup filesystem.
func TestMain(m *testing.M) {
	cgroups.TestMode = true
	os.Exit(m.Run())
}

// files writes a fake cgroup tree: path (relative to root) → content.
func files(t *testing.T, root string, fs map[string]string) {
	t.Helper()
	for p, content := range fs {
		p = filepath.Join(root, p)
		if err := os.MkdirAll(filepath.Dir(p), 0o755); err != nil {
			t.Fatal(err)
		}
		if err := os.WriteFile(p, []byte(content), 0o644); err != nil {
			t.Fatal(err)
		}
	}
}

// v1Tree is a container cgroup /pod/c on cgroup v1 with cpu and cpuacct
// mounted apart, as on this project's hosts, and no swap accounting.
func v1Tree(dir string) map[string]string {
	j := func(ctrl, f string) string { return filepath.Join(ctrl, dir, f) }
	return map[string]string{
		j("cpuacct", "cpuacct.usage"):        "3500000000\n",
		j("cpuacct", "cpuacct.stat"):         "user 200\nsystem 100\n", // USER_HZ ticks
		j("cpuacct", "cpuacct.usage_percpu"): "2000000000 1500000000 \n",
		j("cpu", "cpu.stat"):                 "nr_periods 10\nnr_throttled 3\nthrottled_time 2500000000\n",
		j("cpu", "cpu.shares"):               "512\n",
		j("cpu", "cpu.cfs_period_us"):        "100000\n",
		j("cpu", "cpu.cfs_quota_us"):         "20000\n",
		j("memory", "memory.stat"): "cache 1\nrss 2\npgfault 30\npgmajfault 3\n" +
			"total_cache 6000000\ntotal_rss 3000000\ntotal_mapped_file 100000\ntotal_swap 0\n" +
			"total_active_file 1000000\ntotal_inactive_file 4000000\ntotal_pgfault 40\ntotal_pgmajfault 4\n",
		j("memory", "memory.usage_in_bytes"):          "10000000\n",
		j("memory", "memory.max_usage_in_bytes"):      "12000000\n",
		j("memory", "memory.failcnt"):                 "2\n",
		j("memory", "memory.limit_in_bytes"):          "67108864\n",
		j("memory", "memory.soft_limit_in_bytes"):     "9223372036854771712\n", // none
		j("memory", "memory.kmem.usage_in_bytes"):     "300000\n",
		j("memory", "memory.kmem.max_usage_in_bytes"): "400000\n",
		j("memory", "memory.kmem.failcnt"):            "0\n",
		j("memory", "memory.use_hierarchy"):           "1\n",
		j("memory", "memory.oom_control"):             "oom_kill_disable 0\nunder_oom 0\noom_kill 1\n",
		j("pids", "pids.current"):                     "3\n",
		j("pids", "pids.max"):                         "max\n",
		j("pids", "cgroup.procs"):                     "",
		j("blkio", "blkio.throttle.io_serviced_recursive"): "8:0 Read 5\n8:0 Write 7\n8:0 Sync 12\n8:0 Async 0\n8:0 Discard 0\n8:0 Total 12\n" +
			"253:1 Read 1\n253:1 Write 0\nTotal 13\n",
		j("blkio", "blkio.throttle.io_service_bytes_recursive"): "8:0 Read 4096\n8:0 Write 8192\n8:0 Sync 12288\n8:0 Async 0\n8:0 Discard 0\n8:0 Total 12288\n" +
			"253:1 Read 512\n253:1 Write 0\nTotal 12800\n",
	}
}

// v2Tree is the same container on cgroup v2.
func v2Tree(dir string) map[string]string {
	j := func(f string) string { return filepath.Join(dir, f) }
	return map[string]string{
		j("cgroup.procs"): "",
		j("cpu.stat"):     "usage_usec 3500000\nuser_usec 2000000\nsystem_usec 1000000\nnr_periods 10\nnr_throttled 3\nthrottled_usec 2500000\n",
		j("cpu.weight"):   "100\n",
		j("cpu.max"):      "20000 100000\n",
		j("memory.stat"): "anon 3000000\nfile 6000000\nfile_mapped 100000\nactive_file 1000000\ninactive_file 4000000\n" +
			"kernel 300000\npgfault 40\npgmajfault 4\n",
		j("memory.current"):      "10000000\n",
		j("memory.max"):          "67108864\n",
		j("memory.peak"):         "12000000\n",
		j("memory.low"):          "0\n",
		j("memory.swap.current"): "0\n",
		j("memory.swap.max"):     "max\n",
		j("memory.events"):       "low 0\nhigh 0\nmax 2\noom 1\noom_kill 1\n",
		j("pids.current"):        "3\n",
		j("pids.max"):            "max\n",
		j("io.stat"):             "8:0 rbytes=4096 wbytes=8192 rios=5 wios=7 dbytes=0 dios=0\n253:1 rbytes=512 wbytes=0 rios=1 wios=0 dbytes=0 dios=0\n",
		j("cpu.pressure"):        "some avg10=0.00 avg60=0.00 avg300=0.00 total=3000000\nfull avg10=0.00 avg60=0.00 avg300=0.00 total=1000000\n",
		j("memory.pressure"):     "some avg10=0.00 avg60=0.00 avg300=0.00 total=20000\nfull avg10=0.00 avg60=0.00 avg300=0.00 total=10000\n",
		j("io.pressure"):         "some avg10=0.00 avg60=0.00 avg300=0.00 total=5000000\nfull avg10=0.00 avg60=0.00 avg300=0.00 total=4000000\n",
	}
}

func fakeDevices(major, minor uint64) string {
	if major == 8 && minor == 0 {
		return "/dev/sda"
	}
	return ""
}

// TestReadCgroup maps each version's files to one sample: the values
// cadvisor reports for them.
func TestReadCgroup(t *testing.T) {
	io := []IOSample{
		{Major: 8, Minor: 0, Device: "/dev/sda",
			Bytes: map[string]uint64{"Read": 4096, "Write": 8192}, Ops: map[string]uint64{"Read": 5, "Write": 7}},
		{Major: 253, Minor: 1, Device: "253:1",
			Bytes: map[string]uint64{"Read": 512, "Write": 0}, Ops: map[string]uint64{"Read": 1, "Write": 0}},
	}
	v1IO := []IOSample{
		{Major: 8, Minor: 0, Device: "/dev/sda",
			Bytes: map[string]uint64{"Read": 4096, "Write": 8192, "Sync": 12288, "Async": 0, "Discard": 0, "Total": 12288},
			Ops:   map[string]uint64{"Read": 5, "Write": 7, "Sync": 12, "Async": 0, "Discard": 0, "Total": 12}},
		io[1],
	}
	tests := []struct {
		name string
		v2   bool
		tree func(string) map[string]string
		want CgroupSample
	}{
		{
			name: "v1", tree: v1Tree,
			want: CgroupSample{
				CPU: CPUSample{UsageNanos: 3500000000, UserNanos: 2000000000, SystemNanos: 1000000000,
					Periods: 10, ThrottledPeriods: 3, ThrottledNanos: 2500000000},
				Memory: MemorySample{Usage: 10000000, MaxUsage: 12000000, WorkingSet: 6000000,
					Cache: 6000000, RSS: 3000000, MappedFile: 100000, Kernel: 300000,
					ActiveFile: 1000000, InactiveFile: 4000000, Failcnt: 2,
					PgFault: 30, PgMajFault: 3, HierPgFault: 40, HierPgMajFault: 4, OOMKills: 1},
				Threads: 3,
				IO:      v1IO,
				Limits:  LimitsSample{CPUShares: 512, CPUPeriod: 100000, CPUQuota: 20000, Memory: 67108864},
			},
		},
		{
			name: "v2", v2: true, tree: v2Tree,
			want: CgroupSample{
				CPU: CPUSample{UsageNanos: 3500000000, UserNanos: 2000000000, SystemNanos: 1000000000,
					Periods: 10, ThrottledPeriods: 3, ThrottledNanos: 2500000000},
				Memory: MemorySample{Usage: 10000000, MaxUsage: 12000000, WorkingSet: 6000000,
					Cache: 6000000, RSS: 3000000, MappedFile: 100000, Kernel: 300000,
					ActiveFile: 1000000, InactiveFile: 4000000, Failcnt: 2,
					PgFault: 40, PgMajFault: 4, HierPgFault: 40, HierPgMajFault: 4, OOMKills: 1},
				Threads:  3,
				IO:       io,
				Pressure: &PressureSample{CPUSome: 3000000, CPUFull: 1000000, MemorySome: 20000, MemoryFull: 10000, IOSome: 5000000, IOFull: 4000000},
				Limits:   LimitsSample{CPUShares: 1024, CPUPeriod: 100000, CPUQuota: 20000, Memory: 67108864},
			},
		},
	}
	for _, tt := range tests {
		t.Run(tt.name, func(t *testing.T) {
			root := t.TempDir()
			files(t, root, tt.tree("/pod/c"))
			r := cgroupReader{root: root, v2: tt.v2, devices: fakeDevices}
			got, err := r.read("/pod/c", full)
			if err != nil {
				t.Fatal(err)
			}
			r.nameDevices(got)
			got.Hugetlb = nil // the host's page sizes; none in the fake tree
			if !reflect.DeepEqual(*got, tt.want) {
				t.Fatalf("read:\n got %+v\nwant %+v", *got, tt.want)
			}

			// The stats' reading: on v1 what the CRI stats report and
			// no more; on v2 all of it.
			stats, err := r.read("/pod/c", statsOnly)
			if err != nil {
				t.Fatal(err)
			}
			r.nameDevices(stats)
			stats.Hugetlb = nil
			want := tt.want
			if !tt.v2 {
				m := want.Memory
				want = CgroupSample{CPU: CPUSample{UsageNanos: want.CPU.UsageNanos}, Limits: LimitsSample{Memory: want.Limits.Memory}}
				m.MaxUsage, m.Kernel, m.Failcnt, m.OOMKills = 0, 0, 0, 0
				want.Memory = m
			}
			if !reflect.DeepEqual(*stats, want) {
				t.Fatalf("read for the stats:\n got %+v\nwant %+v", *stats, want)
			}

			for _, what := range []level{full, statsOnly} {
				if _, err := r.read("/pod/gone", what); !errors.Is(err, errCgroupGone) {
					t.Fatalf("missing cgroup: %v, want errCgroupGone", err)
				}
			}
			// An unparsable file is an error, not a vanished cgroup.
			files(t, root, tt.tree("/pod/bad"))
			bad := "pod/bad/memory.stat"
			if !tt.v2 {
				bad = "memory/" + bad
			}
			files(t, root, map[string]string{bad: "cache x\n"})
			for _, what := range []level{full, statsOnly} {
				_, err = r.read("/pod/bad", what)
				if err == nil || errors.Is(err, errCgroupGone) {
					t.Fatalf("unparsable memory.stat (level %d): %v, want a read error", what, err)
				}
			}
		})
	}
}

func TestWeightToShares(t *testing.T) {
	// Round trip through the mapping runc writes with.
	for _, shares := range []uint64{2, 100, 512, 1024, 2048, 10240, 262144} {
		t.Run("", func(t *testing.T) {
			w := cgroups.ConvertCPUSharesToCgroupV2Value(shares)
			got := weightToShares(w)
			if d := math.Abs(float64(got)-float64(shares)) / float64(shares); d > 0.02 {
				t.Fatalf("shares %d → weight %d → shares %d", shares, w, got)
			}
		})
	}
	if got := weightToShares(100); got != 1024 {
		t.Fatalf("default weight 100 → %d shares, want 1024", got)
	}
}

func TestPodCgroupDir(t *testing.T) {
	tests := []struct {
		parent  string
		systemd bool
		want    string
	}{
		{"", false, ""},
		{"", true, ""},
		{"/kubepods/besteffort/pod1", false, "/kubepods/besteffort/pod1"},
		{"kubepods/pod1", false, "/kubepods/pod1"},
		{"kubepods-besteffort-pod1.slice", true, "/kubepods.slice/kubepods-besteffort.slice/kubepods-besteffort-pod1.slice"},
		{"/kubepods.slice/kubepods-pod1.slice", true, "/kubepods.slice/kubepods-pod1.slice"},
		{"-.slice", true, "/"},
	}
	for _, tt := range tests {
		t.Run(tt.parent, func(t *testing.T) {
			if got := podCgroupDir(tt.parent, tt.systemd); got != tt.want {
				t.Fatalf("podCgroupDir(%q, %v) = %q, want %q", tt.parent, tt.systemd, got, tt.want)
			}
		})
	}
}

func TestParseCPUMax(t *testing.T) {
	tests := []struct {
		in            string
		quota, period uint64
	}{
		{"max 100000\n", 0, 100000},
		{"20000 100000", 20000, 100000},
		{"", 0, 0},
	}
	for _, tt := range tests {
		t.Run(tt.in, func(t *testing.T) {
			if q, p := parseCPUMax(tt.in); q != tt.quota || p != tt.period {
				t.Fatalf("parseCPUMax(%q) = %d %d", tt.in, q, p)
			}
		})
	}
}
