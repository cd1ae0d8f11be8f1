package checkpoint

import (
	"archive/tar"
	"bytes"
	"compress/gzip"
	"os"
	"path/filepath"
	"strings"
	"testing"

	runtimeapi "k8s.io/cri-api/pkg/apis/runtime/v1"

	"go.podman.io/storage/pkg/reexec"

	"github.com/noded-dev/noded/internal/errdefs"
)

const (
	nodedConfig = `{"id":"c1","name":"main_p_ns_uid_0","runtime":"noded","createdTime":"2026-01-01T00:00:00Z",
		"noded":{"format":1,"version":"t","imageId":"sha256:aa","imageRef":"busybox",
		"containerConfig":{"metadata":{"name":"main"},"image":{"image":"busybox"},"command":["sh","-c","count"],"envs":[{"key":"A","value":"MQ=="}],"stdin":true}}}`
	spec = `{"ociVersion":"1.2.0","process":{"args":["sh"]},"root":{"path":"/r"}}`
)

func tarBytes(t *testing.T, files map[string][]byte) []byte {
	t.Helper()
	var buf bytes.Buffer
	tw := tar.NewWriter(&buf)
	for name, body := range files {
		if err := tw.WriteHeader(&tar.Header{Name: name, Mode: 0o644, Size: int64(len(body)), Typeflag: tar.TypeReg}); err != nil {
			t.Fatal(err)
		}
		if _, err := tw.Write(body); err != nil {
			t.Fatal(err)
		}
	}
	if err := tw.Close(); err != nil {
		t.Fatal(err)
	}
	return buf.Bytes()
}

func gzipped(t *testing.T, b []byte) []byte {
	var buf bytes.Buffer
	zw := gzip.NewWriter(&buf)
	if _, err := zw.Write(b); err != nil {
		t.Fatal(err)
	}
	if err := zw.Close(); err != nil {
		t.Fatal(err)
	}
	return buf.Bytes()
}

func writeArchive(t *testing.T, b []byte) string {
	t.Helper()
	p := filepath.Join(t.TempDir(), "a.tar")
	if err := os.WriteFile(p, b, 0o600); err != nil {
		t.Fatal(err)
	}
	return p
}

func validFiles() map[string][]byte {
	return map[string][]byte{
		ConfigDumpFile:             []byte(nodedConfig),
		SpecDumpFile:               []byte(spec),
		"checkpoint/inventory.img": []byte("inv"),
	}
}

func TestOpen(t *testing.T) {
	without := func(name string) map[string][]byte {
		f := validFiles()
		delete(f, name)
		return f
	}
	with := func(name, body string) map[string][]byte {
		f := validFiles()
		f[name] = []byte(body)
		return f
	}
	tests := []struct {
		desc    string
		archive []byte
		wantErr string
	}{
		{desc: "noded's archive", archive: tarBytes(t, validFiles())},
		{desc: "gzip compressed", archive: gzipped(t, tarBytes(t, validFiles()))},
		{desc: "not a tar archive", archive: bytes.Repeat([]byte("garbage "), 200), wantErr: "not a readable tar archive"},
		{desc: "no config.dump", archive: tarBytes(t, without(ConfigDumpFile)), wantErr: "has no config.dump"},
		{desc: "no spec.dump", archive: tarBytes(t, without(SpecDumpFile)), wantErr: "has no spec.dump"},
		{desc: "no CRIU images", archive: tarBytes(t, without("checkpoint/inventory.img")), wantErr: "no CRIU images"},
		{desc: "config.dump not JSON", archive: tarBytes(t, with(ConfigDumpFile, "{")), wantErr: "config.dump"},
		{desc: "another runtime", archive: tarBytes(t, with(ConfigDumpFile, `{"id":"x","runtime":"crun"}`)), wantErr: `another runtime (config.dump: runtime "crun"`},
		{desc: "another format", archive: tarBytes(t, with(ConfigDumpFile, `{"noded":{"format":2,"imageId":"sha256:aa","containerConfig":{}}}`)), wantErr: "noded format 2"},
		{desc: "no image", archive: tarBytes(t, with(ConfigDumpFile, `{"noded":{"format":1,"containerConfig":{}}}`)), wantErr: "names no image"},
		{desc: "spec.dump without process", archive: tarBytes(t, with(SpecDumpFile, `{"ociVersion":"1"}`)), wantErr: "not an OCI spec"},
	}
	for _, tc := range tests {
		t.Run(tc.desc, func(t *testing.T) {
			a, err := Open(writeArchive(t, tc.archive))
			if tc.wantErr == "" {
				if err != nil {
					t.Fatal(err)
				}
				if a.Config.Noded.ImageID != "sha256:aa" || a.Container.GetMetadata().GetName() != "main" {
					t.Errorf("read %+v %v", a.Config, a.Container)
				}
				return
			}
			if !errdefs.IsInvalidArgument(err) || !strings.Contains(err.Error(), tc.wantErr) {
				t.Fatalf("got %v, want InvalidArgument with %q", err, tc.wantErr)
			}
		})
	}
	if _, err := Open(filepath.Join(t.TempDir(), "none")); !errdefs.IsInvalidArgument(err) {
		t.Errorf("missing file: %v", err)
	}
	if _, err := Open(t.TempDir()); !errdefs.IsInvalidArgument(err) {
		t.Errorf("a directory: %v", err)
	}
}

