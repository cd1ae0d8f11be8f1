// Package testimages builds, offline and deterministically, the container
// images that critest (cri-tools v1.37.0) pulls, so that the CRI validation
// suite can run against noded without network access.
//
// Every image is assembled in memory from a static busybox binary (see
// test/images/build-busybox.sh), a few small C helpers compiled with gcc,
// and generated files; all timestamps are pinned, so the same inputs always
// give the same digests. test/images/README.md maps each image to the
// critest specs that use it.
package testimages

import (
	"bytes"
	"fmt"
	"os"
	"os/exec"
	"sort"
	"strings"
	"time"

	v1 "github.com/google/go-containerregistry/pkg/v1"
	"github.com/google/go-containerregistry/pkg/v1/partial"
	"github.com/google/go-containerregistry/pkg/v1/remote"
)

// Epoch is the creation time of every image, history entry and file, fixed
// so that digests do not change from one build to the next.
var Epoch = time.Date(2025, 1, 1, 0, 0, 0, 0, time.UTC)

// Registry prefixes critest uses (cri-tools pkg/validate, pkg/framework,
// pkg/benchmark).
const (
	e2eImages  = "registry.k8s.io/e2e-test-images/"
	criTools   = "gcr.io/k8s-staging-cri-tools/"
	ecrLibrary = "public.ecr.aws/docker/library/"
	hubLibrary = "docker.io/library/"
)

// defaultPath is the PATH of the upstream busybox-based images.
const defaultPath = "PATH=/usr/local/sbin:/usr/local/bin:/usr/sbin:/usr/bin:/sbin:/bin"

// Image is one image of the catalog and every name it is served under.
// Exactly one of Image and Index is set: upstream multi-arch images are
// manifest lists, single-arch ones (hostnet-nginx-ARCH) plain manifests.
type Image struct {
	// Names are fully qualified references, host/repository:tag, spelled
	// as critest spells them (after it appends ":latest").
	Names []string
	// Purpose says what critest does with the image.
	Purpose string
	Image   v1.Image
	Index   v1.ImageIndex
}

// Taggable returns what a registry stores under the image's tags.
func (i Image) Taggable() remote.Taggable {
	if i.Index != nil {
		return i.Index
	}
	return i.Image
}

// Digest is the digest of the manifest (or manifest list) served for the
// image's tags.
func (i Image) Digest() (v1.Hash, error) {
	return partial.Digest(i.Taggable())
}

// HostImage returns the image a runtime on this machine runs: the image
// itself, or the host-platform entry of the manifest list.
func (i Image) HostImage() (v1.Image, error) {
	if i.Index == nil {
		return i.Image, nil
	}
	im, err := i.Index.IndexManifest()
	if err != nil {
		return nil, err
	}
	want := hostPlatform()
	for _, d := range im.Manifests {
		if d.Platform != nil && d.Platform.Satisfies(want) {
			return i.Index.Image(d.Digest)
		}
	}
	return nil, fmt.Errorf("no %s/%s entry in the manifest list of %s", want.OS, want.Architecture, i.Names[0])
}

// Catalog builds every image critest uses, and with WithAgnhost the e2e
// suite's too (e2e.go). busyboxPath is a static busybox for the build
// machine's architecture; gcc (or $CC) must be able to link static binaries.
func Catalog(busyboxPath string, opts ...Option) ([]Image, error) {
	var o options
	for _, opt := range opts {
		opt(&o)
	}
	b, err := newBuilder(busyboxPath)
	if err != nil {
		return nil, err
	}
	images, err := b.catalog()
	if err != nil || o.agnhost == "" {
		return images, err
	}
	e2e, err := b.e2eCatalog(o.agnhost)
	if err != nil {
		return nil, err
	}
	return append(images, e2e...), nil
}

// Names returns every name of every image, sorted.
func Names(images []Image) []string {
	var names []string
	for _, img := range images {
		names = append(names, img.Names...)
	}
	sort.Strings(names)
	return names
}

