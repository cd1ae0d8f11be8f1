package testimages

import (
	"archive/tar"
	"crypto/ed25519"
	"crypto/sha256"
	"crypto/x509"
	"crypto/x509/pkix"
	"encoding/json"
	"encoding/pem"
	"fmt"
	"io"
	"math/big"
	"net"
	"os"
	"path"

	v1 "github.com/google/go-containerregistry/pkg/v1"
)

// The images the Kubernetes e2e suite (test/e2e of k8s.io/kubernetes
// v1.37.2) pulls in its [NodeConformance] specs, named as its image
// manifest (test/utils/image/manifest.go) names them. They are served only
// when the catalog is given an agnhost binary (WithAgnhost), which
// test/cluster/build-tools.sh builds from k8s.io/kubernetes/test/images/agnhost.

// Option changes what Catalog builds.
type Option func(*options)

type options struct {
	agnhost string
}

// WithAgnhost adds the e2e suite's images, agnhost (the binary at
// agnhostPath, static) and its busybox-based stand-ins.
func WithAgnhost(agnhostPath string) Option {
	return func(o *options) { o.agnhost = agnhostPath }
}

// Image tags of the e2e image manifest of Kubernetes v1.37.2.
const (
	agnhostTag     = "2.66.1"
	agnhostPrevTag = "2.55"
	// The fake registry the agnhost image carries (agnhost
	// fake-registry-server, test/images/agnhost/fakeregistryserver/images.txt):
	// registry.k8s.io/pause:3.10.2 as pause:testing.
	e2ePauseTag     = "3.10.2"
	fakeRegistryDir = "var/registry"
)

// agnhostAccounts are the alpine accounts of the upstream agnhost image
// plus what its Dockerfile adds: user-defined-in-image (uid 1000) in
// group-defined-in-image (gid 50000), for the SupplementalGroupsPolicy
// specs.
func agnhostAccountsTree() *tree {
	passwd := append(append([]string{}, busyboxPasswd...),
		"user-defined-in-image:x:1000:1000:Linux User,,,:/home/user-defined-in-image:/bin/sh")
	group := append(append([]string{}, busyboxGroup...),
		"user-defined-in-image:x:1000:",
		"group-defined-in-image:x:50000:user-defined-in-image")
	return newTree().
		file("etc/passwd", 0o644, concat(passwd...)).
		file("etc/group", 0o644, concat(group...)).
		ownedDir("home/user-defined-in-image", 0o755, 1000, 1000)
}

// curlStandIn is /usr/bin/curl of the agnhost stand-in: the e2e framework
// execs `curl` in agnhost pods (-g -q -s, -o, -w %{http_code},
// --connect-timeout, --max-time) against netexec; busybox wget does the
// request. Enough for GETs of the suite, not a general curl.
var curlStandIn = concat(
	"#!/bin/sh",
	"# noded test image: busybox wget standing in for curl (GET only).",
	`out=- code="" timeout=30 url=""`,
	`while [ $# -gt 0 ]; do`,
	`	case "$1" in`,
	`	-o) out=$2; shift ;;`,
	`	-w) code=$2; shift ;;`,
	`	--connect-timeout|-m|--max-time) timeout=${2%.*}; shift ;;`,
	`	-*) ;;`,
	`	*) url=$1 ;;`,
	`	esac`,
	`	shift`,
	`done`,
	`[ -n "$url" ] || { echo "curl: no URL" >&2; exit 2; }`,
	`if [ -n "$code" ]; then`,
	`	if wget -q -T "$timeout" -O "$out" "$url" 2>/dev/null; then echo 200; else echo 000; exit 7; fi`,
	`	exit 0`,
	`fi`,
	`exec wget -q -T "$timeout" -O "$out" "$url"`,
)