func TestContainerConfig(t *testing.T) {
	a, err := Open(writeArchive(t, tarBytes(t, validFiles())))
	if err != nil {
		t.Fatal(err)
	}
	tests := []struct {
		desc    string
		req     *runtimeapi.ContainerConfig
		wantCmd []string
		wantEnv int
	}{
		{desc: "the request's process is unset", req: &runtimeapi.ContainerConfig{Metadata: &runtimeapi.ContainerMetadata{Name: "new"}, Image: &runtimeapi.ImageSpec{Image: "/a.tar"}},
			wantCmd: []string{"sh", "-c", "count"}, wantEnv: 1},
		{desc: "the request's process wins", req: &runtimeapi.ContainerConfig{Metadata: &runtimeapi.ContainerMetadata{Name: "new"}, Command: []string{"x"}, Envs: []*runtimeapi.KeyValue{{Key: "B"}, {Key: "C"}}},
			wantCmd: []string{"x"}, wantEnv: 2},
	}
	for _, tc := range tests {
		t.Run(tc.desc, func(t *testing.T) {
			got := a.ContainerConfig(tc.req)
			if got.GetImage().GetImage() != "sha256:aa" || got.GetImage().GetUserSpecifiedImage() != "busybox" {
				t.Errorf("image %v", got.GetImage())
			}
			if got.GetMetadata().GetName() != "new" {
				t.Errorf("metadata %v: the request's must stay", got.GetMetadata())
			}
			if strings.Join(got.GetCommand(), " ") != strings.Join(tc.wantCmd, " ") || len(got.GetEnvs()) != tc.wantEnv {
				t.Errorf("command %v envs %v", got.GetCommand(), got.GetEnvs())
			}
			if !got.GetStdin() {
				t.Error("stdin must be the checkpointed container's")
			}
			if tc.req.GetImage().GetImage() == "sha256:aa" {
				t.Error("the request was changed")
			}
		})
	}
}

func TestMain(m *testing.M) {
	// chrootarchive's extraction re-executes the test binary.
	if reexec.Init() {
		return
	}
	os.Exit(m.Run())
}

func TestUnpack(t *testing.T) {
	if os.Geteuid() != 0 {
		t.Skip("Unpack extracts chrooted: needs root")
	}
	files := validFiles()
	files[RootfsDiffFile] = tarBytes(t, map[string][]byte{"new/file": []byte("kept")})
	files[DeletedFilesFile] = []byte(`["/gone", "/dir", "../../outside"]`)
	a, err := Open(writeArchive(t, tarBytes(t, files)))
	if err != nil {
		t.Fatal(err)
	}
	base := t.TempDir()
	rootfs := filepath.Join(base, "rootfs")
	for _, p := range []string{"gone", "dir/x", "stays"} {
		if err := os.MkdirAll(filepath.Dir(filepath.Join(rootfs, p)), 0o755); err != nil {
			t.Fatal(err)
		}
		if err := os.WriteFile(filepath.Join(rootfs, p), nil, 0o644); err != nil {
			t.Fatal(err)
		}
	}
	outside := filepath.Join(base, "outside")
	if err := os.WriteFile(outside, nil, 0o644); err != nil {
		t.Fatal(err)
	}
	dir := filepath.Join(base, "restore")
	if err := a.Unpack(dir, rootfs); err != nil {
		t.Fatal(err)
	}
	if b, err := os.ReadFile(filepath.Join(rootfs, "new/file")); err != nil || string(b) != "kept" {
		t.Errorf("rootfs-diff.tar's file: %q %v", b, err)
	}
	for _, p := range []string{"gone", "dir"} {
		if _, err := os.Stat(filepath.Join(rootfs, p)); !os.IsNotExist(err) {
			t.Errorf("/%s was deleted at the checkpoint, and is there: %v", p, err)
		}
	}
	for _, p := range []string{filepath.Join(rootfs, "stays"), outside, filepath.Join(dir, ImagesDir, "inventory.img")} {
		if _, err := os.Stat(p); err != nil {
			t.Errorf("%s: %v", p, err)
		}
	}
}

