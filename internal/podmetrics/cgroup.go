package podmetrics

import (
	"errors"
	"fmt"
	"math"
	"os"
	"path/filepath"
	"sort"
	"strconv"
	"strings"

	"github.com/opencontainers/cgroups"
	"github.com/opencontainers/cgroups/fs"
	"github.com/opencontainers/cgroups/fs2"
	"github.com/opencontainers/cgroups/fscommon"
)

// errCgroupGone: the cgroup does not exist (any more). A container that
// exits between the record read and the cgroup read is not an error.
var errCgroupGone = errors.New("cgroup does not exist")

// v1Controllers are the v1 hierarchies read, each mounted on its own
// (cpu and cpuacct are separate on this project's hosts) or co-mounted
// behind the usual symlinks. The stat readers are runc's
// (opencontainers/cgroups), which CRI-O uses too.
var v1Controllers = []string{"cpu", "cpuacct", "memory", "pids", "blkio", "hugetlb"}

// cgroupReader reads cgroups below Root (/sys/fs/cgroup).
type cgroupReader struct {
	root string
	v2   bool
	// devices names block devices from their numbers (sysfs).
	devices func(major, minor uint64) string
}

func newCgroupReader() cgroupReader {
	return cgroupReader{root: "/sys/fs/cgroup", v2: cgroups.IsCgroup2UnifiedMode(), devices: blockDevice}
}

// CgroupDir turns a container's OCI cgroupsPath into a path relative to a
// hierarchy: a cgroupfs path is used as is; a systemd "slice:prefix:name"
// is expanded the way runc's systemd driver lays it out.
func CgroupDir(cgroupsPath string) string {
	parts := strings.Split(cgroupsPath, ":")
	if len(parts) != 3 || strings.HasPrefix(cgroupsPath, "/") {
		return cgroupsPath
	}
	slice, prefix, name := parts[0], parts[1], parts[2]
	if slice == "" {
		slice = "system.slice"
	}
	dir := "/"
	if slice != "-.slice" {
		dir = expandSlice(slice)
	}
	unit := name
	if prefix != "" {
		unit = prefix + "-" + name
	}
	if !strings.HasSuffix(unit, ".scope") && !strings.HasSuffix(unit, ".slice") {
		unit += ".scope"
	}
	return filepath.Join(dir, unit)
}

// procsDir is the directory whose cgroup.procs files (recursively) list
// the cgroup's processes.
func (r cgroupReader) procsDir(dir string) string {
	if r.v2 {
		return filepath.Join(r.root, dir)
	}
	for _, c := range []string{"pids", "memory", "cpuacct"} {
		if p := filepath.Join(r.root, c, dir); exists(p) {
			return p
		}
	}
	return filepath.Join(r.root, "memory", dir)
}

// read samples the cgroup at dir (relative to a hierarchy: a cgroupfs
// path or an expanded systemd one), in full or for the stats only. On v2
// both read in full: its files are few, and the pressure is only read
// there.
func (r cgroupReader) read(dir string, what level) (*CgroupSample, error) {
	switch {
	case r.v2:
		return r.readV2(filepath.Join(r.root, dir))
	case what == statsOnly:
		return r.readV1Stats(dir)
	}
	return r.readV1(dir)
}

// readV1Stats reads the four v1 files the CRI stats need (cpuacct.usage,
// memory.usage_in_bytes, memory.limit_in_bytes, memory.stat) with the
// same parsers as readV1, where runc's stat readers would read some
// forty.
func (r cgroupReader) readV1Stats(dir string) (*CgroupSample, error) {
	mem := filepath.Join(r.root, "memory", dir)
	if !exists(mem) {
		return nil, errCgroupGone
	}
	s := &CgroupSample{}
	var err error
	if s.CPU.UsageNanos, err = fscommon.GetCgroupParamUint(filepath.Join(r.root, "cpuacct", dir), "cpuacct.usage"); err != nil {
		return nil, gone(err)
	}
	if s.Memory.Usage, err = fscommon.GetCgroupParamUint(mem, "memory.usage_in_bytes"); err != nil {
		return nil, gone(err)
	}
	lim, err := fscommon.GetCgroupParamUint(mem, "memory.limit_in_bytes")
	if err != nil {
		return nil, gone(err)
	}
	s.Limits.Memory = limit(lim)
	ms, err := memoryStat(mem)
	if err != nil {
		return nil, gone(err)
	}
	v1Memory(s, ms)
	return s, nil
}

