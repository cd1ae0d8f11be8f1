package storage

import (
	"bytes"
	"os"
	"path/filepath"
	"testing"

	"github.com/opencontainers/go-digest"

	"github.com/noded-dev/noded/internal/errdefs"
)

// WritableLayerUsage counts what a container wrote, not its image.
func TestWritableLayerUsage(t *testing.T) {
	s := openTestStore(t)
	tb := tarOf(t, "base", "image content")
	diffID := digest.FromBytes(tb)
	id := LayerIDs([]digest.Digest{diffID})[0]
	if _, err := s.Layers().Put(id, "", bytes.NewReader(tb), PutLayerOptions{DiffID: diffID}); err != nil {
		t.Fatal(err)
	}
	img := ImageID(digest.FromString("config").Encoded())
	if _, err := s.Images().Create(img, id, CreateImageOptions{}); err != nil {
		t.Fatal(err)
	}
	if _, err := s.Containers().CreateContainer("c1", img, CreateContainerOptions{Names: []string{"c1"}}); err != nil {
		t.Fatal(err)
	}
	t.Cleanup(func() { _ = s.Containers().DeleteContainer("c1") })
	empty, err := s.WritableLayerUsage("c1")
	if err != nil {
		t.Fatal(err)
	}
	root, err := s.Containers().Mount("c1", "")
	if err != nil {
		t.Fatal(err)
	}
	if err := os.WriteFile(filepath.Join(root, "written"), make([]byte, 1<<20), 0o644); err != nil {
		t.Fatal(err)
	}
	if err := s.Containers().Unmount("c1", true); err != nil {
		t.Fatal(err)
	}
	u, err := s.WritableLayerUsage("c1")
	if err != nil {
		t.Fatal(err)
	}
	if d := u.UsedBytes - empty.UsedBytes; d < 1<<20 || d > 1<<20+64<<10 {
		t.Errorf("writing 1 MiB grew the layer by %d bytes", d)
	}
	// The file, and what the mount left in the layer's work directory.
	if u.InodesUsed <= empty.InodesUsed || u.Mountpoint == "" {
		t.Errorf("usage %+v after one file, %+v before", u, empty)
	}
	if _, err := s.WritableLayerUsage("nope"); !errdefs.IsNotFound(err) {
		t.Errorf("unknown container: %v, want NotFound", err)
	}
}
