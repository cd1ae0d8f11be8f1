package specgen

import (
	"bufio"
	"errors"
	"fmt"
	"io"
	"io/fs"
	"os"
	"path/filepath"
	"strconv"
	"strings"

	"github.com/moby/sys/mountinfo"
	specs "github.com/opencontainers/runtime-spec/specs-go"
	"golang.org/x/sys/unix"
)

const cgroupRoot = "/sys/fs/cgroup"

// DetectNode reads the host facts of Node from noded's own process and the
// cgroup file system. The caller adds its configuration (CgroupManager,
// DefaultCapabilities, ...).
func DetectNode() (Node, error) {
	var n Node
	var err error
	if n.HostCapabilities, err = readCapabilities("/proc/self/status"); err != nil {
		return n, err
	}
	if n.OOMScoreAdjMin, err = readOOMScoreAdj("/proc/self/oom_score_adj"); err != nil {
		return n, err
	}
	var st unix.Statfs_t
	if err := unix.Statfs(cgroupRoot, &st); err != nil {
		return n, fmt.Errorf("statfs %s: %w", cgroupRoot, err)
	}
	n.CgroupV2 = st.Type == unix.CGROUP2_SUPER_MAGIC
	n.SwapAccounting = swapAccounting(n.CgroupV2)
	n.Hugetlb = hugetlb(n.CgroupV2)
	if n.CgroupV2 {
		n.CgroupMountOptions = cgroupMountOptions()
	}
	if n.Hostname, err = os.Hostname(); err != nil {
		return n, fmt.Errorf("host name: %w", err)
	}
	return n, nil
}

// readCapabilities returns the capabilities noded can hand on: those both
// effective and in its bounding set.
func readCapabilities(statusFile string) ([]string, error) {
	f, err := os.Open(statusFile)
	if err != nil {
		return nil, err
	}
	defer f.Close()
	eff, bnd, err := parseCapStatus(f)
	if err != nil {
		return nil, fmt.Errorf("%s: %w", statusFile, err)
	}
	return capabilityNames(eff & bnd), nil
}

// parseCapStatus reads the CapEff and CapBnd masks of a /proc/<pid>/status.
func parseCapStatus(r io.Reader) (eff, bnd uint64, err error) {
	found := 0
	sc := bufio.NewScanner(r)
	for sc.Scan() {
		key, val, ok := strings.Cut(sc.Text(), ":")
		if !ok || (key != "CapEff" && key != "CapBnd") {
			continue
		}
		mask, err := strconv.ParseUint(strings.TrimSpace(val), 16, 64)
		if err != nil {
			return 0, 0, fmt.Errorf("parsing %s: %w", key, err)
		}
		if key == "CapEff" {
			eff = mask
		} else {
			bnd = mask
		}
		found++
	}
	if err := sc.Err(); err != nil {
		return 0, 0, err
	}
	if found != 2 {
		return 0, 0, errors.New("CapEff or CapBnd missing")
	}
	return eff, bnd, nil
}

func readOOMScoreAdj(file string) (int, error) {
	b, err := os.ReadFile(file)
	if err != nil {
		return 0, err
	}
	v, err := strconv.Atoi(strings.TrimSpace(string(b)))
	if err != nil {
		return 0, fmt.Errorf("%s: %w", file, err)
	}
	return v, nil
}

// swapAccounting checks for the swap limit file, as containerd does: on v2
// it exists only below the root, so noded's own cgroup is looked at.
func swapAccounting(v2 bool) bool {
	p := filepath.Join(cgroupRoot, "memory", "memory.memsw.limit_in_bytes")
	if v2 {
		self, err := ownCgroupV2()
		if err != nil {
			return false
		}
		p = filepath.Join(cgroupRoot, self, "memory.swap.max")
	}
	_, err := os.Stat(p)
	return err == nil
}

// ownCgroupV2 returns noded's cgroup from the "0::" line of /proc/self/cgroup.
func ownCgroupV2() (string, error) {
	b, err := os.ReadFile("/proc/self/cgroup")
	if err != nil {
		return "", err
	}
	for _, line := range strings.Split(string(b), "\n") {
		if p, ok := strings.CutPrefix(line, "0::"); ok {
			return p, nil
		}
	}
	return "", errors.New("no cgroup v2 entry in /proc/self/cgroup")
}

func hugetlb(v2 bool) bool {
	if !v2 {
		_, err := os.Stat(filepath.Join(cgroupRoot, "hugetlb"))
		return err == nil
	}
	b, err := os.ReadFile(filepath.Join(cgroupRoot, "cgroup.controllers"))
	return err == nil && strings.Contains(" "+string(b)+" ", " hugetlb")
}

// cgroupMountOptions returns the host cgroup2 options a second mount of the
// same super block must keep.
func cgroupMountOptions() []string {
	mounts, err := mountinfo.GetMounts(mountinfo.SingleEntryFilter(cgroupRoot))
	if err != nil || len(mounts) == 0 {
		return nil
	}
	var out []string
	for _, o := range strings.Split(mounts[0].VFSOptions, ",") {
		if o == "nsdelegate" || o == "memory_recursiveprot" {
			out = append(out, o)
		}
	}
	return out
}

