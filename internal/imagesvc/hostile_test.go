package imagesvc

import (
	"archive/tar"
	"bytes"
	"context"
	"errors"
	"fmt"
	"io"
	"os"
	"path/filepath"
	"runtime"
	"slices"
	"strconv"
	"strings"
	"syscall"
	"testing"
	"time"

	v1 "github.com/google/go-containerregistry/pkg/v1"
	"github.com/google/go-containerregistry/pkg/v1/mutate"
	"github.com/google/go-containerregistry/pkg/v1/tarball"
	"github.com/google/go-containerregistry/pkg/v1/types"

	"github.com/noded-dev/noded/internal/errdefs"
	"github.com/noded-dev/noded/internal/imagesvc/regtest"
)

// tarLayer is a layer of the given entries (a file's content is Body).
type tarEntry struct {
	hdr  tar.Header
	body string
}

func tarLayer(t *testing.T, entries ...tarEntry) v1.Layer {
	t.Helper()
	var b bytes.Buffer
	tw := tar.NewWriter(&b)
	for _, e := range entries {
		h := e.hdr
		if h.Typeflag == tar.TypeReg {
			h.Size = int64(len(e.body))
		}
		if h.Mode == 0 {
			h.Mode = 0o644
		}
		if err := tw.WriteHeader(&h); err != nil {
			t.Fatal(err)
		}
		if h.Typeflag == tar.TypeReg {
			if _, err := io.WriteString(tw, e.body); err != nil {
				t.Fatal(err)
			}
		}
	}
	if err := tw.Close(); err != nil {
		t.Fatal(err)
	}
	data := b.Bytes()
	l, err := tarball.LayerFromOpener(func() (io.ReadCloser, error) {
		return io.NopCloser(bytes.NewReader(data)), nil
	}, tarball.WithMediaType(types.DockerLayer))
	if err != nil {
		t.Fatal(err)
	}
	return l
}

// Entries of a test layer.
func file(name, body string) tarEntry {
	return tarEntry{hdr: tar.Header{Name: name, Typeflag: tar.TypeReg}, body: body}
}
func dir(name string) tarEntry {
	return tarEntry{hdr: tar.Header{Name: name, Typeflag: tar.TypeDir, Mode: 0o755}}
}
func symlink(name, target string) tarEntry {
	return tarEntry{hdr: tar.Header{Name: name, Typeflag: tar.TypeSymlink, Linkname: target}}
}
func device(name string, typ byte, major, minor int64) tarEntry {
	return tarEntry{hdr: tar.Header{Name: name, Typeflag: typ, Devmajor: major, Devminor: minor, Mode: 0o666}}
}