// builder holds the inputs and shared layers of one catalog build.
type builder struct {
	pause    []byte
	nnp      []byte
	nginx    []byte
	layers   layers
	base     *tree // the busybox root filesystem, shared by most images
	decoyFS  *tree
	decoys   map[format]v1.Image
	platform v1.Platform
}

func newBuilder(busyboxPath string) (*builder, error) {
	bb, err := os.ReadFile(busyboxPath)
	if err != nil {
		return nil, fmt.Errorf("busybox binary: %w", err)
	}
	applets, err := listApplets(busyboxPath)
	if err != nil {
		return nil, err
	}
	b := &builder{
		layers:   layers{},
		base:     busyboxTree(bb, applets),
		decoyFS:  decoyTree(),
		decoys:   map[format]v1.Image{},
		platform: hostPlatform(),
	}
	if b.pause, err = compileStatic("pause"); err != nil {
		return nil, err
	}
	if b.nnp, err = compileStatic("nnp"); err != nil {
		return nil, err
	}
	if b.nginx, err = compileStatic("nginx"); err != nil {
		return nil, err
	}
	return b, nil
}

// listApplets asks the busybox binary for its applets, which also proves
// that it runs on this machine.
func listApplets(busyboxPath string) ([]string, error) {
	out, err := exec.Command(busyboxPath, "--list").Output()
	if err != nil {
		return nil, fmt.Errorf("%s --list: %w", busyboxPath, err)
	}
	var applets []string
	for _, a := range strings.Fields(string(out)) {
		if a != "busybox" {
			applets = append(applets, a)
		}
	}
	if len(applets) == 0 {
		return nil, fmt.Errorf("%s --list printed no applets", busyboxPath)
	}
	sort.Strings(applets)
	return applets, nil
}

// multiArch builds a host-platform image and wraps it in a manifest list.
func (b *builder) multiArch(f format, cfg v1.Config, steps ...step) (v1.ImageIndex, error) {
	img, err := b.layers.image(f, b.platform, cfg, steps...)
	if err != nil {
		return nil, err
	}
	decoy, ok := b.decoys[f]
	if !ok {
		if decoy, err = b.layers.decoy(f, b.decoyFS); err != nil {
			return nil, err
		}
		b.decoys[f] = decoy
	}
	return index(f, decoy, img), nil
}

// busyboxConfig is the config of the busybox base image.
func busyboxConfig() v1.Config {
	return v1.Config{Env: []string{defaultPath}, Cmd: []string{"sh"}}
}

// baseStep is the first step of every busybox-based image.
func (b *builder) baseStep() step {
	return step{createdBy: "ADD busybox rootfs / # noded test image", tree: b.base}
}

// catalog builds all images; see test/images/README.md for the why of each.
func (b *builder) catalog() ([]Image, error) {
	builds := []func() (Image, error){
		b.busyboxImage,
		b.pauseImage,
		b.nginxImage,
		b.hostNetNginxImage,
		b.httpdImage,
		b.noNewPrivsImage,
		b.predefinedGroupImage,
		b.libraryBusyboxImage,
	}
	var images []Image
	for _, build := range builds {
		img, err := build()
		if err != nil {
			return nil, err
		}
		images = append(images, img)
	}
	users, err := b.userImages()
	if err != nil {
		return nil, err
	}
	tagged, err := b.taggedImages()
	if err != nil {
		return nil, err
	}
	return append(append(images, users...), tagged...), nil
}

func (b *builder) busyboxImage() (Image, error) {
	idx, err := b.multiArch(dockerFormat, busyboxConfig(), b.baseStep())
	return Image{
		Names:   []string{e2eImages + "busybox:1.29-2"},
		Purpose: "default container image: sh/sleep/top/echo/cat/ls/id/ipcs/pgrep/pidof/netstat/hostname/... in most specs",
		Index:   idx,
	}, err
}

