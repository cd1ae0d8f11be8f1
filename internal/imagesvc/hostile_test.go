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
	"strings"
	"syscall"
	"testing"

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

// TestHostileLayersStayInTheStore pulls images whose layers try to write
// outside the storage root: by ../ entries, through absolute and
// relative symlinks laid by an earlier layer, and by a hardlink to a
// host file. The pull may fail or succeed (containers/storage confines
// the unpacking to the layer's directory), but nothing outside the store
// is created or changed.
func TestHostileLayersStayInTheStore(t *testing.T) {
	outside := t.TempDir() // a host directory the layers aim at
	victim := filepath.Join(outside, "victim")
	if err := os.WriteFile(victim, []byte("host file\n"), 0o644); err != nil {
		t.Fatal(err)
	}
	deep := "../../../../../../../../../../../.." // more than the store's depth
	tests := []struct {
		name   string
		layers func() []v1.Layer
	}{
		{"dot-dot entry", func() []v1.Layer {
			return []v1.Layer{tarLayer(t, tarEntry{hdr: tar.Header{Name: deep + outside + "/escaped", Typeflag: tar.TypeReg}, body: "x"})}
		}},
		{"write through an absolute symlink", func() []v1.Layer {
			return []v1.Layer{
				tarLayer(t, tarEntry{hdr: tar.Header{Name: "evil", Typeflag: tar.TypeSymlink, Linkname: outside}}),
				tarLayer(t, tarEntry{hdr: tar.Header{Name: "evil/escaped", Typeflag: tar.TypeReg}, body: "x"}),
			}
		}},
		{"write through a relative symlink", func() []v1.Layer {
			return []v1.Layer{
				tarLayer(t, tarEntry{hdr: tar.Header{Name: "rel", Typeflag: tar.TypeSymlink, Linkname: deep + outside}}),
				tarLayer(t, tarEntry{hdr: tar.Header{Name: "rel/escaped", Typeflag: tar.TypeReg}, body: "x"}),
			}
		}},
		{"a symlink to the victim then a file of its name", func() []v1.Layer {
			return []v1.Layer{
				tarLayer(t, tarEntry{hdr: tar.Header{Name: "v", Typeflag: tar.TypeSymlink, Linkname: victim}}),
				tarLayer(t, tarEntry{hdr: tar.Header{Name: "v", Typeflag: tar.TypeReg}, body: "overwritten\n"}),
			}
		}},
		{"hardlink to a host file", func() []v1.Layer {
			return []v1.Layer{tarLayer(t,
				tarEntry{hdr: tar.Header{Name: "h", Typeflag: tar.TypeLink, Linkname: victim}},
				tarEntry{hdr: tar.Header{Name: "h2", Typeflag: tar.TypeLink, Linkname: deep + victim}},
			)}
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
			_, err := e.svc.Pull(context.Background(), e.reg.Ref(ref), Auth{})
			t.Logf("pull: %v", err)
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

// A gzip bomb (256 MiB of zeros in a layer of a few hundred KiB) is
// unpacked as a stream: the pull's memory does not grow with it.
func TestGzipBombIsStreamed(t *testing.T) {
	e := newEnv(t)
	const size = 256 << 20
	l, err := regtest.ZerosLayer(size)
	if err != nil {
		t.Fatal(err)
	}
	e.push("bomb:1", "", l)
	var before, after runtime.MemStats
	runtime.GC()
	runtime.ReadMemStats(&before)
	if _, err := e.svc.Pull(context.Background(), e.reg.Ref("bomb:1"), Auth{}); err != nil {
		t.Fatalf("pull: %v", err)
	}
	runtime.ReadMemStats(&after)
	if grew := after.TotalAlloc - before.TotalAlloc; grew > size/4 {
		t.Errorf("the pull allocated %d MiB for a %d MiB layer: it is not streamed", grew>>20, size>>20)
	}
}