// memoryStat parses a v1 memory.stat ("key value" lines).
func memoryStat(dir string) (map[string]uint64, error) {
	b, err := cgroups.ReadFile(dir, "memory.stat")
	if err != nil {
		return nil, err
	}
	out := map[string]uint64{}
	for line := range strings.SplitSeq(b, "\n") {
		if line == "" {
			continue
		}
		k, v, err := fscommon.ParseKeyValue(line)
		if err != nil {
			return nil, fmt.Errorf("memory.stat: %w", err)
		}
		out[k] = v
	}
	return out, nil
}

// v1Memory fills in what memory.stat says. v1 keeps both the cgroup's
// own counters and its subtree's (total_*); cadvisor reports the
// subtree's, and both for faults.
func v1Memory(s *CgroupSample, ms map[string]uint64) {
	s.Memory.Cache = ms["total_cache"]
	s.Memory.RSS = ms["total_rss"]
	s.Memory.MappedFile = ms["total_mapped_file"]
	s.Memory.Swap = ms["total_swap"]
	s.Memory.ActiveFile = ms["total_active_file"]
	s.Memory.InactiveFile = ms["total_inactive_file"]
	s.Memory.PgFault, s.Memory.PgMajFault = ms["pgfault"], ms["pgmajfault"]
	s.Memory.HierPgFault, s.Memory.HierPgMajFault = ms["total_pgfault"], ms["total_pgmajfault"]
	s.Memory.WorkingSet = sub(s.Memory.Usage, s.Memory.InactiveFile)
}

func (r cgroupReader) readV1(dir string) (*CgroupSample, error) {
	paths := map[string]string{}
	for _, c := range v1Controllers {
		if exists(filepath.Join(r.root, c)) {
			paths[c] = filepath.Join(r.root, c, dir)
		}
	}
	mem, ok := paths["memory"]
	if !ok {
		return nil, fmt.Errorf("no memory cgroup hierarchy under %s", r.root)
	}
	// The stat readers skip a controller whose directory is missing, so
	// a vanished cgroup would read as zeros: check first.
	if !exists(mem) {
		return nil, errCgroupGone
	}
	m, err := fs.NewManager(&cgroups.Cgroup{Resources: &cgroups.Resources{}}, paths)
	if err != nil {
		return nil, err
	}
	st, err := m.GetStats()
	if err != nil {
		return nil, gone(err)
	}
	s := &CgroupSample{}
	fromStats(s, st)
	v1Memory(s, st.MemoryStats.Stats)
	s.Memory.Kernel = st.MemoryStats.KernelUsage.Usage
	if s.Memory.OOMKills, err = fs.OOMKillCount(mem); err != nil {
		return nil, gone(err)
	}

	l := &s.Limits
	if cpu, ok := paths["cpu"]; ok {
		l.CPUShares, _ = fscommon.GetCgroupParamUint(cpu, "cpu.shares")
		l.CPUPeriod, _ = fscommon.GetCgroupParamUint(cpu, "cpu.cfs_period_us")
		if q, err := fscommon.GetCgroupParamInt(cpu, "cpu.cfs_quota_us"); err == nil && q > 0 {
			l.CPUQuota = uint64(q)
		}
	}
	l.Memory = limit(st.MemoryStats.Usage.Limit)
	l.Swap = limit(st.MemoryStats.SwapUsage.Limit)
	if v, err := fscommon.GetCgroupParamUint(mem, "memory.soft_limit_in_bytes"); err == nil {
		l.MemoryReservation = limit(v)
	}
	return s, nil
}

