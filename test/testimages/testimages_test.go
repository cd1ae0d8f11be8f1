package testimages

import (
	"archive/tar"
	"context"
	"errors"
	"io"
	"net/http"
	"net/http/httptest"
	"os"
	"os/exec"
	"path/filepath"
	"runtime"
	"strings"
	"sync"
	"testing"

	v1 "github.com/google/go-containerregistry/pkg/v1"
	"github.com/google/go-containerregistry/pkg/v1/mutate"
	"github.com/google/go-containerregistry/pkg/v1/remote"
	"go.podman.io/image/v5/docker"
	"go.podman.io/image/v5/docker/reference"
	ciimage "go.podman.io/image/v5/image"
	"go.podman.io/image/v5/pkg/sysregistriesv2"
	"go.podman.io/image/v5/types"
)

// criTestNames is every image reference cri-tools v1.37.0 critest pulls on
// Linux, transcribed from its source (pkg/validate/consts.go,
// multi_container_linux.go, security_context_linux.go, pkg/framework/util.go,
// pkg/benchmark/image.go) after PrepareImageName appends ":latest". It is
// kept separate from the catalog on purpose: the test must fail if the
// catalog drops a name, not agree with itself.
var criTestNames = []string{
	"registry.k8s.io/e2e-test-images/busybox:1.29-2",
	"registry.k8s.io/e2e-test-images/nginx:1.14-2",
	"registry.k8s.io/e2e-test-images/httpd:2.4.39-4",
	"registry.k8s.io/e2e-test-images/nonewprivs:1.3",
	"registry.k8s.io/pause:3.9",
	"k8s.gcr.io/pause:3.9",
	"gcr.io/k8s-staging-cri-tools/test-image-user-uid:latest",
	"gcr.io/k8s-staging-cri-tools/test-image-user-username:latest",
	"gcr.io/k8s-staging-cri-tools/test-image-user-uid-group:latest",
	"gcr.io/k8s-staging-cri-tools/test-image-user-username-group:latest",
	"gcr.io/k8s-staging-cri-tools/test-image-predefined-group:latest",
	"gcr.io/k8s-staging-cri-tools/test-image-latest:latest",
	"gcr.io/k8s-staging-cri-tools/test-image-tag:test",
	"gcr.io/k8s-staging-cri-tools/test-image-tag:all",
	"gcr.io/k8s-staging-cri-tools/test-image-1:latest",
	"gcr.io/k8s-staging-cri-tools/test-image-2:latest",
	"gcr.io/k8s-staging-cri-tools/test-image-3:latest",
	"gcr.io/k8s-staging-cri-tools/test-image-tags:1",
	"gcr.io/k8s-staging-cri-tools/test-image-tags:2",
	"gcr.io/k8s-staging-cri-tools/test-image-tags:3",
	"gcr.io/k8s-staging-cri-tools/hostnet-nginx-" + runtime.GOARCH + ":latest",
	"public.ecr.aws/docker/library/busybox:1",
	"public.ecr.aws/docker/library/busybox:1-glibc",
	"public.ecr.aws/docker/library/busybox:1-musl",
}

// busyboxPath finds the busybox binary the catalog needs, or skips.
func busyboxPath(t *testing.T) string {
	t.Helper()
	p := os.Getenv("NODED_TEST_BUSYBOX")
	if p == "" {
		p = filepath.Join("..", "..", "_build", "busybox", "busybox")
	}
	if _, err := os.Stat(p); err != nil {
		t.Skipf("no static busybox at %s (run test/images/build-busybox.sh or set NODED_TEST_BUSYBOX): %v", p, err)
	}
	cc := os.Getenv("CC")
	if cc == "" {
		cc = "gcc"
	}
	if _, err := exec.LookPath(cc); err != nil {
		t.Skipf("no C compiler %q for the helper binaries: %v", cc, err)
	}
	return p
}

var (
	catalogOnce   sync.Once
	catalogImages []Image
	catalogErr    error
)

// testCatalog builds the catalog once for all tests of the package.
func testCatalog(t *testing.T) []Image {
	t.Helper()
	bb := busyboxPath(t)
	catalogOnce.Do(func() { catalogImages, catalogErr = Catalog(bb) })
	if catalogErr != nil {
		t.Fatalf("Catalog: %v", catalogErr)
	}
	return catalogImages
}

// byName indexes a catalog by every name.
func byName(images []Image) map[string]Image {
	m := map[string]Image{}
	for _, img := range images {
		for _, n := range img.Names {
			m[n] = img
		}
	}
	return m
}

