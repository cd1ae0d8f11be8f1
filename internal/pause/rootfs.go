package pause

import (
	"bytes"
	"fmt"
	"os"
	"path/filepath"

	"github.com/noded-dev/noded/internal/atomicfile"
)

// mountpoints are the paths a pod sandbox's mounts need in its root
// filesystem (internal/specgen's pause mounts: /proc, /dev, which the
// runtime fills with a tmpfs holding shm, pts and mqueue, /sys and the
// pod's resolv.conf). In a container's own writable layer the runtime
// creates them; a shared root filesystem has them made once, here, so
// that nothing is ever written to it while sandboxes start.
var mountpoints = []struct {
	path string
	dir  bool
}{
	{"proc", true}, {"dev", true}, {"sys", true}, {"etc", true}, {"etc/resolv.conf", false},
}

// WriteRootfs makes dir the root filesystem of the built-in pause image:
// the binary at /pause, as the image's layer has it, and the sandbox's
// mountpoints. Every pod sandbox without a user namespace runs on it,
// read-only (its OCI root is read-only, and the pause process never
// writes), instead of on a storage container of its own: no writable
// layer, overlay mount, or store records to make and remove per pod.
//
// It is idempotent, and safe while sandboxes run on dir: a changed binary
// replaces the old one by a rename (running pause processes keep the file
// they were started from); one already in place is left alone.
func WriteRootfs(dir string, binary []byte) error {
	if len(binary) == 0 {
		return fmt.Errorf("pause binary is empty")
	}
	if err := os.MkdirAll(dir, 0o755); err != nil {
		return fmt.Errorf("pause root filesystem: %w", err)
	}
	for _, m := range mountpoints {
		p := filepath.Join(dir, m.path)
		var err error
		if m.dir {
			err = os.Mkdir(p, 0o755)
		} else {
			var f *os.File
			if f, err = os.OpenFile(p, os.O_WRONLY|os.O_CREATE|os.O_EXCL, 0o644); err == nil {
				err = f.Close()
			}
		}
		if err != nil && !os.IsExist(err) {
			return fmt.Errorf("pause root filesystem: %w", err)
		}
	}
	bin := filepath.Join(dir, EntryName)
	// A write a kill cut short left its temporary file (atomicfile's
	// ".tmp-<name>-*"); noded is the directory's only writer.
	if stale, err := filepath.Glob(filepath.Join(dir, ".tmp-"+EntryName+"-*")); err == nil {
		for _, f := range stale {
			_ = os.Remove(f)
		}
	}
	if cur, err := os.ReadFile(bin); err == nil && bytes.Equal(cur, binary) {
		return nil
	}
	if err := atomicfile.WriteFile(bin, binary, EntryMode); err != nil {
		return fmt.Errorf("pause root filesystem: %w", err)
	}
	return nil
}