func (r cgroupReader) readV2(dir string) (*CgroupSample, error) {
	if !exists(dir) {
		return nil, errCgroupGone
	}
	m, err := fs2.NewManager(&cgroups.Cgroup{Resources: &cgroups.Resources{}}, dir)
	if err != nil {
		return nil, err
	}
	st, err := m.GetStats()
	if err != nil {
		return nil, gone(err)
	}
	s := &CgroupSample{}
	fromStats(s, st)
	ms := st.MemoryStats.Stats
	s.Memory.Cache = ms["file"]
	s.Memory.RSS = ms["anon"]
	s.Memory.MappedFile = ms["file_mapped"]
	s.Memory.Swap = st.MemoryStats.SwapOnlyUsage.Usage
	s.Memory.ActiveFile = ms["active_file"]
	s.Memory.InactiveFile = ms["inactive_file"]
	// v2 counts faults for the whole subtree only.
	s.Memory.PgFault, s.Memory.PgMajFault = ms["pgfault"], ms["pgmajfault"]
	s.Memory.HierPgFault, s.Memory.HierPgMajFault = ms["pgfault"], ms["pgmajfault"]
	if k, ok := ms["kernel"]; ok { // Linux 5.18+
		s.Memory.Kernel = k
	} else {
		s.Memory.Kernel = ms["kernel_stack"] + ms["pagetables"] + ms["percpu"] + ms["sock"] + ms["slab"]
	}
	s.Memory.WorkingSet = sub(s.Memory.Usage, s.Memory.InactiveFile)
	// memory.events "max": times usage was about to pass memory.max,
	// the nearest thing v2 has to v1's failcnt.
	s.Memory.Failcnt, _ = fscommon.GetValueByKey(dir, "memory.events", "max")
	if s.Memory.OOMKills, err = fs2.OOMKillCount(dir); err != nil && !os.IsNotExist(err) {
		return nil, gone(err)
	}
	if cpu, mem, io := st.CpuStats.PSI, st.MemoryStats.PSI, st.BlkioStats.PSI; cpu != nil || mem != nil || io != nil {
		p := &PressureSample{}
		p.CPUSome, p.CPUFull = psi(cpu)
		p.MemorySome, p.MemoryFull = psi(mem)
		p.IOSome, p.IOFull = psi(io)
		p.CPUAvg, p.MemoryAvg, p.IOAvg = psiAvg(cpu), psiAvg(mem), psiAvg(io)
		s.Pressure = p
	}

	l := &s.Limits
	if w, err := fscommon.GetCgroupParamUint(dir, "cpu.weight"); err == nil && w > 0 {
		l.CPUShares = weightToShares(w)
	}
	if v, err := fscommon.GetCgroupParamString(dir, "cpu.max"); err == nil {
		l.CPUQuota, l.CPUPeriod = parseCPUMax(v)
	}
	l.Memory = limit(st.MemoryStats.Usage.Limit)
	l.Swap = limit(st.MemoryStats.SwapOnlyUsage.Limit)
	if v, err := fscommon.GetCgroupParamUint(dir, "memory.low"); err == nil {
		l.MemoryReservation = limit(v)
	}
	return s, nil
}

// fromStats copies what both versions' readers report alike.
func fromStats(s *CgroupSample, st *cgroups.Stats) {
	cu := st.CpuStats.CpuUsage
	th := st.CpuStats.ThrottlingData
	s.CPU = CPUSample{
		UsageNanos: cu.TotalUsage, UserNanos: cu.UsageInUsermode, SystemNanos: cu.UsageInKernelmode,
		Periods: th.Periods, ThrottledPeriods: th.ThrottledPeriods, ThrottledNanos: th.ThrottledTime,
	}
	u := st.MemoryStats.Usage
	s.Memory.Usage, s.Memory.MaxUsage, s.Memory.Failcnt = u.Usage, u.MaxUsage, u.Failcnt
	s.Threads, s.ThreadsMax = st.PidsStats.Current, st.PidsStats.Limit
	s.IO = nil
	byDev := map[[2]uint64]*IOSample{}
	dev := func(e cgroups.BlkioStatEntry) *IOSample {
		k := [2]uint64{e.Major, e.Minor}
		d, ok := byDev[k]
		if !ok {
			d = &IOSample{Major: e.Major, Minor: e.Minor, Bytes: map[string]uint64{}, Ops: map[string]uint64{}}
			byDev[k] = d
		}
		return d
	}
	for _, e := range st.BlkioStats.IoServiceBytesRecursive {
		dev(e).Bytes[e.Op] += e.Value
	}
	for _, e := range st.BlkioStats.IoServicedRecursive {
		dev(e).Ops[e.Op] += e.Value
	}
	for _, d := range byDev {
		s.IO = append(s.IO, *d)
	}
	sort.Slice(s.IO, func(i, j int) bool {
		if s.IO[i].Major != s.IO[j].Major {
			return s.IO[i].Major < s.IO[j].Major
		}
		return s.IO[i].Minor < s.IO[j].Minor
	})
	s.Hugetlb = nil
	for size, h := range st.HugetlbStats {
		s.Hugetlb = append(s.Hugetlb, HugetlbSample{PageSize: size, Usage: h.Usage, MaxUsage: h.MaxUsage})
	}
	sort.Slice(s.Hugetlb, func(i, j int) bool { return s.Hugetlb[i].PageSize < s.Hugetlb[j].PageSize })
}

