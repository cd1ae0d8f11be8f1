package pause

import (
	"archive/tar"
	"bytes"
	"encoding/json"
	"errors"
	"io"
	"os"
	"path/filepath"
	"runtime"
	"testing"

	"github.com/opencontainers/go-digest"
	ocispec "github.com/opencontainers/image-spec/specs-go/v1"
)

var fakeBinary = []byte("\x7fELF not really a pause binary\n")

func TestBuildDeterministic(t *testing.T) {
	a, err := Build(fakeBinary)
	if err != nil {
		t.Fatal(err)
	}
	b, err := Build(append([]byte(nil), fakeBinary...))
	if err != nil {
		t.Fatal(err)
	}
	for _, c := range []struct {
		name string
		x, y any
	}{
		{"diffID", a.DiffID, b.DiffID},
		{"config digest", a.ConfigDigest, b.ConfigDigest},
		{"manifest digest", a.ManifestDigest, b.ManifestDigest},
	} {
		if c.x != c.y {
			t.Errorf("%s differs between two builds: %v vs %v", c.name, c.x, c.y)
		}
	}
	if !bytes.Equal(a.Layer, b.Layer) || !bytes.Equal(a.Config, b.Config) || !bytes.Equal(a.Manifest, b.Manifest) {
		t.Error("bytes differ between two builds of the same binary")
	}

	other, err := Build([]byte("another binary"))
	if err != nil {
		t.Fatal(err)
	}
	if other.DiffID == a.DiffID || other.ConfigDigest == a.ConfigDigest {
		t.Error("a different binary gave the same digests")
	}
}

func TestBuildDigestsMatchBytes(t *testing.T) {
	img, err := Build(fakeBinary)
	if err != nil {
		t.Fatal(err)
	}
	checks := []struct {
		name string
		d    digest.Digest
		data []byte
	}{
		{"layer", img.DiffID, img.Layer},
		{"config", img.ConfigDigest, img.Config},
		{"manifest", img.ManifestDigest, img.Manifest},
	}
	for _, c := range checks {
		t.Run(c.name, func(t *testing.T) {
			if err := c.d.Validate(); err != nil {
				t.Fatal(err)
			}
			if c.d.Algorithm() != digest.SHA256 {
				t.Errorf("algorithm %s, want sha256", c.d.Algorithm())
			}
			v := c.d.Verifier()
			_, _ = v.Write(c.data)
			if !v.Verified() {
				t.Errorf("digest %s does not match the bytes", c.d)
			}
		})
	}
}

func TestLayerTar(t *testing.T) {
	img, err := Build(fakeBinary)
	if err != nil {
		t.Fatal(err)
	}
	tr := tar.NewReader(bytes.NewReader(img.Layer))
	var entries []*tar.Header
	for {
		hdr, err := tr.Next()
		if errors.Is(err, io.EOF) {
			break
		}
		if err != nil {
			t.Fatal(err)
		}
		body, err := io.ReadAll(tr)
		if err != nil {
			t.Fatal(err)
		}
		if !bytes.Equal(body, fakeBinary) {
			t.Errorf("entry %q content differs from the binary", hdr.Name)
		}
		entries = append(entries, hdr)
	}
	if len(entries) != 1 {
		t.Fatalf("layer has %d entries, want exactly 1", len(entries))
	}
	h := entries[0]
	if h.Name != "pause" || h.Typeflag != tar.TypeReg {
		t.Errorf("entry %q type %c, want regular file \"pause\"", h.Name, h.Typeflag)
	}
	if h.Mode != 0o755 {
		t.Errorf("mode %o, want 0755", h.Mode)
	}
	if h.Uid != 0 || h.Gid != 0 {
		t.Errorf("owner %d:%d, want 0:0", h.Uid, h.Gid)
	}
	if !h.ModTime.Equal(Created) {
		t.Errorf("mtime %v, want %v", h.ModTime, Created)
	}
	if h.Size != int64(len(fakeBinary)) {
		t.Errorf("size %d, want %d", h.Size, len(fakeBinary))
	}
}

func TestConfigAndManifest(t *testing.T) {
	img, err := Build(fakeBinary)
	if err != nil {
		t.Fatal(err)
	}
	var cfg ocispec.Image
	if err := json.Unmarshal(img.Config, &cfg); err != nil {
		t.Fatal(err)
	}
	if got := cfg.Config.Entrypoint; len(got) != 1 || got[0] != "/pause" {
		t.Errorf("Entrypoint %q, want [/pause]", got)
	}
	if cfg.Config.User != "65535:65535" {
		t.Errorf("User %q", cfg.Config.User)
	}
	if cfg.OS != "linux" || cfg.Architecture != runtime.GOARCH {
		t.Errorf("platform %s/%s, want linux/%s", cfg.OS, cfg.Architecture, runtime.GOARCH)
	}
	if cfg.Created == nil || !cfg.Created.Equal(Created) {
		t.Errorf("created %v, want %v", cfg.Created, Created)
	}
	if cfg.RootFS.Type != "layers" || len(cfg.RootFS.DiffIDs) != 1 || cfg.RootFS.DiffIDs[0] != img.DiffID {
		t.Errorf("rootfs %+v, want the one layer %s", cfg.RootFS, img.DiffID)
	}

	var m ocispec.Manifest
	if err := json.Unmarshal(img.Manifest, &m); err != nil {
		t.Fatal(err)
	}
	if m.SchemaVersion != 2 || m.MediaType != ocispec.MediaTypeImageManifest {
		t.Errorf("manifest header %d %q", m.SchemaVersion, m.MediaType)
	}
	if m.Config.Digest != img.ConfigDigest || m.Config.Size != int64(len(img.Config)) ||
		m.Config.MediaType != ocispec.MediaTypeImageConfig {
		t.Errorf("manifest config descriptor %+v", m.Config)
	}
	if len(m.Layers) != 1 || m.Layers[0].Digest != img.DiffID ||
		m.Layers[0].Size != int64(len(img.Layer)) || m.Layers[0].MediaType != ocispec.MediaTypeImageLayer {
		t.Errorf("manifest layers %+v", m.Layers)
	}
}

func TestBuildFromFile(t *testing.T) {
	p := filepath.Join(t.TempDir(), "noded-pause")
	if err := os.WriteFile(p, fakeBinary, 0o644); err != nil {
		t.Fatal(err)
	}
	a, err := BuildFromFile(p)
	if err != nil {
		t.Fatal(err)
	}
	b, _ := Build(fakeBinary)
	if a.ConfigDigest != b.ConfigDigest {
		t.Error("BuildFromFile and Build disagree")
	}
	if _, err := BuildFromFile(filepath.Join(t.TempDir(), "missing")); !errors.Is(err, os.ErrNotExist) {
		t.Errorf("missing file: %v, want ErrNotExist", err)
	}
	if _, err := Build(nil); err == nil {
		t.Error("empty binary accepted")
	}
}
