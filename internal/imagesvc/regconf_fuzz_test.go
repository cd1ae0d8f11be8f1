package imagesvc

import (
	"os"
	"path/filepath"
	"strings"
	"testing"

	"go.podman.io/image/v5/docker/reference"
	"go.podman.io/image/v5/pkg/sysregistriesv2"
)

// FuzzRegistriesConf feeds arbitrary registries.conf files (and a drop-in:
// the text after a NUL) and references to noded's registry handling:
// resolving a pull's candidates and a lookup's local names, and the
// containers/image configuration built from the file. No input may panic;
// a pull either fails with a classified error (the kubelet sees a gRPC
// code, not Unknown) or gets fully qualified, tagged or digested
// references. The seeds in testdata/fuzz/FuzzRegistriesConf run with
// every go test; run longer with
//
//	go test -tags "$(BUILDTAGS)" -run '^$' -fuzz FuzzRegistriesConf -fuzztime 60s ./internal/imagesvc/
func FuzzRegistriesConf(f *testing.F) {
	f.Add("unqualified-search-registries = [\"quay.io\", \"docker.io\"]\n", "busybox")
	f.Add("[aliases]\n\"app\" = \"quay.io/org/app\"\n\x00[[registry]]\nlocation = \"quay.io\"\n[[registry.mirror]]\nlocation = \"mirror.example:5000\"\n", "app:1")
	f.Fuzz(func(t *testing.T, conf, ref string) {
		dir := t.TempDir()
		path := filepath.Join(dir, "registries.conf")
		main, dropIn, hasDropIn := strings.Cut(conf, "\x00")
		if err := os.WriteFile(path, []byte(main), 0o644); err != nil {
			t.Fatal(err)
		}
		if hasDropIn {
			if err := os.Mkdir(path+".d", 0o755); err != nil {
				t.Fatal(err)
			}
			if err := os.WriteFile(filepath.Join(path+".d", "50-drop-in.conf"), []byte(dropIn), 0o644); err != nil {
				t.Fatal(err)
			}
		}
		// containers/image caches each parsed path for the life of the
		// process; every input is a new path.
		defer sysregistriesv2.InvalidateCache()
		r := newRegistries(path, "noded-fuzz", dir)
		candidates, err := r.pullCandidates(ref)
		if err != nil {
			if !isClassified(err) {
				t.Fatalf("pullCandidates(%q): unclassified error %v", ref, err)
			}
		}
		for _, c := range candidates {
			if reference.Domain(c) == "" || (!isTagged(c) && !isDigested(c)) {
				t.Errorf("pullCandidates(%q) gave %q: not fully qualified with a tag or digest", ref, c)
			}
			again, err := reference.ParseNormalizedNamed(c.String())
			if err != nil || again.String() != c.String() {
				t.Errorf("candidate %q does not parse back (%v, %v)", c, again, err)
			}
			// The mirrors a pull of c would try.
			_, _ = sysregistriesv2.FindRegistry(r.systemContext(nil, ""), c.Name())
		}
		if _, err := r.localCandidates(ref); err != nil && !isClassified(err) {
			t.Fatalf("localCandidates(%q): unclassified error %v", ref, err)
		}
	})
}

func isDigested(named reference.Named) bool {
	_, ok := named.(reference.Canonical)
	return ok
}