// bashStandIn is /bin/bash of the agnhost stand-in (upstream's alpine has
// bash): probe specs run `/bin/bash -c SCRIPT`; busybox ash runs the scripts.
var bashStandIn = concat(
	"#!/bin/sh",
	"# noded test image: busybox sh standing in for bash.",
	`exec /bin/sh "$@"`,
)

// e2eCatalog builds the e2e suite's images.
func (b *builder) e2eCatalog(agnhostPath string) ([]Image, error) {
	agnhost, err := os.ReadFile(agnhostPath)
	if err != nil {
		return nil, fmt.Errorf("agnhost binary: %w", err)
	}
	pause, err := b.e2ePause()
	if err != nil {
		return nil, err
	}
	images := []Image{pause}
	ag, err := b.agnhostImage(agnhost, pause)
	if err != nil {
		return nil, err
	}
	images = append(images, ag)
	for _, build := range []func() (Image, error){b.e2eBusybox, b.e2eNginx, b.e2eNonewprivs, b.e2eNonroot, b.e2eGlibcDNS} {
		img, err := build()
		if err != nil {
			return nil, err
		}
		images = append(images, img)
	}
	return images, nil
}

// e2ePause is the pause image under the e2e manifest's tag: specs run it
// as an ordinary container. The same image as the critest pause, so one
// more name of one image ID.
func (b *builder) e2ePause() (Image, error) {
	img, err := b.pauseImage()
	return Image{
		Names:   []string{"registry.k8s.io/pause:" + e2ePauseTag},
		Purpose: "e2e: pods of pause containers (imageutils.GetPauseImageName); the agnhost fake registry's pause:testing",
		Index:   img.Index,
	}, err
}

func (b *builder) agnhostImage(agnhost []byte, pause Image) (Image, error) {
	cfg := v1.Config{
		Env:        []string{defaultPath},
		Entrypoint: []string{"/agnhost"},
		Cmd:        []string{"pause"},
		ExposedPorts: map[string]struct{}{
			"80/tcp": {}, "8080/tcp": {}, "8081/tcp": {}, "9376/tcp": {}, "5000/tcp": {},
		},
	}
	registry, err := fakeRegistryTree(pause, "pause", "testing")
	if err != nil {
		return Image{}, err
	}
	crt, key, err := localhostCert()
	if err != nil {
		return Image{}, err
	}
	tools := newTree().
		file("usr/bin/curl", 0o755, curlStandIn).
		file("bin/bash", 0o755, bashStandIn).
		file("localhost.crt", 0o644, crt).
		file("localhost.key", 0o644, key).
		dir("uploads", 0o755)
	idx, err := b.multiArch(dockerFormat, cfg, b.baseStep(),
		step{createdBy: "RUN mkdir /uploads; ADD localhost.crt localhost.key; COPY curl and bash stand-ins", tree: tools},
		step{createdBy: "RUN adduser -u 1000 -D user-defined-in-image && addgroup -g 50000 group-defined-in-image", tree: agnhostAccountsTree()},
		step{createdBy: "COPY --from=preparer /registry /var/registry", tree: registry},
		step{createdBy: "ADD agnhost agnhost; ln -s agnhost agnhost-2",
			tree: newTree().file("agnhost", 0o755, agnhost).symlink("agnhost-2", "agnhost")},
		step{createdBy: `ENTRYPOINT ["/agnhost"]`}, step{createdBy: `CMD ["pause"]`})
	return Image{
		Names: []string{e2eImages + "agnhost:" + agnhostTag, e2eImages + "agnhost:" + agnhostPrevTag},
		Purpose: "e2e: agnhost " + agnhostTag + " from k8s.io/kubernetes/test/images/agnhost on busybox (sh, nc, wget; " +
			"a wget-based curl, bash as sh), the fake registry's pause:testing; also under the previous tag (AgnhostPrev)",
		Index: idx,
	}, err
}

