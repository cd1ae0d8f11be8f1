package podmetrics

import (
	"fmt"
	"sync"

	"github.com/moby/sys/mountinfo"
	"golang.org/x/sys/unix"

	"github.com/noded-dev/noded/internal/storage"
)

// filesystems describes the filesystem a writable layer is on: its
// capacity and inodes (statfs) and its device, named as cadvisor's device
// label names it (the mount's source, e.g. /dev/vda1). Device names are
// looked up in mountinfo once per device number.
type filesystems struct {
	mu      sync.Mutex
	devices map[uint64]string
}

func (f *filesystems) sample(u storage.FsUsage) (*FsSample, error) {
	var st unix.Statfs_t
	if err := unix.Statfs(u.Mountpoint, &st); err != nil {
		return nil, fmt.Errorf("statfs %s: %w", u.Mountpoint, err)
	}
	bsize := uint64(st.Bsize) //nolint:gosec // a block size is never negative
	s := &FsSample{
		Mountpoint: u.Mountpoint,
		UsedBytes:  u.UsedBytes, InodesUsed: u.InodesUsed,
		CapacityBytes: st.Blocks * bsize, AvailableBytes: st.Bavail * bsize,
		InodesTotal: st.Files, InodesFree: st.Ffree,
	}
	var fi unix.Stat_t
	if err := unix.Stat(u.Mountpoint, &fi); err != nil {
		return nil, fmt.Errorf("stat %s: %w", u.Mountpoint, err)
	}
	s.Device = f.device(fi.Dev)
	return s, nil
}

func (f *filesystems) device(dev uint64) string {
	f.mu.Lock()
	defer f.mu.Unlock()
	if name, ok := f.devices[dev]; ok {
		return name
	}
	major, minor := int(unix.Major(dev)), int(unix.Minor(dev))
	name := fmt.Sprintf("%d:%d", major, minor)
	mounts, err := mountinfo.GetMounts(func(i *mountinfo.Info) (bool, bool) {
		return i.Major != major || i.Minor != minor, false
	})
	if err != nil {
		return name // not cached: mountinfo may be readable next time
	}
	if len(mounts) > 0 && mounts[0].Source != "" {
		name = mounts[0].Source
	}
	if f.devices == nil {
		f.devices = map[uint64]string{}
	}
	f.devices[dev] = name
	return name
}
