package netcni

import (
	"errors"
	"os"
	"path/filepath"
	"strings"
	"testing"

	"github.com/vishvananda/netlink"
	"github.com/vishvananda/netns"

	"github.com/noded-dev/noded/internal/errdefs"
)

func TestNetNSLifecycle(t *testing.T) {
	requireRoot(t)
	dir := netnsDir(t)
	name := "pod-" + randHex(t, 4)

	p, err := NewNetNS(dir, name)
	if err != nil {
		t.Fatal(err)
	}
	if p != filepath.Join(dir, name) {
		t.Errorf("path %s, want %s", p, filepath.Join(dir, name))
	}
	if err := CheckNetNS(p); err != nil {
		t.Fatalf("CheckNetNS of a fresh pin: %v", err)
	}
	if nsInode(t, p) == nsInode(t, "/proc/self/ns/net") {
		t.Error("the pinned namespace is the test's own namespace")
	}
	// The creating thread went back to its namespace: a second namespace
	// differs from the first and the process namespace is unchanged.
	p2 := newTestNetNS(t, dir, name+"-2")
	if nsInode(t, p2) == nsInode(t, p) {
		t.Error("two NewNetNS calls pinned the same namespace")
	}

	// A new namespace has lo, down.
	ns, err := netns.GetFromPath(p)
	if err != nil {
		t.Fatal(err)
	}
	h, err := netlink.NewHandleAt(ns)
	ns.Close()
	if err != nil {
		t.Fatal(err)
	}
	links, err := h.LinkList()
	h.Close()
	if err != nil {
		t.Fatal(err)
	}
	if len(links) != 1 || links[0].Attrs().Name != "lo" {
		t.Errorf("fresh namespace has links %v, want only lo", links)
	}

	// The directory is a shared mount point.
	if !isSharedMount(t, dir) {
		t.Errorf("%s is not a shared mount point", dir)
	}

	if _, err := NewNetNS(dir, name); !errdefs.IsAlreadyExists(err) {
		t.Errorf("NewNetNS of an existing name: %v, want AlreadyExists", err)
	}

	for i := range 2 { // idempotent
		if err := RemoveNetNS(p); err != nil {
			t.Fatalf("RemoveNetNS #%d: %v", i+1, err)
		}
	}
	if _, err := os.Stat(p); !errors.Is(err, os.ErrNotExist) {
		t.Errorf("pin file still there after RemoveNetNS: %v", err)
	}
	if err := CheckNetNS(p); !errdefs.IsNotFound(err) {
		t.Errorf("CheckNetNS after remove: %v, want NotFound", err)
	}
}

func TestCheckNetNS(t *testing.T) {
	tmp := t.TempDir()
	plain := filepath.Join(tmp, "plain")
	if err := os.WriteFile(plain, nil, 0o444); err != nil {
		t.Fatal(err)
	}
	tests := []struct {
		name string
		path string
		want func(error) bool
	}{
		{"proc self", "/proc/self/ns/net", func(err error) bool { return err == nil }},
		{"not a namespace", plain, func(err error) bool { return errors.Is(err, errdefs.ErrFailedPrecondition) }},
		{"other namespace type", "/proc/self/ns/uts", func(err error) bool { return errors.Is(err, errdefs.ErrFailedPrecondition) }},
		{"missing", filepath.Join(tmp, "missing"), errdefs.IsNotFound},
		{"empty", "", errdefs.IsInvalidArgument},
	}
	for _, tt := range tests {
		t.Run(tt.name, func(t *testing.T) {
			if err := CheckNetNS(tt.path); !tt.want(err) {
				t.Errorf("CheckNetNS(%q) = %v", tt.path, err)
			}
		})
	}
}

func TestNewNetNSInvalid(t *testing.T) {
	tests := []struct{ name, dir, ns string }{
		{"empty name", "/tmp", ""},
		{"dot", "/tmp", "."},
		{"dotdot", "/tmp", ".."},
		{"slash", "/tmp", "a/b"},
		{"relative dir", "run/netns", "x"},
	}
	for _, tt := range tests {
		t.Run(tt.name, func(t *testing.T) {
			if _, err := NewNetNS(tt.dir, tt.ns); !errdefs.IsInvalidArgument(err) {
				t.Errorf("NewNetNS(%q, %q) = %v, want InvalidArgument", tt.dir, tt.ns, err)
			}
		})
	}
}

func TestRemoveNetNSMissing(t *testing.T) {
	for _, p := range []string{"", filepath.Join(t.TempDir(), "never-created")} {
		if err := RemoveNetNS(p); err != nil {
			t.Errorf("RemoveNetNS(%q) = %v", p, err)
		}
	}
}

// isSharedMount reports whether dir is a mount point with shared
// propagation, from /proc/self/mountinfo.
func isSharedMount(t *testing.T, dir string) bool {
	t.Helper()
	b, err := os.ReadFile("/proc/self/mountinfo")
	if err != nil {
		t.Fatal(err)
	}
	for _, line := range strings.Split(string(b), "\n") {
		f := strings.Fields(line)
		if len(f) < 7 || f[4] != dir {
			continue
		}
		for _, opt := range f[6:] {
			if opt == "-" {
				break
			}
			if strings.HasPrefix(opt, "shared:") {
				return true
			}
		}
	}
	return false
}
