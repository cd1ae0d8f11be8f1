package storage

import (
	"archive/tar"
	"bytes"
	"errors"
	"fmt"
	"io"
	"os"
	"path/filepath"
	"strings"
	"sync"
	"syscall"
	"testing"

	"github.com/opencontainers/go-digest"
)

// layerTar is a layer tarball built from entries.
type tarEntry struct {
	name string
	mode int64
	kind byte
	body string
	uid  int
}

func layerTar(t *testing.T, entries ...tarEntry) []byte {
	t.Helper()
	var b bytes.Buffer
	tw := tar.NewWriter(&b)
	for _, e := range entries {
		h := &tar.Header{Name: e.name, Mode: e.mode, Typeflag: e.kind, Size: int64(len(e.body)), Uid: e.uid, Gid: e.uid}
		if err := tw.WriteHeader(h); err != nil {
			t.Fatal(err)
		}
		if _, err := tw.Write([]byte(e.body)); err != nil {
			t.Fatal(err)
		}
	}
	if err := tw.Close(); err != nil {
		t.Fatal(err)
	}
	return b.Bytes()
}

func stagingEntries(t *testing.T, s *Store) []os.DirEntry {
	t.Helper()
	es, err := os.ReadDir(filepath.Join(s.Root(), s.Driver(), "staging"))
	if err != nil && !errors.Is(err, os.ErrNotExist) {
		t.Fatal(err)
	}
	return es
}

// Layers staged side by side, before any parent exists, and committed
// bottom up make the same image as layers put one after the other: the
// merged root shows each layer's files and whiteouts, every file has the
// mode, owner and content Put gives it, and containers/storage's check
// (which rebuilds each layer from its tar-split data) finds nothing wrong.
func TestStagedLayersCommitBottomUp(t *testing.T) {
	s := openTestStore(t)
	tars := [][]byte{
		layerTar(t,
			tarEntry{name: "./", mode: 0o755, kind: tar.TypeDir},
			tarEntry{name: "etc/", mode: 0o750, kind: tar.TypeDir},
			tarEntry{name: "etc/gone", mode: 0o644, kind: tar.TypeReg, body: "base"},
			tarEntry{name: "etc/kept", mode: 0o600, kind: tar.TypeReg, body: "kept", uid: 1000}),
		layerTar(t,
			tarEntry{name: "etc/.wh.gone", mode: 0o644, kind: tar.TypeReg},
			tarEntry{name: "mid", mode: 0o644, kind: tar.TypeReg, body: "mid"}),
		layerTar(t,
			tarEntry{name: "./", mode: 0o711, kind: tar.TypeDir},
			tarEntry{name: "top", mode: 0o4755, kind: tar.TypeReg, body: "top", uid: 7}),
	}
	diffIDs := make([]digest.Digest, len(tars))
	for i, tb := range tars {
		diffIDs[i] = digest.FromBytes(tb)
	}
	ids := LayerIDs(diffIDs)

	staged := make([]*StagedLayer, len(tars))
	errs := make([]error, len(tars))
	var wg sync.WaitGroup
	for i := range tars {
		wg.Add(1)
		go func() {
			defer wg.Done()
			staged[i], errs[i] = s.Layers().Stage(bytes.NewReader(tars[i]), PutLayerOptions{DiffID: diffIDs[i], CompressedDigest: diffIDs[i]})
		}()
	}
	wg.Wait()
	for i, err := range errs {
		if err != nil {
			t.Fatalf("Stage(layer %d): %v", i, err)
		}
	}
	if n := len(stagingEntries(t, s)); n != len(tars) {
		t.Errorf("%d staging directories, want %d", n, len(tars))
	}
	var parent LayerID
	for i, id := range ids {
		l, err := s.Layers().Commit(id, parent, staged[i])
		if err != nil {
			t.Fatalf("Commit(layer %d): %v", i, err)
		}
		if l.DiffID != diffIDs[i] || l.Parent != parent || l.UncompressedSize != int64(len(tars[i])) {
			t.Errorf("layer %d: %+v; want DiffID %s, parent %q, size %d", i, l, diffIDs[i], parent, len(tars[i]))
		}
		parent = id
	}
	if n := len(stagingEntries(t, s)); n != 0 {
		t.Errorf("%d staging directories left after the commits", n)
	}
	stagedRoot := mountImage(t, s, "staged", ids[len(ids)-1])

	// The same layers through Put, under other IDs.
	parent = ""
	var top LayerID
	for i, tb := range tars {
		top = LayerID(digest.FromString("put " + string(ids[i])).Encoded())
		if _, err := s.Layers().Put(top, parent, bytes.NewReader(tb), PutLayerOptions{DiffID: diffIDs[i]}); err != nil {
			t.Fatal(err)
		}
		parent = top
	}
	putRoot := mountImage(t, s, "put", top)

	for _, tc := range []struct {
		path string
		body string // "" = absent
	}{
		{"etc/kept", "kept"},
		{"etc/gone", ""},
		{"mid", "mid"},
		{"top", "top"},
	} {
		t.Run(tc.path, func(t *testing.T) {
			got, err := os.ReadFile(filepath.Join(stagedRoot, tc.path))
			switch {
			case tc.body == "" && !errors.Is(err, os.ErrNotExist):
				t.Errorf("present (%q, %v); want it whited out", got, err)
			case tc.body != "" && string(got) != tc.body:
				t.Errorf("= %q, %v; want %q", got, err, tc.body)
			}
		})
	}
	if got, want := treeOf(t, stagedRoot), treeOf(t, putRoot); got != want {
		t.Errorf("staged image:\n%s\nthe same layers put:\n%s", got, want)
	}
	d, _, err := s.Check(false)
	if err != nil || !d.Empty() {
		t.Errorf("Check: %v, %v", d.Lines(), err)
	}
}