func TestCatalogHasEveryCriTestName(t *testing.T) {
	images := byName(testCatalog(t))
	for _, n := range criTestNames {
		t.Run(n, func(t *testing.T) {
			if _, ok := images[n]; !ok {
				t.Fatalf("catalog has no %s", n)
			}
		})
	}
}

func TestCatalogNamesAreUnique(t *testing.T) {
	seen := map[string]bool{}
	for _, n := range Names(testCatalog(t)) {
		if seen[n] {
			t.Errorf("%s is in the catalog twice", n)
		}
		seen[n] = true
	}
}

// TestSameAndDifferentImages checks the identity relations critest's image
// specs assert.
func TestSameAndDifferentImages(t *testing.T) {
	images := byName(testCatalog(t))
	const p = "gcr.io/k8s-staging-cri-tools/"
	tests := []struct {
		name  string
		names []string
		same  bool
	}{
		{"pause from two registries is one image", []string{"registry.k8s.io/pause:3.9", "k8s.gcr.io/pause:3.9"}, true},
		{"test-image-tags is one image under three tags", []string{p + "test-image-tags:1", p + "test-image-tags:2", p + "test-image-tags:3"}, true},
		{"test-image-1/2/3 are three images", []string{p + "test-image-1:latest", p + "test-image-2:latest", p + "test-image-3:latest"}, false},
		{"test-image-tag:test and :all differ", []string{p + "test-image-tag:test", p + "test-image-tag:all"}, false},
	}
	for _, tt := range tests {
		t.Run(tt.name, func(t *testing.T) {
			digests := map[v1.Hash]bool{}
			ids := map[v1.Hash]bool{}
			for _, n := range tt.names {
				digests[mustDigest(t, images[n])] = true
				ids[imageID(t, images[n])] = true
			}
			want := len(tt.names)
			if tt.same {
				want = 1
			}
			if len(digests) != want || len(ids) != want {
				t.Errorf("%d manifest digests and %d image IDs for %v, want %d", len(digests), len(ids), tt.names, want)
			}
		})
	}
}

func TestCatalogIsDeterministic(t *testing.T) {
	first := byName(testCatalog(t))
	second, err := Catalog(busyboxPath(t))
	if err != nil {
		t.Fatalf("second Catalog: %v", err)
	}
	for n, img := range byName(second) {
		t.Run(n, func(t *testing.T) {
			if got, want := mustDigest(t, img), mustDigest(t, first[n]); got != want {
				t.Errorf("digest %s on the second build, %s on the first", got, want)
			}
		})
	}
}