// TestHostileLayersStayInTheStore pulls images whose layers try to reach
// outside the storage root: by ../ entries, through absolute and
// relative symlinks laid by an earlier layer, by a hardlink to a host
// file, by device nodes and by whiteouts aimed at "..", at host paths or
// through symlinks; and images with odd but legal entries (opaque
// whiteouts, whiteouts in the first layer, of a directory or of nothing,
// setuid files). A refused image fails with FailedPrecondition naming the
// entry and leaves nothing; an accepted one unpacks to the rootfs the
// layers describe; an image that is neither may fail or succeed
// (containers/storage confines the unpacking to the layer's directory).
// In every case nothing outside the store is created or changed.
func TestHostileLayersStayInTheStore(t *testing.T) {
	outside := t.TempDir() // a host directory the layers aim at
	victim := filepath.Join(outside, "victim")
	if err := os.WriteFile(victim, []byte("host file\n"), 0o644); err != nil {
		t.Fatal(err)
	}
	deep := "../../../../../../../../../../../.." // more than the store's depth
	layer := func(entries ...tarEntry) v1.Layer { return tarLayer(t, entries...) }
	tests := []struct {
		name   string
		layers func() []v1.Layer
		// refused is what the error of a refused image says; check, the
		// rootfs of an accepted one. Neither: it may go either way.
		refused string
		check   func(t *testing.T, e *env, rootfs string)
	}{
		{name: "dot-dot entry", layers: func() []v1.Layer {
			return []v1.Layer{layer(file(deep+outside+"/escaped", "x"))}
		}},
		{name: "write through an absolute symlink", layers: func() []v1.Layer {
			return []v1.Layer{layer(symlink("evil", outside)), layer(file("evil/escaped", "x"))}
		}},
		{name: "write through a relative symlink", layers: func() []v1.Layer {
			return []v1.Layer{layer(symlink("rel", deep+outside)), layer(file("rel/escaped", "x"))}
		}},
		{name: "a symlink to the victim then a file of its name", layers: func() []v1.Layer {
			return []v1.Layer{layer(symlink("v", victim)), layer(file("v", "overwritten\n"))}
		}},
		{name: "hardlink to a host file", layers: func() []v1.Layer {
			return []v1.Layer{layer(
				tarEntry{hdr: tar.Header{Name: "h", Typeflag: tar.TypeLink, Linkname: victim}},
				tarEntry{hdr: tar.Header{Name: "h2", Typeflag: tar.TypeLink, Linkname: deep + victim}},
			)}
		}},
		// As root, containers/storage would mknod these as they are.
		{name: "character device", refused: `"mem" is a character device (1:1)`, layers: func() []v1.Layer {
			return []v1.Layer{layer(file("f", "x"), device("mem", tar.TypeChar, 1, 1))}
		}},
		{name: "block device in a later layer", refused: `"dev/sda" is a block device (8:0)`, layers: func() []v1.Layer {
			return []v1.Layer{layer(file("f", "x")), layer(dir("dev/"), device("dev/sda", tar.TypeBlock, 8, 0))}
		}},
		{name: "whiteout of dot-dot", refused: `"d/.wh..." is a whiteout of ".."`, layers: func() []v1.Layer {
			return []v1.Layer{layer(dir("d/"), file("d/f", "x")), layer(file("d/.wh...", ""))}
		}},
		{name: "whiteout of dot-dot at the top", refused: `".wh..." is a whiteout of ".."`, layers: func() []v1.Layer {
			return []v1.Layer{layer(file("f", "x")), layer(file(".wh...", ""))}
		}},
		{name: "whiteout of nothing", refused: `"d/.wh." is a whiteout of ""`, layers: func() []v1.Layer {
			return []v1.Layer{layer(dir("d/"), file("d/f", "x")), layer(file("d/.wh.", ""))}
		}},
		{name: "whiteout through dot-dot of a host file", layers: func() []v1.Layer {
			return []v1.Layer{layer(file("f", "x")), layer(file(deep+outside+"/.wh.victim", ""))}
		}, check: func(t *testing.T, _ *env, rootfs string) {
			// Cleaned into the layer: a whiteout of nothing below it.
			wantEntries(t, rootfs, "f", strings.Split(strings.TrimPrefix(outside, "/"), "/")[0])
			wantGone(t, rootfs, strings.TrimPrefix(victim, "/"))
		}},
		{name: "whiteouts through a symlink to a host directory", layers: func() []v1.Layer {
			return []v1.Layer{layer(symlink("evil", outside)), layer(file("evil/.wh.victim", ""), file("evil/.wh..wh..opq", ""))}
		}},
		{name: "overlay whiteout device", layers: func() []v1.Layer {
			return []v1.Layer{layer(file("f", "x"), file("g", "x")), layer(device("g", tar.TypeChar, 0, 0))}
		}, check: func(t *testing.T, _ *env, rootfs string) { wantEntries(t, rootfs, "f") }},
		{name: "opaque whiteout", layers: func() []v1.Layer {
			return []v1.Layer{
				layer(dir("d/"), file("d/a", "x"), dir("d/sub/"), file("d/sub/b", "x"), file("keep", "x")),
				layer(dir("d/"), file("d/.wh..wh..opq", ""), file("d/c", "new")),
			}
		}, check: func(t *testing.T, _ *env, rootfs string) {
			wantEntries(t, rootfs, "d", "keep")
			wantEntries(t, filepath.Join(rootfs, "d"), "c")
		}},
		// A whiteout of nothing is stored as overlay's whiteout device.
		// In a directory that only one layer has, overlay does not merge
		// the listing, so a readdir there still shows the name, which
		// lstat does not find: the same as every runtime unpacking into
		// overlay with containers/storage or containerd's converter.
		{name: "whiteouts in the first layer", layers: func() []v1.Layer {
			return []v1.Layer{layer(file(".wh.ghost", ""), dir("d/"), file("d/.wh.x", ""), file("f", "x"))}
		}, check: func(t *testing.T, _ *env, rootfs string) {
			wantEntries(t, rootfs, "d", "f")
			wantGone(t, rootfs, "ghost", ".wh.ghost", "d/x", "d/.wh.x")
		}},
		{name: "whiteout of a directory", layers: func() []v1.Layer {
			return []v1.Layer{layer(dir("d/"), file("d/a", "x"), dir("d/sub/"), file("d/sub/b", "x"), file("f", "x")), layer(file(".wh.d", ""))}
		}, check: func(t *testing.T, _ *env, rootfs string) { wantEntries(t, rootfs, "f") }},
		{name: "whiteouts of names that do not exist", layers: func() []v1.Layer {
			return []v1.Layer{layer(file("f", "x")), layer(file(".wh.nothing", ""), file("e/.wh.nothing", ""))}
		}, check: func(t *testing.T, _ *env, rootfs string) {
			wantEntries(t, rootfs, "e", "f")
			wantGone(t, rootfs, "nothing", ".wh.nothing", "e/nothing", "e/.wh.nothing")
		}},
		// Kept as they are, like every runtime does (su, ping): confined
		// to the store (root-only) and to containers started from them.
		{name: "setuid and setgid files", layers: func() []v1.Layer {
			su := file("su", "#!/bin/true\n")
			su.hdr.Mode = 0o4755
			sg := file("sg", "#!/bin/true\n")
			sg.hdr.Mode = 0o2755
			return []v1.Layer{layer(su, sg)}
		}, check: func(t *testing.T, e *env, rootfs string) {
			for name, bit := range map[string]os.FileMode{"su": os.ModeSetuid, "sg": os.ModeSetgid} {
				fi, err := os.Stat(filepath.Join(rootfs, name))
				if err != nil || fi.Mode()&bit == 0 {
					t.Errorf("%s in the rootfs: %v, %v; want the bit %v kept", name, fi.Mode(), err, bit)
				}
			}
			fi, err := os.Stat(e.store.Root())
			if err != nil || fi.Mode().Perm()&0o077 != 0 {
				t.Errorf("store root %s: %v, %v; want it closed to others", e.store.Root(), fi.Mode(), err)
			}
		}},
	}
	// (No commas in the names: they are in the store's path, and overlay
	// mount options cannot carry one.)
	for i, tc := range tests {
		t.Run(tc.name, func(t *testing.T) {
			e := newEnv(t)
			var before syscall.Stat_t
			if err := syscall.Stat(victim, &before); err != nil {
				t.Fatal(err)
			}
			ref := fmt.Sprintf("hostile%d:1", i)
			e.push(ref, "", tc.layers()...)
			id, err := e.svc.Pull(context.Background(), e.reg.Ref(ref), Auth{})
			t.Logf("pull: %v", err)
			switch {
			case tc.refused != "":
				if !errors.Is(err, errdefs.ErrFailedPrecondition) || !strings.Contains(err.Error(), tc.refused) || !strings.Contains(err.Error(), e.reg.Host) {
					t.Errorf("pull: %v; want FailedPrecondition saying %s and naming the registry", err, tc.refused)
				}
			case tc.check != nil:
				if err != nil {
					t.Fatalf("pull: %v", err)
				}
				tc.check(t, e, e.rootfs(id))
			}
			if err != nil {
				e.assertNoLeftovers() // a refused image leaves no layer
			}
			entries, _ := os.ReadDir(outside)
			if len(entries) != 1 {
				t.Errorf("the layers created %d entries outside the store: %v", len(entries)-1, entries)
			}
			b, _ := os.ReadFile(victim)
			var after syscall.Stat_t
			_ = syscall.Stat(victim, &after)
			if string(b) != "host file\n" || after.Nlink != before.Nlink {
				t.Errorf("the host file changed: %q, %d links (was %d)", b, after.Nlink, before.Nlink)
			}
		})
	}
}

