package netcni

import (
	"fmt"
	"strconv"

	"golang.org/x/sys/unix"

	"github.com/noded-dev/noded/internal/errdefs"
)

// PinNetNSOf pins the network namespace of process pid at dir/name, as
// NewNetNS pins a new one (same directory, same propagation, removed with
// RemoveNetNS). It is for a namespace noded cannot make itself: a pod with
// a user namespace of its own has its network namespace made by its pause
// process inside that user namespace, since one the host's user namespace
// owned would keep the pod's root from mounting sysfs or setting its
// net.* sysctls.
func PinNetNSOf(dir, name string, pid int) (string, error) {
	if pid <= 0 {
		return "", errdefs.InvalidArgument("no process to pin the network namespace of (pid %d)", pid)
	}
	return pinAt(dir, name, func(path string) error {
		src := "/proc/" + strconv.Itoa(pid) + "/ns/net"
		if err := unix.Mount(src, path, "none", unix.MS_BIND, ""); err != nil {
			return fmt.Errorf("pin network namespace of pid %d at %s: %w", pid, path, err)
		}
		return nil
	})
}
