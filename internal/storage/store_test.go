package storage

import (
	"archive/tar"
	"bytes"
	"os"
	"path/filepath"
	"strings"
	"syscall"
	"testing"

	"github.com/opencontainers/go-digest"
	"github.com/sirupsen/logrus"
	"go.podman.io/storage/pkg/reexec"

	"github.com/noded-dev/noded/internal/errdefs"
)

func TestMain(m *testing.M) {
	if reexec.Init() {
		return
	}
	os.Exit(m.Run())
}

func TestParseImageID(t *testing.T) {
	hex := strings.Repeat("ab", 32)
	for _, tc := range []struct {
		in string
		ok bool
	}{
		{hex, true},
		{"sha256:" + hex, true},
		{"sha512:" + hex, false},
		{hex[:12], false},
		{strings.ToUpper(hex), false},
		{"busybox", false},
	} {
		id, ok := ParseImageID(tc.in)
		if ok != tc.ok || (ok && string(id) != hex) {
			t.Errorf("ParseImageID(%q) = %q, %v", tc.in, id, ok)
		}
	}
	id := ImageID(hex)
	if id.String() != "sha256:"+hex || id.Digest() != digest.Digest("sha256:"+hex) {
		t.Errorf("String %q Digest %q", id.String(), id.Digest())
	}
}

// LayerIDs are OCI ChainIDs (image-spec config.md): the first is the
// DiffID; the next is sha256 of "<parent chain> <diff id>".
func TestLayerIDsAreChainIDs(t *testing.T) {
	d1 := digest.FromString("one")
	d2 := digest.FromString("two")
	d3 := digest.FromString("three")
	ids := LayerIDs([]digest.Digest{d1, d2, d3})
	c2 := digest.FromString(d1.String() + " " + d2.String())
	c3 := digest.FromString(c2.String() + " " + d3.String())
	want := []LayerID{LayerID(d1.Encoded()), LayerID(c2.Encoded()), LayerID(c3.Encoded())}
	for i := range want {
		if ids[i] != want[i] {
			t.Errorf("layer %d: %s, want %s", i, ids[i], want[i])
		}
	}
}

func TestWalkUsage(t *testing.T) {
	dir := t.TempDir()
	if err := os.WriteFile(filepath.Join(dir, "a"), make([]byte, 10000), 0o644); err != nil {
		t.Fatal(err)
	}
	if err := os.Link(filepath.Join(dir, "a"), filepath.Join(dir, "hardlink")); err != nil {
		t.Fatal(err)
	}
	sparse, err := os.Create(filepath.Join(dir, "sparse"))
	if err != nil {
		t.Fatal(err)
	}
	if err := sparse.Truncate(1 << 30); err != nil {
		t.Fatal(err)
	}
	sparse.Close()
	if err := os.Symlink("a", filepath.Join(dir, "link")); err != nil {
		t.Fatal(err)
	}
	u, err := walkUsage(dir, nil)
	if err != nil {
		t.Fatal(err)
	}
	// dir, a (once for two links), sparse, link.
	if u.inodes != 4 {
		t.Errorf("%d inodes, want 4", u.inodes)
	}
	if u.bytes < 10000 || u.bytes > 1<<20 {
		t.Errorf("%d bytes: the sparse gigabyte must not count, the 10 kB file must", u.bytes)
	}
	skipped, err := walkUsage(dir, func(p string) bool { return filepath.Base(p) == "a" || filepath.Base(p) == "hardlink" })
	if err != nil || skipped.inodes != 3 {
		t.Errorf("with a skip: %+v, %v", skipped, err)
	}
	if u, err := walkUsage(filepath.Join(dir, "missing"), nil); err != nil || u.inodes != 0 {
		t.Errorf("missing dir: %+v, %v", u, err)
	}
}

func openTestStore(t *testing.T) *Store {
	t.Helper()
	if os.Geteuid() != 0 {
		t.Skip("needs root: containers/storage's overlay driver mounts")
	}
	dir := t.TempDir()
	s, err := Open(Options{Root: filepath.Join(dir, "root"), RunRoot: filepath.Join(dir, "run"), Driver: "overlay", Log: logrus.NewEntry(logrus.New())})
	if err != nil {
		t.Fatal(err)
	}
	t.Cleanup(func() {
		if err := s.Close(); err != nil {
			t.Error(err)
		}
		mounts, _ := os.ReadFile("/proc/self/mountinfo")
		for _, line := range strings.Split(string(mounts), "\n") {
			if f := strings.Fields(line); len(f) > 4 && strings.HasPrefix(f[4], dir+"/") {
				_ = syscall.Unmount(f[4], syscall.MNT_DETACH)
			}
		}
	})
	return s
}

func tarOf(t *testing.T, name, content string) []byte {
	t.Helper()
	var b bytes.Buffer
	tw := tar.NewWriter(&b)
	if err := tw.WriteHeader(&tar.Header{Name: name, Mode: 0o644, Size: int64(len(content)), Typeflag: tar.TypeReg}); err != nil {
		t.Fatal(err)
	}
	_, _ = tw.Write([]byte(content))
	_ = tw.Close()
	return b.Bytes()
}

// GarbageCollect removes layers that no image or container holds (a pull
// cut short by a crash) and keeps the others.
func TestGarbageCollectRemovesOrphanLayers(t *testing.T) {
	s := openTestStore(t)
	var diffIDs []digest.Digest
	var tars [][]byte
	for _, c := range []string{"base", "mid", "top"} {
		tb := tarOf(t, c, c)
		tars = append(tars, tb)
		diffIDs = append(diffIDs, digest.FromBytes(tb))
	}
	ids := LayerIDs(diffIDs)
	var parent LayerID
	for i, id := range ids {
		if _, err := s.Layers().Put(id, parent, bytes.NewReader(tars[i]), PutLayerOptions{DiffID: diffIDs[i]}); err != nil {
			t.Fatal(err)
		}
		parent = id
	}
	// An image holds the base only; mid and top are orphans.
	imgID := ImageID(digest.FromString("config").Encoded())
	if _, err := s.Images().Create(imgID, ids[0], CreateImageOptions{}); err != nil {
		t.Fatal(err)
	}
	if err := s.GarbageCollect(); err != nil {
		t.Fatal(err)
	}
	if !s.Layers().Exists(ids[0]) || s.Layers().Exists(ids[1]) || s.Layers().Exists(ids[2]) {
		t.Errorf("after GC: base %v mid %v top %v; want only base", s.Layers().Exists(ids[0]), s.Layers().Exists(ids[1]), s.Layers().Exists(ids[2]))
	}
	if _, err := s.Images().Get("nope"); !errdefs.IsNotFound(err) {
		t.Errorf("missing image: %v", err)
	}
	if _, err := s.Images().Delete(imgID, false); err != nil {
		t.Fatal(err)
	}
	if ls, _ := s.Layers().List(); len(ls) != 0 {
		t.Errorf("%d layers after deleting the image", len(ls))
	}
}