// OSFS is the real host's HostFS.
type OSFS struct{}

// Devices implements HostFS.
func (OSFS) Devices(path string) ([]specs.LinuxDevice, error) {
	real, err := filepath.EvalSymlinks(path)
	if err != nil {
		return nil, err
	}
	fi, err := os.Stat(real)
	if err != nil {
		return nil, err
	}
	if !fi.IsDir() {
		d, err := deviceFromPath(real)
		if err != nil {
			return nil, err
		}
		d.Path = ""
		return []specs.LinuxDevice{d}, nil
	}
	return devicesUnder(real, "")
}

// skippedDeviceDirs are /dev directories that hold no device nodes of their
// own or that the container gets separately (containerd's list).
var skippedDeviceDirs = map[string]bool{
	"pts": true, "shm": true, "fd": true, "mqueue": true,
	".lxc": true, ".lxd-mounts": true, ".udev": true,
}

// devicesUnder lists the device nodes below dir, with paths relative to
// the directory first asked for. Symlinks, FIFOs, the console and files
// that vanish meanwhile are skipped.
func devicesUnder(dir, rel string) ([]specs.LinuxDevice, error) {
	entries, err := os.ReadDir(filepath.Join(dir, rel))
	if err != nil {
		return nil, err
	}
	var out []specs.LinuxDevice
	for _, e := range entries {
		name := filepath.Join(rel, e.Name())
		switch {
		case e.IsDir() && skippedDeviceDirs[e.Name()]:
		case e.IsDir():
			sub, err := devicesUnder(dir, name)
			if err != nil {
				return nil, err
			}
			out = append(out, sub...)
		case e.Name() == "console":
		default:
			d, err := deviceFromPath(filepath.Join(dir, name))
			if errors.Is(err, errNotDevice) || errors.Is(err, fs.ErrNotExist) {
				continue
			}
			if err != nil {
				return nil, err
			}
			d.Path = name
			out = append(out, d)
		}
	}
	return out, nil
}

var errNotDevice = errors.New("not a device node")

// deviceFromPath describes the block or character device at path (not
// following a final symlink).
func deviceFromPath(path string) (specs.LinuxDevice, error) {
	var st unix.Stat_t
	if err := unix.Lstat(path, &st); err != nil {
		return specs.LinuxDevice{}, &fs.PathError{Op: "lstat", Path: path, Err: err}
	}
	var typ string
	switch st.Mode & unix.S_IFMT {
	case unix.S_IFBLK:
		typ = "b"
	case unix.S_IFCHR:
		typ = "c"
	default:
		return specs.LinuxDevice{}, fmt.Errorf("%s: %w", path, errNotDevice)
	}
	uid, gid := st.Uid, st.Gid
	return specs.LinuxDevice{
		Path:     path,
		Type:     typ,
		Major:    int64(unix.Major(st.Rdev)),
		Minor:    int64(unix.Minor(st.Rdev)),
		FileMode: fileMode(os.FileMode(st.Mode &^ unix.S_IFMT)),
		UID:      &uid,
		GID:      &gid,
	}, nil
}

// BindSource implements HostFS. Symlinks are resolved on the host, as
// containerd and CRI-O do (a relative one from its own directory, so that
// /lib/modules through merged /usr's lib -> usr/lib works). A path that
// does not exist is made as a directory; one that leads through a symlink
// to nothing is refused instead of making the link's target, which may be
// anywhere, and instead of mkdir's bare "file exists".
func (OSFS) BindSource(path string) (string, error) {
	real, err := filepath.EvalSymlinks(path)
	if !errors.Is(err, fs.ErrNotExist) {
		return real, err
	}
	if _, err := os.Lstat(path); err == nil {
		target, _ := os.Readlink(path)
		return "", fmt.Errorf("a symlink to %q, which does not exist", target)
	}
	if err := os.MkdirAll(path, 0o755); errors.Is(err, fs.ErrExist) {
		return "", errors.New("a symlink on the way leads to a path that does not exist")
	} else if err != nil {
		return "", err
	}
	return filepath.EvalSymlinks(path)
}

// MountPropagation implements HostFS.
func (OSFS) MountPropagation(path string) (shared, slave bool, err error) {
	mounts, err := mountinfo.GetMounts(mountinfo.ParentsFilter(path))
	if err != nil {
		return false, false, err
	}
	var holder *mountinfo.Info
	for _, m := range mounts {
		if holder == nil || len(m.Mountpoint) >= len(holder.Mountpoint) {
			holder = m
		}
	}
	if holder == nil {
		return false, false, fmt.Errorf("no mount holds %s", path)
	}
	shared, slave = propagationFlags(holder.Optional)
	return shared, slave, nil
}

// propagationFlags reads the optional fields of a mountinfo line.
func propagationFlags(optional string) (shared, slave bool) {
	for _, f := range strings.Fields(optional) {
		shared = shared || strings.HasPrefix(f, "shared:")
		slave = slave || strings.HasPrefix(f, "master:")
	}
	return shared, slave
}