// TestImageContents checks the config and files each spec relies on.
func TestImageContents(t *testing.T) {
	images := byName(testCatalog(t))
	const p = "gcr.io/k8s-staging-cri-tools/"
	tests := []struct {
		name       string
		user       string
		entrypoint string
		cmd        string
		files      map[string]string // path -> substring of its content ("" = just present)
		setuid     string
	}{
		{name: "registry.k8s.io/e2e-test-images/busybox:1.29-2", cmd: "sh", files: map[string]string{
			"bin/busybox": "", "bin/ipcs": "", "bin/pgrep": "", "bin/pidof": "", "bin/httpd": "", "bin/sh": "",
			"etc/passwd": "nobody:x:65534:", "etc/group": "www-data:x:33:",
		}},
		{name: "registry.k8s.io/pause:3.9", user: "65535:65535", entrypoint: "/pause", files: map[string]string{"pause": ""}},
		{name: p + "test-image-user-uid:latest", user: "1002", cmd: "sh"},
		{name: p + "test-image-user-username:latest", user: "www-data", cmd: "sh", files: map[string]string{"etc/passwd": "www-data:x:33:33:"}},
		{name: p + "test-image-user-uid-group:latest", user: "1003:1004", cmd: "sh"},
		{name: p + "test-image-user-username-group:latest", user: "www-data:1004", cmd: "sh"},
		{name: p + "test-image-predefined-group:latest", user: "1000", cmd: "sh", files: map[string]string{
			"etc/passwd": "default-user:x:1000:1000:", "etc/group": "group-defined-in-image:x:50000:default-user",
		}},
		{name: p + "test-image-1:latest", cmd: "sh", files: map[string]string{"test-image-1": ""}},
		{name: p + "test-image-tags:1", cmd: "sh", files: map[string]string{"same-image": ""}},
		{name: "registry.k8s.io/e2e-test-images/nginx:1.14-2", cmd: "nginx -g daemon off;", files: map[string]string{
			"usr/sbin/nginx": "", "etc/nginx/conf.d/default.conf": "listen       80;", "usr/share/nginx/html/index.html": "",
		}},
		{name: p + "hostnet-nginx-" + runtime.GOARCH + ":latest", cmd: "nginx -g daemon off;", files: map[string]string{
			"etc/nginx/conf.d/default.conf": "listen       12003;",
		}},
		{name: "registry.k8s.io/e2e-test-images/httpd:2.4.39-4", cmd: "httpd-foreground", files: map[string]string{
			"usr/local/bin/httpd-foreground": "exec httpd -f -p 80", "usr/local/apache2/htdocs/index.html": "It works!",
		}},
		{name: "registry.k8s.io/e2e-test-images/nonewprivs:1.3", entrypoint: "/usr/local/bin/nnp", setuid: "usr/local/bin/nnp"},
	}
	for _, tt := range tests {
		t.Run(tt.name, func(t *testing.T) {
			img, ok := images[tt.name]
			if !ok {
				t.Fatalf("not in catalog")
			}
			host, err := img.HostImage()
			if err != nil {
				t.Fatal(err)
			}
			cf, err := host.ConfigFile()
			if err != nil {
				t.Fatal(err)
			}
			c := cf.Config
			if c.User != tt.user {
				t.Errorf("User = %q, want %q", c.User, tt.user)
			}
			if got := strings.Join(c.Entrypoint, " "); got != tt.entrypoint {
				t.Errorf("Entrypoint = %q, want %q", got, tt.entrypoint)
			}
			if got := strings.Join(c.Cmd, " "); got != tt.cmd {
				t.Errorf("Cmd = %q, want %q", got, tt.cmd)
			}
			if cf.Architecture != runtime.GOARCH || cf.OS != "linux" {
				t.Errorf("platform %s/%s, want linux/%s", cf.OS, cf.Architecture, runtime.GOARCH)
			}
			fs := flatten(t, host)
			for path, want := range tt.files {
				f, ok := fs[path]
				if !ok {
					t.Errorf("no /%s", path)
					continue
				}
				if !strings.Contains(f.content, want) {
					t.Errorf("/%s does not contain %q:\n%s", path, want, f.content)
				}
			}
			if tt.setuid != "" {
				f := fs[tt.setuid]
				if f.hdr == nil || f.hdr.Mode&04000 == 0 || f.hdr.Uid != 0 {
					t.Errorf("/%s is not setuid root: %+v", tt.setuid, f.hdr)
				}
			}
		})
	}
}

// TestManifestListsPutHostPlatformSecond guards the decoy: a puller that
// ignores platforms must pick the wrong entry and fail.
func TestManifestListsPutHostPlatformSecond(t *testing.T) {
	for _, img := range testCatalog(t) {
		if img.Index == nil {
			continue
		}
		t.Run(img.Names[0], func(t *testing.T) {
			im, err := img.Index.IndexManifest()
			if err != nil {
				t.Fatal(err)
			}
			if len(im.Manifests) != 2 || im.Manifests[1].Platform == nil ||
				im.Manifests[1].Platform.Architecture != runtime.GOARCH {
				t.Fatalf("want [decoy, linux/%s], got %+v", runtime.GOARCH, im.Manifests)
			}
			for _, d := range im.Manifests {
				if d.ArtifactType != "" {
					t.Errorf("entry %s has artifactType %q", d.Digest, d.ArtifactType)
				}
			}
		})
	}
}

// startRegistry serves the catalog like noded-testregistry does and
// returns its host:port.
func startRegistry(t *testing.T, images []Image) string {
	t.Helper()
	srv := httptest.NewServer(NewRegistry(nil))
	t.Cleanup(srv.Close)
	addr := strings.TrimPrefix(srv.URL, "http://")
	if err := Push(context.Background(), addr, images); err != nil {
		t.Fatalf("Push: %v", err)
	}
	return addr
}