func (b *builder) e2eBusybox() (Image, error) {
	idx, err := b.multiArch(dockerFormat, busyboxConfig(), b.baseStep())
	return Image{
		Names:   []string{e2eImages + "busybox:1.37.0-2"},
		Purpose: "e2e: the default image of most specs",
		Index:   idx,
	}, err
}

func (b *builder) e2eNginx() (Image, error) {
	idx, err := b.multiArch(dockerFormat, nginxConfig("SIGQUIT"), b.baseStep(),
		step{createdBy: "COPY nginx stand-in", tree: nginxTree(b.nginx, 80)},
		step{createdBy: `CMD ["nginx" "-g" "daemon off;"]`})
	return Image{
		Names:   []string{e2eImages + "nginx:1.27.0-2", e2eImages + "nginx:1.28.0-2"},
		Purpose: "e2e: a pod's image updated to nginx (web server on :80)",
		Index:   idx,
	}, err
}

func (b *builder) e2eNonewprivs() (Image, error) {
	cfg := v1.Config{Env: []string{defaultPath}, Cmd: []string{"nnp"}}
	fs := newTree().ownedFile("usr/local/bin/nnp", 0o4755, 0, 0, b.nnp)
	idx, err := b.multiArch(dockerFormat, cfg, b.baseStep(),
		step{createdBy: "COPY nnp /usr/local/bin/nnp && chmod +s", tree: fs},
		step{createdBy: `CMD ["nnp"]`})
	return Image{
		Names:   []string{e2eImages + "nonewprivs:1.4"},
		Purpose: "e2e: AllowPrivilegeEscalation specs: setuid-root probe printing \"Effective uid: N\"",
		Index:   idx,
	}, err
}

func (b *builder) e2eNonroot() (Image, error) {
	cfg := busyboxConfig()
	cfg.User = "1234"
	idx, err := b.multiArch(dockerFormat, cfg, b.baseStep(), step{createdBy: "USER 1234"})
	return Image{
		Names:   []string{e2eImages + "nonroot:1.5"},
		Purpose: "e2e: runAsNonRoot specs: an image whose USER is 1234",
		Index:   idx,
	}, err
}

func (b *builder) e2eGlibcDNS() (Image, error) {
	idx, err := b.multiArch(dockerFormat, busyboxConfig(), b.baseStep())
	return Image{
		Names:   []string{e2eImages + "glibc-dns-testing:2.1.1"},
		Purpose: "e2e: hostname override specs (sh, hostname, hostname -f): busybox stands in",
		Index:   idx,
	}, err
}

// fakeRegistryTree lays img out as agnhost's fake-registry-server serves
// it (the layout of its prepare_registry.sh): under var/registry/<repo>,
// manifests/<tag> holds the digest of the manifest list, and every
// manifest and blob is at <manifests|blobs>/sha256/<2 hex>/<hex>/data.
func fakeRegistryTree(img Image, repo, tag string) (*tree, error) {
	if img.Index == nil {
		return nil, fmt.Errorf("fake registry: %s is not a manifest list", img.Names[0])
	}
	t := newTree()
	base := path.Join(fakeRegistryDir, repo)
	put := func(kind string, d v1.Hash, data []byte) {
		t.file(path.Join(base, kind, d.Algorithm, d.Hex[:2], d.Hex, "data"), 0o644, data)
	}
	raw, err := img.Index.RawManifest()
	if err != nil {
		return nil, err
	}
	digest, err := img.Index.Digest()
	if err != nil {
		return nil, err
	}
	put("manifests", digest, raw)
	t.file(path.Join(base, "manifests", tag), 0o644, []byte(digest.String()+"\n"))
	im, err := img.Index.IndexManifest()
	if err != nil {
		return nil, err
	}
	for _, d := range im.Manifests {
		child, err := img.Index.Image(d.Digest)
		if err != nil {
			return nil, err
		}
		m, err := child.RawManifest()
		if err != nil {
			return nil, err
		}
		put("manifests", d.Digest, m)
		cfgName, err := child.ConfigName()
		if err != nil {
			return nil, err
		}
		cfg, err := child.RawConfigFile()
		if err != nil {
			return nil, err
		}
		put("blobs", cfgName, cfg)
		ls, err := child.Layers()
		if err != nil {
			return nil, err
		}
		for _, l := range ls {
			ld, err := l.Digest()
			if err != nil {
				return nil, err
			}
			data, err := readAll(l)
			if err != nil {
				return nil, err
			}
			put("blobs", ld, data)
		}
	}
	// The layout is only for agnhost; check it parses as the server reads it.
	var probe struct {
		MediaType string `json:"mediaType"`
	}
	if err := json.Unmarshal(raw, &probe); err != nil || probe.MediaType == "" {
		return nil, fmt.Errorf("fake registry: manifest list of %s has no mediaType (%w)", img.Names[0], err)
	}
	return t, nil
}

