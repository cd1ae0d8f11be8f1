package testimages

import (
	"fmt"
	"runtime"

	v1 "github.com/google/go-containerregistry/pkg/v1"
	"github.com/google/go-containerregistry/pkg/v1/empty"
	"github.com/google/go-containerregistry/pkg/v1/mutate"
	"github.com/google/go-containerregistry/pkg/v1/types"
)

// format is a family of media types. Upstream critest images were pushed by
// `docker push` / `docker manifest` (Docker schema 2), while current Docker
// Hub library images are OCI; serving both exercises both code paths of a
// puller.
type format struct {
	manifest, config, layer, index types.MediaType
}

var (
	dockerFormat = format{
		manifest: types.DockerManifestSchema2,
		config:   types.DockerConfigJSON,
		layer:    types.DockerLayer,
		index:    types.DockerManifestList,
	}
	ociFormat = format{
		manifest: types.OCIManifestSchema1,
		config:   types.OCIConfigJSON,
		layer:    types.OCILayer,
		index:    types.OCIImageIndex,
	}
)

// step is one build step of an image, i.e. one history entry. A step with
// a nil tree only changes the config (USER, CMD, ...) and is recorded as an
// empty layer, as `docker build` does.
type step struct {
	createdBy string
	tree      *tree
}

// hostPlatform is the platform the images are built for: the busybox and C
// helpers are native binaries of the build machine.
func hostPlatform() v1.Platform {
	return v1.Platform{OS: "linux", Architecture: runtime.GOARCH}
}

// decoyPlatform is a platform the host cannot run. Each manifest list lists
// it first, so a puller that takes the first entry instead of matching the
// platform gets an image that plainly says so.
func decoyPlatform() v1.Platform {
	if runtime.GOARCH == "arm64" {
		return v1.Platform{OS: "linux", Architecture: "amd64"}
	}
	return v1.Platform{OS: "linux", Architecture: "arm64"}
}

// layers caches built layers so images that share a step (the busybox base)
// share the layer, as they do upstream.
type layers map[*tree]map[types.MediaType]v1.Layer

func (c layers) get(t *tree, mt types.MediaType) (v1.Layer, error) {
	if l, ok := c[t][mt]; ok {
		return l, nil
	}
	l, err := t.layer(mt)
	if err != nil {
		return nil, err
	}
	if c[t] == nil {
		c[t] = map[types.MediaType]v1.Layer{}
	}
	c[t][mt] = l
	return l, nil
}

// image assembles a single-platform image from steps with every timestamp
// pinned to Epoch.
func (c layers) image(f format, p v1.Platform, cfg v1.Config, steps ...step) (v1.Image, error) {
	img := mutate.ConfigMediaType(mutate.MediaType(empty.Image, f.manifest), f.config)
	img, err := mutate.ConfigFile(img, &v1.ConfigFile{
		Architecture: p.Architecture,
		Variant:      p.Variant,
		OS:           p.OS,
		Created:      v1.Time{Time: Epoch},
		Config:       cfg,
		RootFS:       v1.RootFS{Type: "layers"},
	})
	if err != nil {
		return nil, err
	}
	adds := make([]mutate.Addendum, 0, len(steps))
	for _, s := range steps {
		add := mutate.Addendum{History: v1.History{
			Created:    v1.Time{Time: Epoch},
			CreatedBy:  s.createdBy,
			EmptyLayer: s.tree == nil,
		}}
		if s.tree != nil {
			if add.Layer, err = c.get(s.tree, f.layer); err != nil {
				return nil, fmt.Errorf("layer for %q: %w", s.createdBy, err)
			}
		}
		adds = append(adds, add)
	}
	return mutate.Append(img, adds...)
}

// index wraps a host-platform image in a manifest list next to the decoy,
// which comes first on purpose (see decoyPlatform).
func index(f format, decoy, img v1.Image) v1.ImageIndex {
	dp, hp := decoyPlatform(), hostPlatform()
	return mutate.AppendManifests(mutate.IndexMediaType(empty.Index, f.index),
		mutate.IndexAddendum{Add: plainImage{decoy}, Descriptor: v1.Descriptor{Platform: &dp}},
		mutate.IndexAddendum{Add: plainImage{img}, Descriptor: v1.Descriptor{Platform: &hp}},
	)
}

// plainImage keeps "artifactType" out of manifest list entries:
// go-containerregistry fills it with the config media type unless the image
// reports its own, and lists pushed by docker (like upstream's) never carry
// it.
type plainImage struct{ v1.Image }

// ArtifactType reports none, so the descriptor omits the field.
func (plainImage) ArtifactType() (string, error) { return "", nil }

// decoy builds the wrong-platform image of a manifest list: one text file
// and a command that does not exist, so a mistaken pick fails loudly.
func (c layers) decoy(f format, t *tree) (v1.Image, error) {
	return c.image(f, decoyPlatform(), v1.Config{Cmd: []string{"/WRONG-PLATFORM"}},
		step{createdBy: "COPY WRONG-PLATFORM.txt /", tree: t})
}

func decoyTree() *tree {
	msg := fmt.Sprintf("This is the %s/%s entry of a noded test manifest list.\n"+
		"A runtime on %s/%s selected it: its platform matching is broken.\n",
		decoyPlatform().OS, decoyPlatform().Architecture, hostPlatform().OS, hostPlatform().Architecture)
	return newTree().file("WRONG-PLATFORM.txt", 0o644, []byte(msg))
}
