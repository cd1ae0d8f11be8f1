package testimages

import (
	"strings"
	"testing"

	v1 "github.com/google/go-containerregistry/pkg/v1"
)

// e2eNames is every image the [NodeConformance] specs of the e2e suite of
// Kubernetes v1.37.2 pull, from its test/utils/image/manifest.go (kept apart
// from the catalog, like criTestNames).
var e2eNames = []string{
	"registry.k8s.io/e2e-test-images/agnhost:2.66.1",
	"registry.k8s.io/e2e-test-images/agnhost:2.55",
	"registry.k8s.io/e2e-test-images/busybox:1.37.0-2",
	"registry.k8s.io/e2e-test-images/nginx:1.27.0-2",
	"registry.k8s.io/e2e-test-images/nonewprivs:1.4",
	"registry.k8s.io/e2e-test-images/nonroot:1.5",
	"registry.k8s.io/e2e-test-images/glibc-dns-testing:2.1.1",
	"registry.k8s.io/pause:3.10.2",
}

// e2eCatalog builds the catalog with the e2e images; the busybox binary
// stands in for agnhost (only its place in the image is checked).
func e2eTestCatalog(t *testing.T) map[string]Image {
	t.Helper()
	bb := busyboxPath(t)
	images, err := Catalog(bb, WithAgnhost(bb))
	if err != nil {
		t.Fatalf("Catalog: %v", err)
	}
	return byName(images)
}

func TestE2ECatalog(t *testing.T) {
	images := e2eTestCatalog(t)
	for _, n := range append(append([]string{}, e2eNames...), criTestNames...) {
		if _, ok := images[n]; !ok {
			t.Errorf("%s: not in the catalog WithAgnhost", n)
		}
	}
	seen := map[string]bool{}
	for n := range images {
		if seen[n] {
			t.Errorf("%s twice", n)
		}
		seen[n] = true
	}
	plain := byName(testCatalog(t))
	for _, n := range e2eNames {
		if _, ok := plain[n]; ok {
			t.Errorf("%s is in the catalog without WithAgnhost", n)
		}
	}
}

func TestAgnhostImage(t *testing.T) {
	img := e2eTestCatalog(t)["registry.k8s.io/e2e-test-images/agnhost:2.66.1"]
	if img.Index == nil {
		t.Fatal("agnhost is not a manifest list")
	}
	host, err := img.HostImage()
	if err != nil {
		t.Fatal(err)
	}
	cf, err := host.ConfigFile()
	if err != nil {
		t.Fatal(err)
	}
	if got := strings.Join(cf.Config.Entrypoint, " ") + " " + strings.Join(cf.Config.Cmd, " "); got != "/agnhost pause" {
		t.Errorf("entrypoint and cmd = %q, want /agnhost pause", got)
	}
	fs := flatten(t, host)
	for _, p := range []string{"agnhost", "agnhost-2", "bin/sh", "bin/bash", "usr/bin/curl", "localhost.crt", "localhost.key", "uploads"} {
		if _, ok := fs[p]; !ok {
			t.Errorf("no /%s", p)
		}
	}
	if f := fs["etc/group"]; !strings.Contains(f.content, "group-defined-in-image:x:50000:user-defined-in-image") {
		t.Errorf("/etc/group lacks group-defined-in-image:\n%s", f.content)
	}

	// Deterministic, like the rest of the catalog (the TLS key and
	// certificate included).
	again := e2eTestCatalog(t)
	d1, err := img.Digest()
	if err != nil {
		t.Fatal(err)
	}
	if d2, err := again["registry.k8s.io/e2e-test-images/agnhost:2.66.1"].Digest(); err != nil || d1 != d2 {
		t.Errorf("agnhost digest changed between two builds: %s, then %s (%v)", d1, d2, err)
	}

	// The fake registry: pause:testing is the pause image's manifest list,
	// and every manifest and blob it names is there.
	pause := again["registry.k8s.io/pause:3.10.2"]
	want, err := pause.Digest()
	if err != nil {
		t.Fatal(err)
	}
	tag := fs["var/registry/pause/manifests/testing"]
	if strings.TrimSpace(tag.content) != want.String() {
		t.Fatalf("pause:testing points at %q, want %s", tag.content, want)
	}
	data := func(kind string, d v1.Hash) string {
		return "var/registry/pause/" + kind + "/sha256/" + d.Hex[:2] + "/" + d.Hex + "/data"
	}
	if _, ok := fs[data("manifests", want)]; !ok {
		t.Errorf("no manifest list at %s", data("manifests", want))
	}
	im, err := pause.Index.IndexManifest()
	if err != nil {
		t.Fatal(err)
	}
	for _, d := range im.Manifests {
		child, err := pause.Index.Image(d.Digest)
		if err != nil {
			t.Fatal(err)
		}
		m, err := child.Manifest()
		if err != nil {
			t.Fatal(err)
		}
		if _, ok := fs[data("manifests", d.Digest)]; !ok {
			t.Errorf("no manifest %s", d.Digest)
		}
		for _, b := range append([]v1.Descriptor{m.Config}, m.Layers...) {
			if _, ok := fs[data("blobs", b.Digest)]; !ok {
				t.Errorf("no blob %s", b.Digest)
			}
		}
	}
}

func TestFakeRegistryConf(t *testing.T) {
	c := FakeRegistryConf()
	for _, w := range []string{`location = "localhost:5000"`, "insecure = true"} {
		if !strings.Contains(c, w) {
			t.Errorf("FakeRegistryConf lacks %q:\n%s", w, c)
		}
	}
}