func TestCheckLocation(t *testing.T) {
	dir := t.TempDir()
	tests := []struct {
		desc, location string
		ok             bool
	}{
		{"a file in an existing directory", filepath.Join(dir, "c.tar"), true},
		{"empty", "", false},
		{"relative", "c.tar", false},
		{"a directory", dir, false},
		{"in a missing directory", filepath.Join(dir, "none", "c.tar"), false},
	}
	for _, tc := range tests {
		t.Run(tc.desc, func(t *testing.T) {
			err := CheckLocation(tc.location)
			if tc.ok != (err == nil) || (err != nil && !errdefs.IsInvalidArgument(err)) {
				t.Fatalf("CheckLocation(%q) = %v", tc.location, err)
			}
		})
	}
}

func TestCompressionOf(t *testing.T) {
	for loc, want := range map[string]string{"/a.tar": "tar", "/a.tar.gz": "tar.gz", "/a.tgz": "tar.gz", "/a.tar.zst": "tar.zst", "/a": "tar"} {
		c := compressionOf(loc)
		if got := c.Extension(); got != want {
			t.Errorf("%s: %s, want %s", loc, got, want)
		}
	}
}

func TestCheck(t *testing.T) {
	a, err := Open(writeArchive(t, tarBytes(t, validFiles())))
	if err != nil {
		t.Fatal(err)
	}
	meta := &runtimeapi.ContainerMetadata{Name: "main"}
	tests := []struct {
		desc    string
		cfg     *runtimeapi.ContainerConfig
		wantErr string
	}{
		{desc: "nothing set", cfg: &runtimeapi.ContainerConfig{Metadata: meta}},
		{desc: "the same image by name", cfg: &runtimeapi.ContainerConfig{Metadata: meta, Image: &runtimeapi.ImageSpec{Image: "busybox"}, Command: []string{"sh", "-c", "count"}}},
		{desc: "the same image by ID", cfg: &runtimeapi.ContainerConfig{Metadata: meta, Image: &runtimeapi.ImageSpec{Image: "sha256:aa"}}},
		{desc: "another image", cfg: &runtimeapi.ContainerConfig{Metadata: meta, Image: &runtimeapi.ImageSpec{Image: "alpine"}}, wantErr: "image"},
		{desc: "another command", cfg: &runtimeapi.ContainerConfig{Metadata: meta, Command: []string{"sleep"}}, wantErr: "command"},
		{desc: "args it did not have", cfg: &runtimeapi.ContainerConfig{Metadata: meta, Args: []string{"x"}}, wantErr: "args"},
		{desc: "another working directory", cfg: &runtimeapi.ContainerConfig{Metadata: meta, WorkingDir: "/tmp"}, wantErr: "working directory"},
	}
	for _, tc := range tests {
		t.Run(tc.desc, func(t *testing.T) {
			err := a.Check(tc.cfg)
			if tc.wantErr == "" {
				if err != nil {
					t.Fatal(err)
				}
				return
			}
			if !errdefs.IsInvalidArgument(err) || !strings.Contains(err.Error(), tc.wantErr) {
				t.Fatalf("got %v, want InvalidArgument about %s", err, tc.wantErr)
			}
		})
	}
}

