package storage

import (
	"bytes"
	"errors"
	"os"
	"path/filepath"
	"strings"
	"syscall"
	"testing"

	"github.com/opencontainers/go-digest"

	"github.com/noded-dev/noded/internal/errdefs"
)

// A storage container made with the mount options ro, nodev and nosuid
// (internal/sandbox's image volumes) mounts its image's layers read-only,
// with no upper directory and nothing copied; while it exists its image
// cannot be deleted, and the refusal names it.
func TestReadOnlyContainerOnImage(t *testing.T) {
	s := openTestStore(t)
	tb := tarOf(t, "data", "from the image")
	diffID := digest.FromBytes(tb)
	layer := LayerIDs([]digest.Digest{diffID})[0]
	if _, err := s.Layers().Put(layer, "", bytes.NewReader(tb), PutLayerOptions{DiffID: diffID}); err != nil {
		t.Fatal(err)
	}
	img := ImageID(digest.FromString("config").Encoded())
	if _, err := s.Images().Create(img, layer, CreateImageOptions{}); err != nil {
		t.Fatal(err)
	}
	const name = "c1-image-volume-0"
	if _, err := s.Containers().CreateContainer("vol", img, CreateContainerOptions{
		Names: []string{name}, MountOptions: []string{"ro", "nodev", "nosuid"},
	}); err != nil {
		t.Fatal(err)
	}
	p, err := s.Containers().Mount("vol", "")
	if err != nil {
		t.Fatal(err)
	}
	if b, err := os.ReadFile(filepath.Join(p, "data")); err != nil || string(b) != "from the image" {
		t.Fatalf("the image's file: %q %v", b, err)
	}
	if err := os.WriteFile(filepath.Join(p, "new"), nil, 0o644); !errors.Is(err, syscall.EROFS) {
		t.Fatalf("a write: %v, want EROFS", err)
	}
	var st syscall.Statfs_t
	if err := syscall.Statfs(p, &st); err != nil {
		t.Fatal(err)
	}
	if want := int64(syscall.MS_RDONLY | syscall.MS_NODEV | syscall.MS_NOSUID); st.Flags&want != want {
		t.Errorf("mount flags %#x lack ro, nodev, nosuid", st.Flags)
	}
	mounts, _ := os.ReadFile("/proc/self/mountinfo")
	for _, l := range strings.Split(string(mounts), "\n") {
		if f := strings.Fields(l); len(f) > 4 && f[4] == p && strings.Contains(l, "upperdir=") {
			t.Errorf("the mount has an upper directory: %s", l)
		}
	}

	_, err = s.Images().Delete(img, true)
	if !errors.Is(err, errdefs.ErrFailedPrecondition) || !strings.Contains(err.Error(), `in use by storage container "`+name+`"`) {
		t.Fatalf("deleting the image: %v; want FailedPrecondition naming %s", err, name)
	}
	if err := s.Containers().Unmount("vol", true); err != nil {
		t.Fatal(err)
	}
	if err := s.Containers().DeleteContainer("vol"); err != nil {
		t.Fatal(err)
	}
	if _, err := s.Images().Delete(img, false); err != nil {
		t.Fatalf("deleting the image once no container uses it: %v", err)
	}
}
