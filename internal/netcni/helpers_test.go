package netcni

import (
	"crypto/rand"
	"encoding/hex"
	"os"
	"os/exec"
	"path/filepath"
	"runtime"
	"testing"

	"golang.org/x/sys/unix"
)

// requireRoot skips tests that need root to create namespaces and mounts.
func requireRoot(t *testing.T) {
	t.Helper()
	if os.Geteuid() != 0 {
		t.Skip("needs root: creates network namespaces and mounts")
	}
}

// cniPluginDir is where the Debian containernetworking-plugins package
// installs the plugins the integration tests use.
const cniPluginDir = "/usr/lib/cni"

// requirePlugins skips unless root and the plugins and tools exist.
func requirePlugins(t *testing.T, plugins ...string) {
	t.Helper()
	requireRoot(t)
	for _, p := range plugins {
		if _, err := os.Stat(filepath.Join(cniPluginDir, p)); err != nil {
			t.Skipf("CNI plugin %s missing (apt-get install -y containernetworking-plugins): %v", p, err)
		}
	}
	for _, tool := range []string{"iptables", "iptables-save"} {
		if _, err := exec.LookPath(tool); err != nil {
			t.Skipf("%s missing (apt-get install -y iptables)", tool)
		}
	}
}

func randHex(t *testing.T, n int) string {
	t.Helper()
	b := make([]byte, n)
	if _, err := rand.Read(b); err != nil {
		t.Fatal(err)
	}
	return hex.EncodeToString(b)
}

// netnsDir returns a temporary directory for pinned namespaces. NewNetNS
// turns it into a mount point; the cleanup unmounts it (after the test has
// removed its pins) before the temporary directory is deleted.
func netnsDir(t *testing.T) string {
	t.Helper()
	dir := filepath.Join(t.TempDir(), "netns")
	t.Cleanup(func() {
		for range 4 {
			if err := unix.Unmount(dir, unix.MNT_DETACH); err != nil {
				break
			}
		}
	})
	return dir
}

// newTestNetNS pins a new namespace and removes it at the end of the test.
func newTestNetNS(t *testing.T, dir, name string) string {
	t.Helper()
	p, err := NewNetNS(dir, name)
	if err != nil {
		t.Fatalf("NewNetNS(%s): %v", name, err)
	}
	t.Cleanup(func() {
		if err := RemoveNetNS(p); err != nil {
			t.Errorf("RemoveNetNS(%s): %v", p, err)
		}
	})
	return p
}

// inNetNS runs fn on a fresh OS thread that has joined the namespace at
// path. The thread is never unlocked, so the Go runtime discards it when fn
// returns instead of reusing a thread in a foreign namespace. Processes that
// fn starts (CNI plugins, iptables) inherit the namespace; sockets that fn
// opens live in it.
func inNetNS(path string, fn func() error) error {
	errc := make(chan error, 1)
	go func() {
		runtime.LockOSThread()
		fd, err := unix.Open(path, unix.O_RDONLY|unix.O_CLOEXEC, 0)
		if err != nil {
			errc <- err
			return
		}
		err = unix.Setns(fd, unix.CLONE_NEWNET)
		unix.Close(fd)
		if err != nil {
			errc <- err
			return
		}
		errc <- fn()
	}()
	return <-errc
}

// nsInode is the inode of a namespace file, its identity.
func nsInode(t *testing.T, path string) uint64 {
	t.Helper()
	var st unix.Stat_t
	if err := unix.Stat(path, &st); err != nil {
		t.Fatalf("stat %s: %v", path, err)
	}
	return st.Ino
}