// mountImage makes an image of top and mounts a container of it.
func mountImage(t *testing.T, s *Store, name string, top LayerID) string {
	t.Helper()
	imgID := ImageID(digest.FromString(name).Encoded())
	if _, err := s.Images().Create(imgID, top, CreateImageOptions{}); err != nil {
		t.Fatal(err)
	}
	c, err := s.Containers().CreateContainer("", imgID, CreateContainerOptions{})
	if err != nil {
		t.Fatal(err)
	}
	root, err := s.Containers().Mount(c.ID, "")
	if err != nil {
		t.Fatal(err)
	}
	t.Cleanup(func() { _ = s.Containers().Unmount(c.ID, true) })
	return root
}

// treeOf lists every file under root with its mode, owner and content.
func treeOf(t *testing.T, root string) string {
	t.Helper()
	var b strings.Builder
	err := filepath.Walk(root, func(p string, fi os.FileInfo, err error) error {
		if err != nil {
			return err
		}
		st := fi.Sys().(*syscall.Stat_t)
		fmt.Fprintf(&b, "%s %v %d:%d", strings.TrimPrefix(p, root), fi.Mode(), st.Uid, st.Gid)
		if fi.Mode().IsRegular() {
			body, err := os.ReadFile(p)
			if err != nil {
				return err
			}
			fmt.Fprintf(&b, " %q", body)
		}
		b.WriteByte('\n')
		return nil
	})
	if err != nil {
		t.Fatal(err)
	}
	return b.String()
}

// failingReader fails after its content, as the pull's verifier does at
// the end of a stream whose digest does not match.
type failingReader struct {
	r   io.Reader
	err error
}

func (f *failingReader) Read(p []byte) (int, error) {
	n, err := f.r.Read(p)
	if err == io.EOF {
		return n, f.err
	}
	return n, err
}

// Whatever ends a staging or its layer — a failing stream, a discard, a
// commit on a missing parent, a crash (the garbage collection at the next
// start) — leaves no staging directory and no layer.
func TestStagedLayerCleanup(t *testing.T) {
	s := openTestStore(t)
	tb := layerTar(t, tarEntry{name: "f", mode: 0o644, kind: tar.TypeReg, body: "content"})
	opts := PutLayerOptions{DiffID: digest.FromBytes(tb)}
	stage := func(t *testing.T) *StagedLayer {
		t.Helper()
		st, err := s.Layers().Stage(bytes.NewReader(tb), opts)
		if err != nil {
			t.Fatal(err)
		}
		return st
	}
	errMismatch := errors.New("digest mismatch")
	for _, tc := range []struct {
		name string
		run  func(t *testing.T)
	}{
		{"stream fails", func(t *testing.T) {
			if _, err := s.Layers().Stage(&failingReader{r: bytes.NewReader(tb), err: errMismatch}, opts); !errors.Is(err, errMismatch) {
				t.Errorf("Stage = %v; want the stream's error", err)
			}
		}},
		{"discard", func(t *testing.T) {
			if err := s.Layers().Discard(stage(t)); err != nil {
				t.Error(err)
			}
		}},
		{"missing parent", func(t *testing.T) {
			id := LayerID(opts.DiffID.Encoded())
			if _, err := s.Layers().Commit(id, LayerID(digest.FromString("none").Encoded()), stage(t)); err == nil {
				t.Error("Commit on a missing parent succeeded")
			}
			if s.Layers().Exists(id) {
				t.Error("the layer exists after a failed commit")
			}
		}},
		{"layer exists", func(t *testing.T) {
			id := LayerID(opts.DiffID.Encoded())
			if _, err := s.Layers().Put(id, "", bytes.NewReader(tb), opts); err != nil {
				t.Fatal(err)
			}
			if l, err := s.Layers().Commit(id, "", stage(t)); err != nil || l.ID != id {
				t.Errorf("Commit over an existing layer = %+v, %v; want the layer as it is", l, err)
			}
			if err := s.Layers().Delete(id); err != nil {
				t.Fatal(err)
			}
		}},
		{"crash", func(t *testing.T) {
			_ = stage(t) // noded dies before its commit
			if err := s.GarbageCollect(); err != nil {
				t.Fatal(err)
			}
		}},
	} {
		t.Run(tc.name, func(t *testing.T) {
			tc.run(t)
			if es := stagingEntries(t, s); len(es) != 0 {
				t.Errorf("%d staging directories left", len(es))
			}
			if ls, _ := s.Layers().List(); len(ls) != 0 {
				t.Errorf("%d layers left", len(ls))
			}
		})
	}
}