func (b *builder) pauseImage() (Image, error) {
	cfg := v1.Config{
		Env:        []string{defaultPath},
		Entrypoint: []string{"/pause"},
		User:       "65535:65535",
		WorkingDir: "/",
	}
	fs := newTree().file("pause", 0o755, b.pause)
	idx, err := b.multiArch(dockerFormat, cfg, step{createdBy: "ADD bin/pause /pause", tree: fs},
		step{createdBy: "USER 65535:65535"}, step{createdBy: `ENTRYPOINT ["/pause"]`})
	return Image{
		// Pushed identically under both names: critest requires one image
		// ID for the two registries.
		Names:   []string{"registry.k8s.io/pause:3.9", "k8s.gcr.io/pause:3.9"},
		Purpose: "same image from two registries: one image ID, removing one name removes both; runs with its own entrypoint",
		Index:   idx,
	}, err
}

func (b *builder) nginxImage() (Image, error) {
	idx, err := b.multiArch(dockerFormat, nginxConfig("SIGTERM"), b.baseStep(),
		step{createdBy: "COPY nginx stand-in", tree: nginxTree(b.nginx, 80)},
		step{createdBy: `CMD ["nginx" "-g" "daemon off;"]`})
	return Image{
		Names:   []string{e2eImages + "nginx:1.14-2"},
		Purpose: "web server on :80 (port mapping, port forward); pid 1 cmdline has \"master process\", /var/run/nginx.pid, pidof nginx (PID namespace specs)",
		Index:   idx,
	}, err
}

func (b *builder) hostNetNginxImage() (Image, error) {
	// Upstream builds one image per architecture, named after it, and
	// pushes it without a manifest list.
	img, err := b.layers.image(dockerFormat, b.platform, nginxConfig("SIGQUIT"), b.baseStep(),
		step{createdBy: "COPY nginx stand-in", tree: nginxTree(b.nginx, 80)},
		step{createdBy: "COPY default.conf /etc/nginx/conf.d/default.conf", tree: nginxConfTree(12003)},
		step{createdBy: `CMD ["nginx" "-g" "daemon off;"]`})
	return Image{
		Names:   []string{criTools + "hostnet-nginx-" + b.platform.Architecture + ":latest"},
		Purpose: "web server on :12003 in the host network namespace (port forward in host network)",
		Image:   img,
	}, err
}

func (b *builder) httpdImage() (Image, error) {
	cfg := v1.Config{
		Env:          []string{"PATH=/usr/local/apache2/bin:/usr/local/sbin:/usr/local/bin:/usr/sbin:/usr/bin:/sbin:/bin"},
		Cmd:          []string{"httpd-foreground"},
		WorkingDir:   "/usr/local/apache2",
		ExposedPorts: map[string]struct{}{"80/tcp": {}},
	}
	idx, err := b.multiArch(dockerFormat, cfg, b.baseStep(),
		step{createdBy: "COPY httpd stand-in", tree: httpdTree()},
		step{createdBy: `CMD ["httpd-foreground"]`})
	return Image{
		Names:   []string{e2eImages + "httpd:2.4.39-4"},
		Purpose: "multi-container pod: web server on :80, log mentions \"httpd\", exec echo",
		Index:   idx,
	}, err
}

func (b *builder) noNewPrivsImage() (Image, error) {
	cfg := v1.Config{Env: []string{defaultPath}, Entrypoint: []string{"/usr/local/bin/nnp"}}
	fs := newTree().ownedFile("usr/local/bin/nnp", 0o4755, 0, 0, b.nnp)
	idx, err := b.multiArch(dockerFormat, cfg, b.baseStep(),
		step{createdBy: "COPY nnp /usr/local/bin/nnp && chmod +s", tree: fs},
		step{createdBy: `ENTRYPOINT ["/usr/local/bin/nnp"]`})
	return Image{
		Names:   []string{e2eImages + "nonewprivs:1.3"},
		Purpose: "setuid-root probe printing \"Effective uid: N\" (NoNewPrivs true/false as uid 1000)",
		Index:   idx,
	}, err
}

func (b *builder) predefinedGroupImage() (Image, error) {
	cfg := busyboxConfig()
	cfg.User = "1000"
	idx, err := b.multiArch(dockerFormat, cfg, b.baseStep(),
		step{createdBy: "RUN adduser -u 1000 -D default-user && addgroup -g 50000 group-defined-in-image && addgroup default-user group-defined-in-image",
			tree: predefinedGroupTree()},
		step{createdBy: "USER 1000"})
	return Image{
		Names:   []string{criTools + "test-image-predefined-group:latest"},
		Purpose: "SupplementalGroupsPolicy Merge/Strict: uid 1000 is in group 50000 only via /etc/group",
		Index:   idx,
	}, err
}

