package netcni

import (
	"errors"
	"fmt"
	"os"
	"path/filepath"
	"runtime"
	"strings"

	"golang.org/x/sys/unix"

	"github.com/noded-dev/noded/internal/errdefs"
)

// Pinned network namespaces.
//
// A pod's network namespace must outlive its processes (the pause process
// may die and be restarted, and CNI DEL needs the namespace after the pod
// stopped), so noded pins it: the namespace file of a thread that unshared
// it is bind-mounted onto a file <dir>/<name>, as `ip netns add` does with
// /run/netns. The pin is what CNI plugins and the OCI runtime get as the
// namespace path.
//
// The directory is made a mount point with shared propagation (iproute2 does
// the same): a namespace mount copied into another mount namespace created
// later (a container, a systemd unit with PrivateTmp...) then receives our
// unmount too, instead of keeping the network namespace alive there.

// NSFS_MAGIC, the f_type statfs reports for a namespace file.
const nsfsMagic = 0x6e736673

// NewNetNS creates a new network namespace and pins it at dir/name, which
// must not exist yet (errdefs.ErrAlreadyExists otherwise). It returns the
// pinned path. The calling goroutine's thread and namespace are unchanged.
func NewNetNS(dir, name string) (string, error) {
	return pinAt(dir, name, pinNewNetNS)
}

// pinAt makes the pin file dir/name (refusing a name that is not one path
// element, or one that exists) in the shared-propagation directory dir,
// and has pin bind-mount a namespace onto it; the file is removed if pin
// fails.
func pinAt(dir, name string, pin func(path string) error) (string, error) {
	if name == "" || name == "." || name == ".." || strings.ContainsRune(name, '/') {
		return "", errdefs.InvalidArgument("invalid network namespace name %q", name)
	}
	if !filepath.IsAbs(dir) {
		return "", errdefs.InvalidArgument("network namespace directory %q is not absolute", dir)
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
	if err := pin(path); err != nil {
		_ = os.Remove(path)
		return "", err
	}
	return path, nil
}

// pinNewNetNS unshares a new network namespace on a dedicated, locked OS
// thread, bind-mounts the thread's namespace file onto path and switches the
// thread back. The work runs in its own goroutine so that a thread whose
// namespace cannot be restored is never reused: the goroutine then exits
// still locked and the Go runtime terminates the thread.
func pinNewNetNS(path string) error {
	errc := make(chan error, 1)
	go func() {
		runtime.LockOSThread()
		tid := unix.Gettid()
		self := fmt.Sprintf("/proc/%d/task/%d/ns/net", os.Getpid(), tid)
		orig, err := unix.Open(self, unix.O_RDONLY|unix.O_CLOEXEC, 0)
		if err != nil {
			runtime.UnlockOSThread()
			errc <- fmt.Errorf("open current netns: %w", err)
			return
		}
		defer unix.Close(orig)

		if err := unix.Unshare(unix.CLONE_NEWNET); err != nil {
			runtime.UnlockOSThread()
			errc <- fmt.Errorf("unshare network namespace: %w", err)
			return
		}
		mountErr := unix.Mount(self, path, "none", unix.MS_BIND, "")
		if err := unix.Setns(orig, unix.CLONE_NEWNET); err != nil {
			// Leave the thread locked: it dies with this goroutine.
			if mountErr == nil {
				_ = unix.Unmount(path, unix.MNT_DETACH)
			}
			errc <- fmt.Errorf("restore network namespace of thread %d: %w", tid, err)
			return
		}
		runtime.UnlockOSThread()
		if mountErr != nil {
			errc <- fmt.Errorf("pin network namespace at %s: %w", path, mountErr)
			return
		}
		errc <- nil
	}()
	return <-errc
}

// makeSharedMount makes dir a mount point with shared propagation: first
// try to mark it shared; if dir is not a mount point yet (EINVAL), bind it
// onto itself and try again. It is cheap and idempotent.
func makeSharedMount(dir string) error {
	err := unix.Mount("", dir, "none", unix.MS_SHARED|unix.MS_REC, "")
	if err == nil {
		return nil
	}
	if !errors.Is(err, unix.EINVAL) {
		return fmt.Errorf("make %s a shared mount: %w", dir, err)
	}
	if err := unix.Mount(dir, dir, "none", unix.MS_BIND|unix.MS_REC, ""); err != nil {
		return fmt.Errorf("bind mount %s onto itself: %w", dir, err)
	}
	if err := unix.Mount("", dir, "none", unix.MS_SHARED|unix.MS_REC, ""); err != nil {
		return fmt.Errorf("make %s a shared mount: %w", dir, err)
	}
	return nil
}

// RemoveNetNS unpins and deletes a namespace pinned by NewNetNS. The
// namespace itself goes away when nothing else (a process, another mount)
// holds it. Removing a path that is not mounted or does not exist is not an
// error, so RemoveNetNS can be called again after a failure or a restart.
func RemoveNetNS(path string) error {
	if path == "" {
		return nil
	}
	// Unmount every layer in case the pin was mounted more than once.
	for range 8 {
		err := unix.Unmount(path, unix.MNT_DETACH)
		if err == nil {
			continue
		}
		if errors.Is(err, unix.EINVAL) || errors.Is(err, unix.ENOENT) {
			break // not a mount point (any more), or gone
		}
		return fmt.Errorf("unmount network namespace %s: %w", path, err)
	}
	if err := os.Remove(path); err != nil && !errors.Is(err, os.ErrNotExist) {
		return fmt.Errorf("remove network namespace pin %s: %w", path, err)
	}
	return nil
}

// CheckNetNS reports whether path is a usable network namespace: nil when it
// is a namespace file (a pin or /proc/PID/ns/net) for a network namespace,
// an errdefs.ErrNotFound error when path does not exist, and an
// errdefs.ErrFailedPrecondition error when it exists but is no namespace
// (for example a pin file whose mount is gone).
func CheckNetNS(path string) error {
	if path == "" {
		return errdefs.InvalidArgument("empty network namespace path")
	}
	var st unix.Statfs_t
	if err := unix.Statfs(path, &st); err != nil {
		if errors.Is(err, unix.ENOENT) {
			return errdefs.NotFound("network namespace %s does not exist", path)
		}
		return fmt.Errorf("stat network namespace %s: %w", path, err)
	}
	if st.Type != nsfsMagic {
		return errdefs.FailedPrecondition("%s is not a network namespace (not mounted)", path)
	}
	// It is a namespace; make sure it is a network one.
	fd, err := unix.Open(path, unix.O_RDONLY|unix.O_CLOEXEC, 0)
	if err != nil {
		return fmt.Errorf("open network namespace %s: %w", path, err)
	}
	defer unix.Close(fd)
	nstype, err := unix.IoctlRetInt(fd, unix.NS_GET_NSTYPE)
	if err != nil {
		// Kernels before 4.11 have no NS_GET_NSTYPE; nsfs is enough there.
		if errors.Is(err, unix.ENOTTY) {
			return nil
		}
		return fmt.Errorf("namespace type of %s: %w", path, err)
	}
	if nstype != unix.CLONE_NEWNET {
		return errdefs.FailedPrecondition("%s is not a network namespace", path)
	}
	return nil
}