// nameDevices fills in the device names of s's I/O entries.
func (r cgroupReader) nameDevices(s *CgroupSample) {
	for i := range s.IO {
		d := &s.IO[i]
		if r.devices != nil {
			d.Device = r.devices(d.Major, d.Minor)
		}
		if d.Device == "" {
			d.Device = fmt.Sprintf("%d:%d", d.Major, d.Minor)
		}
	}
}

// blockDevice names a block device from its numbers through sysfs
// (/sys/dev/block/M:m/uevent DEVNAME), as cadvisor's device label does;
// "" when sysfs does not know it.
func blockDevice(major, minor uint64) string {
	b, err := os.ReadFile(fmt.Sprintf("/sys/dev/block/%d:%d/uevent", major, minor))
	if err != nil {
		return ""
	}
	for line := range strings.SplitSeq(string(b), "\n") {
		if name, ok := strings.CutPrefix(line, "DEVNAME="); ok && name != "" {
			return "/dev/" + name
		}
	}
	return ""
}

// limit maps "no limit" (v1's page-rounded MaxInt64, v2's "max") to 0, as
// cadvisor's container_spec_* metrics do.
func limit(v uint64) uint64 {
	if v >= 1<<62 {
		return 0
	}
	return v
}

// weightToShares inverts the shares→weight mapping of the runc that
// sets the cgroup (opencontainers/cgroups ConvertCPUSharesToCgroupV2Value:
// log10(weight) = (l² + 125·l)/612 − 7/34 with l = log2(shares)), so that
// v2 reports the shares that were asked for, as v1 does (1024 ↔ 100).
func weightToShares(w uint64) uint64 {
	switch {
	case w <= 1:
		return 2
	case w >= 10000:
		return 262144
	}
	c := 612 * (math.Log10(float64(w)) + 7.0/34.0)
	l := (-125 + math.Sqrt(125*125+4*c)) / 2
	return uint64(math.Round(math.Pow(2, l)))
}

// parseCPUMax reads cgroup v2's cpu.max ("$MAX $PERIOD", MAX "max" for
// no quota).
func parseCPUMax(v string) (quota, period uint64) {
	f := strings.Fields(v)
	if len(f) > 1 {
		period, _ = strconv.ParseUint(f[1], 10, 64)
	}
	if len(f) > 0 && f[0] != "max" {
		quota, _ = strconv.ParseUint(f[0], 10, 64)
	}
	return quota, period
}

func psi(p *cgroups.PSIStats) (some, full uint64) {
	if p == nil {
		return 0, 0
	}
	return p.Some.Total, p.Full.Total
}

func psiAvg(p *cgroups.PSIStats) PressureAverages {
	if p == nil {
		return PressureAverages{}
	}
	return PressureAverages{
		Some: [3]float64{p.Some.Avg10, p.Some.Avg60, p.Some.Avg300},
		Full: [3]float64{p.Full.Avg10, p.Full.Avg60, p.Full.Avg300},
	}
}

func sub(a, b uint64) uint64 {
	if b > a {
		return 0
	}
	return a - b
}

// gone classifies a read error: a file that vanished means the cgroup
// went away while it was read.
func gone(err error) error {
	if errors.Is(err, os.ErrNotExist) || errors.Is(err, errCgroupGone) {
		return errCgroupGone
	}
	return err
}

func exists(p string) bool {
	_, err := os.Stat(p)
	return err == nil
}

// expandSlice lays out a systemd slice as its cgroup path, as systemd
// does: a-b-c.slice is /a.slice/a-b.slice/a-b-c.slice.
func expandSlice(slice string) string {
	name := strings.TrimSuffix(slice, ".slice")
	if name == "" || name == "-" {
		return "/"
	}
	parts := strings.Split(name, "-")
	dir := "/"
	for i := range parts {
		dir = filepath.Join(dir, strings.Join(parts[:i+1], "-")+".slice")
	}
	return dir
}

// podCgroupDir is the pod cgroup for a sandbox's cgroup_parent: the path
// itself with cgroupfs, the expanded slice with systemd; "" for none.
func podCgroupDir(parent string, systemd bool) string {
	switch {
	case parent == "":
		return ""
	case systemd:
		return expandSlice(filepath.Base(parent))
	case !strings.HasPrefix(parent, "/"):
		return "/" + parent
	}
	return filepath.Clean(parent)
}