// wantGone checks that none of the paths (relative to root) exists.
func wantGone(t *testing.T, root string, paths ...string) {
	t.Helper()
	for _, p := range paths {
		if _, err := os.Lstat(filepath.Join(root, p)); !errors.Is(err, os.ErrNotExist) {
			t.Errorf("%s: %v, want it absent", p, err)
		}
	}
}

// wantEntries checks that dir holds exactly the names (in order).
func wantEntries(t *testing.T, dir string, names ...string) {
	t.Helper()
	entries, err := os.ReadDir(dir)
	if err != nil {
		t.Fatal(err)
	}
	got := make([]string, len(entries))
	for i, e := range entries {
		got[i] = e.Name()
	}
	if !slices.Equal(got, names) {
		t.Errorf("%s holds %q, want %q", dir, got, names)
	}
}

// An image config far larger than any real one (more than maxConfigSize
// of labels) is refused before it is fetched, naming the image, with
// InvalidArgument, and leaves nothing.
func TestOversizedConfigIsRefused(t *testing.T) {
	e := newEnv(t)
	img, err := regtest.Image(runtime.GOARCH, "", tarLayer(t, tarEntry{hdr: tar.Header{Name: "f", Typeflag: tar.TypeReg}, body: "x"}))
	if err != nil {
		t.Fatal(err)
	}
	cf, err := img.ConfigFile()
	if err != nil {
		t.Fatal(err)
	}
	cf = cf.DeepCopy()
	cf.Config.Labels = map[string]string{"padding": strings.Repeat("x", maxConfigSize+1)}
	big, err := mutate.ConfigFile(img, cf)
	if err != nil {
		t.Fatal(err)
	}
	if err := e.reg.Push("big:1", big); err != nil {
		t.Fatal(err)
	}
	_, err = e.svc.Pull(context.Background(), e.reg.Ref("big:1"), Auth{})
	if !errors.Is(err, errdefs.ErrInvalidArgument) || !strings.Contains(err.Error(), "big:1") {
		t.Fatalf("pull of a %d MiB config: %v; want InvalidArgument naming the image", maxConfigSize>>20, err)
	}
	if n := e.reg.BytesServed(); n > 1<<20 {
		t.Errorf("the registry served %d bytes: the config was fetched", n)
	}
	t.Logf("pull: %v", err)
	e.assertNoLeftovers()
}

