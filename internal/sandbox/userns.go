package sandbox

import (
	"os"
	"path/filepath"

	specs "github.com/opencontainers/runtime-spec/specs-go"

	"github.com/noded-dev/noded/internal/netcni"
	"github.com/noded-dev/noded/internal/storage"
)

// Pods with a user namespace of their own (hostUsers: false; the rules are
// in internal/specgen/userns.go). Here: the pause process makes the user
// namespace and, inside it, the pod's network namespace, which noded pins
// once the pause runs (then attaches it through CNI, after the pause rather
// than alongside it); the root file systems are ID-mapped storage
// containers; containers join the user namespace through the pause
// process, as its other namespaces. The mappings come from the pod's
// record (its config), and a storage container keeps its own, so a
// container created after a restart of noded is mapped as the first one.

// PinNetNS pins the network namespace of process pid (netcni.PinNetNSOf).
func (RealHost) PinNetNS(dir, name string, pid int) (string, error) {
	return netcni.PinNetNSOf(dir, name, pid)
}

func storageIDMaps(ms []specs.LinuxIDMapping) []storage.IDMap {
	out := make([]storage.IDMap, len(ms))
	for i, m := range ms {
		out[i] = storage.IDMap{ContainerID: m.ContainerID, HostID: m.HostID, Size: m.Size}
	}
	return out
}

// traversable lets any user search the directories above a root file
// system, as CRI-O does (makeAccessible): runc's init mounts the root
// file system as the pod's root, an unprivileged host uid with no
// capability over the host's directories, so a 0700 directory on the way
// (noded's state and storage directories are) would refuse it. Only the
// search bit is added; nothing is made readable.
func traversable(rootfs string) error {
	for dir := filepath.Dir(rootfs); ; dir = filepath.Dir(dir) {
		fi, err := os.Stat(dir)
		if err != nil {
			return err
		}
		if perm := fi.Mode().Perm(); perm&0o111 != 0o111 {
			if err := os.Chmod(dir, perm|0o111); err != nil {
				return err
			}
		}
		if dir == "/" || dir == "." {
			return nil
		}
	}
}
