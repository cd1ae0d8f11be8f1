package sandbox

import (
	"errors"
	"fmt"

	"golang.org/x/sys/unix"

	"github.com/noded-dev/noded/internal/netcni"
)

// RealHost is the kernel side of a pod (see host): tmpfs mounts and
// pinned network namespaces. It needs root.
type RealHost struct{}

// MountShm mounts the pod's /dev/shm, as Docker and containerd do.
func (RealHost) MountShm(path string, size int64) error {
	opts := fmt.Sprintf("mode=1777,size=%d", size)
	if err := unix.Mount("shm", path, "tmpfs", unix.MS_NOSUID|unix.MS_NODEV|unix.MS_NOEXEC, opts); err != nil {
		return fmt.Errorf("mounting pod /dev/shm: %w", err)
	}
	return nil
}

// UnmountShm unmounts it; not mounted (EINVAL) or gone (ENOENT) is fine.
func (RealHost) UnmountShm(path string) error {
	if err := unix.Unmount(path, unix.MNT_DETACH); err != nil && !errors.Is(err, unix.EINVAL) && !errors.Is(err, unix.ENOENT) {
		return fmt.Errorf("unmounting %s: %w", path, err)
	}
	return nil
}

// NewNetNS pins a new network namespace (netcni.NewNetNS).
func (RealHost) NewNetNS(dir, name string) (string, error) { return netcni.NewNetNS(dir, name) }

// RemoveNetNS unpins and removes it (netcni.RemoveNetNS).
func (RealHost) RemoveNetNS(path string) error { return netcni.RemoveNetNS(path) }
