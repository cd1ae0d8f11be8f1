package testimages

import (
	"archive/tar"
	"bytes"
	"fmt"
	"io"
	"path"
	"sort"
	"strings"

	v1 "github.com/google/go-containerregistry/pkg/v1"
	"github.com/google/go-containerregistry/pkg/v1/tarball"
	"github.com/google/go-containerregistry/pkg/v1/types"
)

// tree is an in-memory directory tree that becomes one image layer. Every
// entry gets the same fixed owner defaults and timestamp, and entries are
// written in sorted order, so equal trees always give byte-identical tars
// (and therefore stable layer digests).
type tree struct {
	entries map[string]*tar.Header
	data    map[string][]byte
}

func newTree() *tree {
	return &tree{entries: map[string]*tar.Header{}, data: map[string][]byte{}}
}

// clean turns "/a/b/" into "a/b", the form used inside layer tars.
func clean(p string) string {
	return strings.TrimPrefix(path.Clean("/"+p), "/")
}

// parents adds any missing ancestor directories of p with mode 0755, the
// way `docker build` materialises them.
func (t *tree) parents(p string) {
	for dir := path.Dir(p); dir != "." && dir != "/"; dir = path.Dir(dir) {
		if _, ok := t.entries[dir]; !ok {
			t.entries[dir] = &tar.Header{Typeflag: tar.TypeDir, Name: dir + "/", Mode: 0o755}
		}
	}
}

// dir adds a directory; mode may carry the sticky bit (e.g. 01777 for /tmp).
func (t *tree) dir(p string, mode int64) *tree {
	p = clean(p)
	t.parents(p)
	t.entries[p] = &tar.Header{Typeflag: tar.TypeDir, Name: p + "/", Mode: mode}
	return t
}

// file adds a regular file owned by root.
func (t *tree) file(p string, mode int64, content []byte) *tree {
	return t.ownedFile(p, mode, 0, 0, content)
}

// ownedFile adds a regular file; mode may carry setuid/setgid bits.
func (t *tree) ownedFile(p string, mode int64, uid, gid int, content []byte) *tree {
	p = clean(p)
	t.parents(p)
	t.entries[p] = &tar.Header{
		Typeflag: tar.TypeReg, Name: p, Mode: mode, Uid: uid, Gid: gid, Size: int64(len(content)),
	}
	t.data[p] = content
	return t
}

// ownedDir adds a directory owned by uid:gid (e.g. a user's home).
func (t *tree) ownedDir(p string, mode int64, uid, gid int) *tree {
	t.dir(p, mode)
	h := t.entries[clean(p)]
	h.Uid, h.Gid = uid, gid
	return t
}

// hardlink adds a hard link p to the file target (both archive paths).
func (t *tree) hardlink(p, target string) *tree {
	p = clean(p)
	t.parents(p)
	t.entries[p] = &tar.Header{Typeflag: tar.TypeLink, Name: p, Linkname: clean(target), Mode: 0o755}
	return t
}

// tar serialises the tree in sorted order (parents before children), hard
// links last so that their targets always precede them.
func (t *tree) tar() ([]byte, error) {
	names := make([]string, 0, len(t.entries))
	for name := range t.entries {
		names = append(names, name)
	}
	sort.SliceStable(names, func(i, j int) bool {
		li, lj := t.entries[names[i]].Typeflag == tar.TypeLink, t.entries[names[j]].Typeflag == tar.TypeLink
		if li != lj {
			return lj
		}
		return names[i] < names[j]
	})

	var buf bytes.Buffer
	tw := tar.NewWriter(&buf)
	for _, name := range names {
		h := *t.entries[name]
		h.ModTime = Epoch
		if err := tw.WriteHeader(&h); err != nil {
			return nil, fmt.Errorf("tar header %s: %w", name, err)
		}
		if data := t.data[name]; len(data) > 0 {
			if _, err := tw.Write(data); err != nil {
				return nil, fmt.Errorf("tar data %s: %w", name, err)
			}
		}
	}
	if err := tw.Close(); err != nil {
		return nil, err
	}
	return buf.Bytes(), nil
}

// layer turns the tree into a gzip-compressed layer of the given media type
// (Docker or OCI). go-containerregistry's gzip writer sets no header
// timestamp, so compression is deterministic too.
func (t *tree) layer(mt types.MediaType) (v1.Layer, error) {
	b, err := t.tar()
	if err != nil {
		return nil, err
	}
	opener := func() (io.ReadCloser, error) { return io.NopCloser(bytes.NewReader(b)), nil }
	return tarball.LayerFromOpener(opener, tarball.WithMediaType(mt), tarball.WithCompressedCaching)
}