func TestRegistryServesEveryName(t *testing.T) {
	images := testCatalog(t)
	addr := startRegistry(t, images)
	accept := strings.Join([]string{
		"application/vnd.docker.distribution.manifest.list.v2+json",
		"application/vnd.docker.distribution.manifest.v2+json",
		"application/vnd.oci.image.index.v1+json",
		"application/vnd.oci.image.manifest.v1+json",
	}, ", ")
	for n, img := range byName(images) {
		t.Run(n, func(t *testing.T) {
			repo, tag, _ := strings.Cut(n[strings.LastIndex(n, "/"):], ":")
			url := "http://" + addr + "/v2/" + n[:strings.LastIndex(n, "/")] + repo + "/manifests/" + tag
			req, err := http.NewRequest(http.MethodGet, url, nil)
			if err != nil {
				t.Fatal(err)
			}
			req.Header.Set("Accept", accept)
			resp, err := http.DefaultClient.Do(req)
			if err != nil {
				t.Fatal(err)
			}
			defer resp.Body.Close()
			if resp.StatusCode != http.StatusOK {
				t.Fatalf("GET %s: %s", url, resp.Status)
			}
			if got, want := resp.Header.Get("Docker-Content-Digest"), mustDigest(t, img).String(); got != want {
				t.Errorf("Docker-Content-Digest %s, want %s", got, want)
			}

			// And the whole image, platform-resolved, as a client pulls it.
			ref, err := MirrorReference(addr, n)
			if err != nil {
				t.Fatal(err)
			}
			pulled, err := remote.Image(ref, remote.WithPlatform(hostPlatform()))
			if err != nil {
				t.Fatalf("remote.Image(%s): %v", ref, err)
			}
			got, err := pulled.ConfigName()
			if err != nil {
				t.Fatal(err)
			}
			if want := imageID(t, img); got != want {
				t.Errorf("pulled config %s, want %s", got, want)
			}
		})
	}
}

func TestMirrorReference(t *testing.T) {
	tests := []struct{ in, want string }{
		{"registry.k8s.io/pause:3.9", "127.0.0.1:5000/registry.k8s.io/pause:3.9"},
		{"docker.io/library/busybox:1.28", "127.0.0.1:5000/docker.io/library/busybox:1.28"},
		{"gcr.io/k8s-staging-cri-tools/test-image-tag:all", "127.0.0.1:5000/gcr.io/k8s-staging-cri-tools/test-image-tag:all"},
	}
	for _, tt := range tests {
		t.Run(tt.in, func(t *testing.T) {
			ref, err := MirrorReference("127.0.0.1:5000", tt.in)
			if err != nil {
				t.Fatal(err)
			}
			if ref.Name() != tt.want {
				t.Errorf("got %s, want %s", ref.Name(), tt.want)
			}
		})
	}
	if _, err := MirrorReference("127.0.0.1:5000", "busybox:1.28"); err == nil {
		t.Error("short name accepted")
	}
}

// writeRegistriesConf writes RegistriesConf for addr and returns a
// SystemContext that reads only it (no drop-ins from the machine).
func writeRegistriesConf(t *testing.T, addr string, registries []string) *types.SystemContext {
	t.Helper()
	dir := t.TempDir()
	conf := filepath.Join(dir, "registries.conf")
	if err := os.WriteFile(conf, []byte(RegistriesConf(addr, registries)), 0o644); err != nil {
		t.Fatal(err)
	}
	if err := os.Mkdir(filepath.Join(dir, "registries.conf.d"), 0o755); err != nil {
		t.Fatal(err)
	}
	sysregistriesv2.InvalidateCache()
	return &types.SystemContext{
		SystemRegistriesConfPath:    conf,
		SystemRegistriesConfDirPath: filepath.Join(dir, "registries.conf.d"),
		AuthFilePath:                filepath.Join(dir, "auth.json"),
		OSChoice:                    "linux",
		ArchitectureChoice:          runtime.GOARCH,
	}
}

// TestRegistriesConfRewritesToMirror checks containers/image's reading of
// the generated file: tag and digest pulls both go to the mirror first.
func TestRegistriesConfRewritesToMirror(t *testing.T) {
	sys := writeRegistriesConf(t, "127.0.0.1:5000", AlwaysMirrored)
	search, err := sysregistriesv2.UnqualifiedSearchRegistries(sys)
	if err != nil {
		t.Fatal(err)
	}
	if strings.Join(search, ",") != "docker.io" {
		t.Errorf("unqualified-search-registries = %v", search)
	}
	const digest = "@sha256:9700f9a2f5bf2c45f2f605a0bd3bce7cf37420ec9d3ed50ac2758413308766bf"
	tests := []struct{ in, want string }{
		{"registry.k8s.io/pause:3.9", "127.0.0.1:5000/registry.k8s.io/pause:3.9"},
		{"k8s.gcr.io/pause:3.9", "127.0.0.1:5000/k8s.gcr.io/pause:3.9"},
		{"busybox:1.28", "127.0.0.1:5000/docker.io/library/busybox:1.28"},
		{"gcr.io/k8s-staging-cri-tools/test-image-digest" + digest, "127.0.0.1:5000/gcr.io/k8s-staging-cri-tools/test-image-digest" + digest},
		{"quay.io/foo/bar:1", "127.0.0.1:5000/quay.io/foo/bar:1"},
	}
	for _, tt := range tests {
		t.Run(tt.in, func(t *testing.T) {
			named, err := reference.ParseNormalizedNamed(tt.in)
			if err != nil {
				t.Fatal(err)
			}
			reg, err := sysregistriesv2.FindRegistry(sys, named.String())
			if err != nil || reg == nil {
				t.Fatalf("FindRegistry(%s) = %v, %v", named, reg, err)
			}
			sources, err := reg.PullSourcesFromReference(named)
			if err != nil {
				t.Fatal(err)
			}
			if len(sources) != 2 {
				t.Fatalf("want mirror then upstream, got %+v", sources)
			}
			if got := sources[0].Reference.String(); got != tt.want || !sources[0].Endpoint.Insecure {
				t.Errorf("first source %s (insecure=%v), want %s (insecure)", got, sources[0].Endpoint.Insecure, tt.want)
			}
		})
	}
}