func TestOpenPod(t *testing.T) {
	tests := []struct {
		desc    string
		files   map[string][]byte
		wantErr string
	}{
		{desc: "noded's pod checkpoint", files: map[string][]byte{
			PodOptionsFile: []byte(`{"version":1,"runtime":"noded","containers":{"main":"c1"}}`), "main.tar": tarBytes(t, validFiles()),
		}},
		{desc: "no pod.options", files: map[string][]byte{"main.tar": tarBytes(t, validFiles())}, wantErr: "pod.options"},
		{desc: "another runtime", files: map[string][]byte{PodOptionsFile: []byte(`{"version":1,"runtime":"cri-o","containers":{"main":"c1"}}`)}, wantErr: `runtime "cri-o"`},
		{desc: "no containers", files: map[string][]byte{PodOptionsFile: []byte(`{"version":1,"runtime":"noded"}`)}, wantErr: "no containers"},
		{desc: "an archive missing", files: map[string][]byte{PodOptionsFile: []byte(`{"version":1,"runtime":"noded","containers":{"main":"c1"}}`)}, wantErr: "main.tar"},
		{desc: "a name leaving the directory", files: map[string][]byte{PodOptionsFile: []byte(`{"version":1,"runtime":"noded","containers":{"../x":"c1"}}`)}, wantErr: "container name"},
	}
	for _, tc := range tests {
		t.Run(tc.desc, func(t *testing.T) {
			dir := t.TempDir()
			for name, b := range tc.files {
				if err := os.WriteFile(filepath.Join(dir, name), b, 0o600); err != nil {
					t.Fatal(err)
				}
			}
			p, err := OpenPod(dir)
			if tc.wantErr == "" {
				if err != nil {
					t.Fatal(err)
				}
				if strings.Join(p.Names(), ",") != "main" {
					t.Errorf("names %v", p.Names())
				}
				return
			}
			if !errdefs.IsInvalidArgument(err) || !strings.Contains(err.Error(), tc.wantErr) {
				t.Fatalf("got %v, want InvalidArgument with %q", err, tc.wantErr)
			}
		})
	}
}

func TestCheckOutputDir(t *testing.T) {
	full := t.TempDir()
	if err := os.WriteFile(filepath.Join(full, "x"), nil, 0o600); err != nil {
		t.Fatal(err)
	}
	for _, tc := range []struct {
		desc, dir string
		ok        bool
	}{
		{"empty directory", t.TempDir(), true},
		{"not empty", full, false},
		{"missing", filepath.Join(full, "none"), false},
		{"relative", "out", false},
		{"empty path", "", false},
	} {
		t.Run(tc.desc, func(t *testing.T) {
			if err := CheckOutputDir(tc.dir); tc.ok != (err == nil) {
				t.Fatalf("CheckOutputDir(%q) = %v", tc.dir, err)
			}
		})
	}
}

// A crafted rootfs-diff.tar whose symlink points out of the root file
// system cannot write there.
func TestUnpackConfined(t *testing.T) {
	if os.Geteuid() != 0 {
		t.Skip("Unpack extracts chrooted: needs root")
	}
	base := t.TempDir()
	outside := filepath.Join(base, "outside")
	if err := os.Mkdir(outside, 0o755); err != nil {
		t.Fatal(err)
	}
	var diff bytes.Buffer
	tw := tar.NewWriter(&diff)
	if err := tw.WriteHeader(&tar.Header{Name: "link", Typeflag: tar.TypeSymlink, Linkname: outside, Mode: 0o777}); err != nil {
		t.Fatal(err)
	}
	if err := tw.WriteHeader(&tar.Header{Name: "link/pwned", Typeflag: tar.TypeReg, Mode: 0o644, Size: 1}); err != nil {
		t.Fatal(err)
	}
	if _, err := tw.Write([]byte("x")); err != nil {
		t.Fatal(err)
	}
	if err := tw.Close(); err != nil {
		t.Fatal(err)
	}
	files := validFiles()
	files[RootfsDiffFile] = diff.Bytes()
	a, err := Open(writeArchive(t, tarBytes(t, files)))
	if err != nil {
		t.Fatal(err)
	}
	rootfs := filepath.Join(base, "rootfs")
	if err := os.Mkdir(rootfs, 0o755); err != nil {
		t.Fatal(err)
	}
	_ = a.Unpack(filepath.Join(base, "restore"), rootfs) // an error is fine too
	if _, err := os.Stat(filepath.Join(outside, "pwned")); !os.IsNotExist(err) {
		t.Fatalf("the archive wrote outside the root file system: %v", err)
	}
}
