package netcni

import (
	"errors"
	"fmt"
	"os"
	"path/filepath"
	"strconv"
	"strings"

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
	if name == "" || name == "." || name == ".." || strings.ContainsRune(name, '/') {
		return "", errdefs.InvalidArgument("invalid network namespace name %q", name)
	}
	if !filepath.IsAbs(dir) {
		return "", errdefs.InvalidArgument("network namespace directory %q is not absolute", dir)
	}
	if pid <= 0 {
		return "", errdefs.InvalidArgument("no process to pin the network namespace of (pid %d)", pid)
	}
	if err := os.MkdirAll(dir, 0o755); err != nil {
		return "", fmt.Errorf("create netns directory: %w", err)
	}
	if err := makeSharedMount(dir); err != nil {
		return "", err
	}
	path := filepath.Join(dir, name)
	f, err := os.OpenFile(path, os.O_RDONLY|os.O_CREATE|os.O_EXCL, 0o444)
	if err != nil {
		if errors.Is(err, os.ErrExist) {
			return "", errdefs.AlreadyExists("network namespace %s already exists", path)
		}
		return "", fmt.Errorf("create netns pin file: %w", err)
	}
	_ = f.Close()
	src := "/proc/" + strconv.Itoa(pid) + "/ns/net"
	if err := unix.Mount(src, path, "none", unix.MS_BIND, ""); err != nil {
		_ = os.Remove(path)
		return "", fmt.Errorf("pin network namespace of pid %d at %s: %w", pid, path, err)
	}
	return path, nil
}
