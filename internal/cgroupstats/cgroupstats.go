// Package cgroupstats reads a container's CPU and memory usage from its
// cgroup, on cgroup v1 (each controller its own hierarchy, as on this
// project's hosts where cpu and cpuacct are separate) and on v2.
package cgroupstats

import (
	"bufio"
	"errors"
	"fmt"
	"os"
	"path/filepath"
	"strconv"
	"strings"

	"golang.org/x/sys/unix"
)

// Stats is one sample.
type Stats struct {
	// CPUNanos is the cumulative CPU time, in nanoseconds.
	CPUNanos uint64
	// MemoryUsage is the memory charged to the cgroup; WorkingSet is that
	// less inactive file pages, the figure the kubelet evicts on.
	MemoryUsage uint64
	WorkingSet  uint64
	RSS         uint64
	PageFaults  uint64
	MajorFaults uint64
}

// Reader reads stats below a cgroup root (/sys/fs/cgroup).
type Reader struct {
	Root string
	// V2 is true on a unified hierarchy.
	V2 bool
}

// NewReader inspects /sys/fs/cgroup.
func NewReader() Reader {
	var st unix.Statfs_t
	v2 := unix.Statfs("/sys/fs/cgroup", &st) == nil && st.Type == unix.CGROUP2_SUPER_MAGIC
	return Reader{Root: "/sys/fs/cgroup", V2: v2}
}

// Dir turns an OCI cgroupsPath into a path relative to a hierarchy: a
// cgroupfs path is used as is; a systemd "slice:prefix:name" is expanded
// the way runc's systemd driver lays it out.
func Dir(cgroupsPath string) string {
	parts := strings.Split(cgroupsPath, ":")
	if len(parts) != 3 || strings.HasPrefix(cgroupsPath, "/") {
		return cgroupsPath
	}
	slice, prefix, name := parts[0], parts[1], parts[2]
	if slice == "" {
		slice = "system.slice"
	}
	var dir string
	if slice != "-.slice" {
		// a-b-c.slice lives at a.slice/a-b.slice/a-b-c.slice.
		base := strings.TrimSuffix(slice, ".slice")
		comps := strings.Split(base, "-")
		for i := range comps {
			dir = filepath.Join(dir, strings.Join(comps[:i+1], "-")+".slice")
		}
	}
	unit := name
	if prefix != "" {
		unit = prefix + "-" + name
	}
	if !strings.HasSuffix(unit, ".scope") && !strings.HasSuffix(unit, ".slice") {
		unit += ".scope"
	}
	return filepath.Join("/", dir, unit)
}

// Read samples the cgroup at cgroupsPath.
func (r Reader) Read(cgroupsPath string) (Stats, error) {
	dir := Dir(cgroupsPath)
	if r.V2 {
		return r.readV2(filepath.Join(r.Root, dir))
	}
	return r.readV1(dir)
}

func (r Reader) readV1(dir string) (Stats, error) {
	var s Stats
	var err error
	if s.CPUNanos, err = readUint(filepath.Join(r.Root, "cpuacct", dir, "cpuacct.usage")); err != nil {
		return s, err
	}
	mem := filepath.Join(r.Root, "memory", dir)
	if s.MemoryUsage, err = readUint(filepath.Join(mem, "memory.usage_in_bytes")); err != nil {
		return s, err
	}
	kv, err := readKV(filepath.Join(mem, "memory.stat"))
	if err != nil {
		return s, err
	}
	s.WorkingSet = sub(s.MemoryUsage, kv["total_inactive_file"])
	s.RSS = kv["total_rss"]
	s.PageFaults, s.MajorFaults = kv["total_pgfault"], kv["total_pgmajfault"]
	return s, nil
}

func (r Reader) readV2(dir string) (Stats, error) {
	var s Stats
	cpu, err := readKV(filepath.Join(dir, "cpu.stat"))
	if err != nil {
		return s, err
	}
	s.CPUNanos = cpu["usage_usec"] * 1000
	if s.MemoryUsage, err = readUint(filepath.Join(dir, "memory.current")); err != nil {
		return s, err
	}
	kv, err := readKV(filepath.Join(dir, "memory.stat"))
	if err != nil {
		return s, err
	}
	s.WorkingSet = sub(s.MemoryUsage, kv["inactive_file"])
	s.RSS = kv["anon"]
	s.PageFaults, s.MajorFaults = kv["pgfault"], kv["pgmajfault"]
	return s, nil
}

func sub(a, b uint64) uint64 {
	if b > a {
		return 0
	}
	return a - b
}

func readUint(path string) (uint64, error) {
	b, err := os.ReadFile(path)
	if err != nil {
		return 0, err
	}
	v, err := strconv.ParseUint(strings.TrimSpace(string(b)), 10, 64)
	if err != nil {
		return 0, fmt.Errorf("%s: %w", path, err)
	}
	return v, nil
}

// readKV parses "key value" lines (memory.stat, cpu.stat).
func readKV(path string) (map[string]uint64, error) {
	f, err := os.Open(path)
	if err != nil {
		return nil, err
	}
	defer f.Close()
	out := map[string]uint64{}
	sc := bufio.NewScanner(f)
	for sc.Scan() {
		k, v, ok := strings.Cut(sc.Text(), " ")
		if !ok {
			continue
		}
		if n, err := strconv.ParseUint(strings.TrimSpace(v), 10, 64); err == nil {
			out[k] = n
		}
	}
	return out, sc.Err()
}

// IsGone reports whether err means the cgroup no longer exists.
func IsGone(err error) bool { return errors.Is(err, os.ErrNotExist) }