// readAll returns a layer's compressed bytes, as a registry serves them.
func readAll(l v1.Layer) ([]byte, error) {
	rc, err := l.Compressed()
	if err != nil {
		return nil, err
	}
	defer rc.Close()
	return io.ReadAll(rc)
}

// symlink adds a symbolic link p pointing at target (as written).
func (t *tree) symlink(p, target string) *tree {
	p = clean(p)
	t.parents(p)
	t.entries[p] = &tar.Header{Typeflag: tar.TypeSymlink, Name: p, Linkname: target, Mode: 0o777}
	return t
}

// FakeRegistry is where the e2e suite's image pull specs run agnhost's
// fake-registry-server (a host-network pod, plain HTTP):
// test/e2e/framework/registry.SetupRegistry.
const FakeRegistry = "localhost:5000"

// FakeRegistryConf is the registries.conf(5) entry that lets a runtime pull
// from FakeRegistry over plain HTTP, as the suite expects of a runtime
// ("localhost is typically allowed by CRIs").
func FakeRegistryConf() string {
	return fmt.Sprintf("\n# The e2e suite's fake registry (agnhost fake-registry-server).\n"+
		"[[registry]]\nprefix = %q\nlocation = %q\ninsecure = true\n", FakeRegistry, FakeRegistry)
}

// localhostCert is the TLS certificate and key of agnhost's HTTPS servers
// (netexec --tls-cert-file /localhost.crt: the lifecycle hook specs' https
// hooks; upstream adds test/images/agnhost/porter/localhost.*). Clients do
// not verify it. An ed25519 key from a fixed seed and ed25519's
// deterministic signatures keep the image's digest stable.
func localhostCert() (crt, key []byte, err error) {
	seed := sha256.Sum256([]byte("noded test image agnhost localhost"))
	priv := ed25519.NewKeyFromSeed(seed[:])
	tmpl := &x509.Certificate{
		SerialNumber: big.NewInt(1),
		Subject:      pkix.Name{CommonName: "localhost"},
		DNSNames:     []string{"localhost"},
		IPAddresses:  []net.IP{net.IPv4(127, 0, 0, 1)},
		NotBefore:    Epoch,
		NotAfter:     Epoch.AddDate(100, 0, 0),
		KeyUsage:     x509.KeyUsageDigitalSignature,
		ExtKeyUsage:  []x509.ExtKeyUsage{x509.ExtKeyUsageServerAuth},
	}
	der, err := x509.CreateCertificate(nil, tmpl, tmpl, priv.Public(), priv)
	if err != nil {
		return nil, nil, fmt.Errorf("agnhost localhost certificate: %w", err)
	}
	pk, err := x509.MarshalPKCS8PrivateKey(priv)
	if err != nil {
		return nil, nil, err
	}
	return pem.EncodeToMemory(&pem.Block{Type: "CERTIFICATE", Bytes: der}),
		pem.EncodeToMemory(&pem.Block{Type: "PRIVATE KEY", Bytes: pk}), nil
}