// TestContainersImagePullsThroughMirror pulls by the upstream names with
// containers/image, as noded does, configured only by the generated
// registries.conf: the manifest list, the platform entry and the config
// must all come from the local registry.
func TestContainersImagePullsThroughMirror(t *testing.T) {
	images := testCatalog(t)
	addr := startRegistry(t, images)
	sys := writeRegistriesConf(t, addr, Registries(images))
	catalog := byName(images)
	for _, n := range []string{
		"registry.k8s.io/pause:3.9",
		"k8s.gcr.io/pause:3.9",
		"registry.k8s.io/e2e-test-images/busybox:1.29-2",
		"gcr.io/k8s-staging-cri-tools/hostnet-nginx-" + runtime.GOARCH + ":latest",
		"docker.io/library/busybox:1.28",
	} {
		t.Run(n, func(t *testing.T) {
			ctx := context.Background()
			ref, err := docker.ParseReference("//" + n)
			if err != nil {
				t.Fatal(err)
			}
			src, err := ref.NewImageSource(ctx, sys)
			if err != nil {
				t.Fatalf("NewImageSource: %v", err)
			}
			defer src.Close()
			img, err := ciimage.FromSource(ctx, sys, src)
			if err != nil {
				t.Fatalf("FromSource: %v", err)
			}
			defer img.Close()
			if got, want := img.ConfigInfo().Digest.String(), imageID(t, catalog[n]).String(); got != want {
				t.Errorf("config %s, want %s", got, want)
			}
			if _, err := img.ConfigBlob(ctx); err != nil {
				t.Errorf("config blob: %v", err)
			}
		})
	}
}

func TestRegistriesConfMirrorsEveryCatalogRegistry(t *testing.T) {
	regs := Registries(testCatalog(t))
	for _, want := range []string{"docker.io", "gcr.io", "k8s.gcr.io", "public.ecr.aws", "quay.io", "registry.k8s.io"} {
		t.Run(want, func(t *testing.T) {
			found := false
			for _, r := range regs {
				found = found || r == want
			}
			if !found {
				t.Errorf("%s not mirrored: %v", want, regs)
			}
		})
	}
}

func mustDigest(t *testing.T, img Image) v1.Hash {
	t.Helper()
	d, err := img.Digest()
	if err != nil {
		t.Fatal(err)
	}
	return d
}

// imageID is the config digest of the host-platform image, which CRI
// runtimes report as the image ID.
func imageID(t *testing.T, img Image) v1.Hash {
	t.Helper()
	host, err := img.HostImage()
	if err != nil {
		t.Fatal(err)
	}
	h, err := host.ConfigName()
	if err != nil {
		t.Fatal(err)
	}
	return h
}

type file struct {
	hdr     *tar.Header
	content string
}

// flatten returns the image's merged filesystem by path (no leading "/").
func flatten(t *testing.T, img v1.Image) map[string]file {
	t.Helper()
	rc := mutate.Extract(img)
	defer rc.Close()
	fs := map[string]file{}
	tr := tar.NewReader(rc)
	for {
		h, err := tr.Next()
		if errors.Is(err, io.EOF) {
			return fs
		}
		if err != nil {
			t.Fatal(err)
		}
		b, err := io.ReadAll(tr)
		if err != nil {
			t.Fatal(err)
		}
		fs[strings.TrimSuffix(h.Name, "/")] = file{hdr: h, content: string(b)}
	}
}