// libraryBusyboxImage is busybox under the Docker Hub and ECR names used by
// the benchmarks and by hand (crictl pull busybox), served as OCI.
func (b *builder) libraryBusyboxImage() (Image, error) {
	idx, err := b.multiArch(ociFormat, busyboxConfig(), b.baseStep())
	return Image{
		Names: []string{
			hubLibrary + "busybox:latest", hubLibrary + "busybox:1.28", hubLibrary + "busybox:1.37.0",
			ecrLibrary + "busybox:1", ecrLibrary + "busybox:1-glibc", ecrLibrary + "busybox:1-musl",
			ecrLibrary + "busybox:1-uclibc", ecrLibrary + "busybox:1.35.0-glibc",
		},
		Purpose: "critest -benchmark image listing/pulling; crictl smoke tests (OCI media types)",
		Index:   idx,
	}, err
}

// userImages are busybox with only USER changed, as cri-tools'
// images/image-user builds them.
func (b *builder) userImages() ([]Image, error) {
	users := []struct{ repo, user string }{
		{"test-image-user-uid", "1002"},
		{"test-image-user-username", "www-data"},
		{"test-image-user-uid-group", "1003:1004"},
		{"test-image-user-username-group", "www-data:1004"},
	}
	var images []Image
	for _, u := range users {
		cfg := busyboxConfig()
		cfg.User = u.user
		idx, err := b.multiArch(dockerFormat, cfg, b.baseStep(), step{createdBy: "USER " + u.user})
		if err != nil {
			return nil, err
		}
		images = append(images, Image{
			Names:   []string{criTools + u.repo + ":latest"},
			Purpose: fmt.Sprintf("ImageStatus uid/username from USER %q", u.user),
			Index:   idx,
		})
	}
	return images, nil
}

// taggedImages are busybox plus one empty marker file, as cri-tools'
// images/image-test builds them (ADD $TEST $TEST): a different file makes a
// different image, the same file under several tags the same image.
func (b *builder) taggedImages() ([]Image, error) {
	marked := []struct {
		file    string
		names   []string
		purpose string
	}{
		{"test-image-1", []string{criTools + "test-image-1:latest"}, "listImage: 3 different images"},
		{"test-image-2", []string{criTools + "test-image-2:latest"}, "listImage: 3 different images"},
		{"test-image-3", []string{criTools + "test-image-3:latest"}, "listImage: 3 different images"},
		{"same-image", []string{criTools + "test-image-tags:1", criTools + "test-image-tags:2", criTools + "test-image-tags:3"},
			"one image under 3 tags: 3 repoTags, removing one tag removes all"},
		{"test-image-latest", []string{criTools + "test-image-latest:latest"}, "pull without tag (:latest)"},
		{"test", []string{criTools + "test-image-tag:test"},
			"pull with tag, pull timeout, image/remove consistency, image ID consistency (default entrypoint)"},
		{"all", []string{criTools + "test-image-tag:all"}, "ImageStatus by tag, ID and digest"},
		{"test-image-digest", []string{criTools + "test-image-digest:latest"},
			"pull by digest: critest pins the upstream digest, which cannot be reproduced (see README)"},
	}
	var images []Image
	for _, m := range marked {
		fs := newTree().file(m.file, 0o644, nil)
		idx, err := b.multiArch(dockerFormat, busyboxConfig(), b.baseStep(),
			step{createdBy: fmt.Sprintf("ADD %s %s", m.file, m.file), tree: fs})
		if err != nil {
			return nil, err
		}
		images = append(images, Image{Names: m.names, Purpose: m.purpose, Index: idx})
	}
	return images, nil
}

// concat joins lines into a file body with a trailing newline.
func concat(lines ...string) []byte {
	var buf bytes.Buffer
	for _, l := range lines {
		buf.WriteString(l)
		buf.WriteByte('\n')
	}
	return buf.Bytes()
}