// A manifest far larger than any real one (an endless stream of a
// valid-looking manifest) is refused by containers/image's limit (4 MiB)
// with InvalidArgument naming the image and the registry, read no
// further, not retried, and the pull's memory stays bounded by the limit.
func TestOversizedManifestIsRefused(t *testing.T) {
	e := newEnv(t)
	e.push("app:1", "", layers(t, 1)...)
	e.reg.AddHook(regtest.HugeManifest("1", 1<<30))
	var err error
	heap, rss := peakMemory(t, func() { _, err = e.svc.Pull(context.Background(), e.reg.Ref("app:1"), Auth{}) })
	t.Logf("pull: %v; heap +%d MiB, RSS +%d MiB, %d MiB served", err, heap>>20, rss>>20, e.reg.BytesServed()>>20)
	if !errors.Is(err, errdefs.ErrInvalidArgument) || !strings.Contains(err.Error(), "app:1") || !strings.Contains(err.Error(), e.reg.Host) {
		t.Fatalf("pull of a 1 GiB manifest: %v; want InvalidArgument naming the image and the registry", err)
	}
	if n := e.reg.BytesServed(); n > 64<<20 {
		t.Errorf("the registry served %d MiB: the manifest was read past the limit", n>>20)
	}
	if n := e.reg.ManifestGets("app", "1"); n != 1 {
		t.Errorf("the manifest was fetched %d times; an oversized one is not worth a retry", n)
	}
	if heap > 32<<20 || rss > 64<<20 {
		t.Errorf("the pull's heap grew by %d MiB, its RSS by %d MiB", heap>>20, rss>>20)
	}
	e.assertNoLeftovers()
}

// A gzip bomb (256 MiB of zeros in a layer of about 256 KiB) is unpacked
// as a stream: the pull's memory does not grow with it. A 4 GiB bomb (4
// MiB compressed) takes about 45 s on 2 cores (20 s the pull, the rest
// building the layer), with the heap 13 MiB above where it started, so
// only
//
//	NODED_TEST_BOMB_GIB=4 go test -tags "$(BUILDTAGS)" -run TestGzipBombIsStreamed -v ./internal/imagesvc/
//
// pulls one.
func TestGzipBombIsStreamed(t *testing.T) {
	size := int64(256 << 20)
	if gib := os.Getenv("NODED_TEST_BOMB_GIB"); gib != "" {
		n, err := strconv.Atoi(gib)
		if err != nil || n < 1 {
			t.Fatalf("NODED_TEST_BOMB_GIB=%q: want a number of GiB", gib)
		}
		size = int64(n) << 30
	}
	e := newEnv(t)
	l, err := regtest.ZerosLayer(size)
	if err != nil {
		t.Fatal(err)
	}
	e.push("bomb:1", "", l)
	compressed, _ := l.Size()
	var before, after runtime.MemStats
	runtime.ReadMemStats(&before)
	start := time.Now()
	heap, rss := peakMemory(t, func() { _, err = e.svc.Pull(context.Background(), e.reg.Ref("bomb:1"), Auth{}) })
	if err != nil {
		t.Fatalf("pull: %v", err)
	}
	runtime.ReadMemStats(&after)
	allocated := after.TotalAlloc - before.TotalAlloc
	t.Logf("pulled %d MiB of zeros from a %d KiB blob in %s: heap +%d MiB at most, RSS +%d MiB, %d MiB allocated in all",
		size>>20, compressed>>10, time.Since(start).Round(time.Millisecond), heap>>20, rss>>20, allocated>>20)
	if heap > 64<<20 || rss > 100<<20 {
		t.Errorf("the pull's heap grew by %d MiB, its RSS by %d MiB, for a %d MiB layer: it is not streamed", heap>>20, rss>>20, size>>20)
	}
	if allocated > 64<<20 {
		t.Errorf("the pull allocated %d MiB for a %d MiB layer: it is not streamed", allocated>>20, size>>20)
	}
}
