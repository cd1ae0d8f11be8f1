package imagesvc

import (
	"context"
	"encoding/json"
	"fmt"
	"iter"
	"strconv"
	"strings"
	"sync"
	"sync/atomic"

	ocispec "github.com/opencontainers/image-spec/specs-go/v1"
	"go.podman.io/image/v5/docker/reference"

	"github.com/noded-dev/noded/internal/errdefs"
	"github.com/noded-dev/noded/internal/imagesvc/pinned"
	"github.com/noded-dev/noded/internal/log"
	"github.com/noded-dev/noded/internal/storage"
)

// Image is what the CRI reports about an image.
type Image struct {
	ID storage.ImageID
	// RepoTags are "registry/repo:tag"; RepoDigests "registry/repo@digest".
	RepoTags    []string
	RepoDigests []string
	// Size is the image's size in storage (uncompressed layers, metadata).
	Size uint64
	// UID or Username: the image config's USER (its user part); neither
	// when the image sets no user.
	UID      *int64
	Username string
	// Pinned images (the pause image, and those the pinned-images
	// patterns name) are kept by the kubelet's image garbage collection.
	// noded's own start-up collection removes layers no image uses, never
	// an image; RemoveImage removes a pinned image as any other, as the
	// CRI requires.
	Pinned bool
	// Annotations are the manifest's OCI annotations.
	Annotations map[string]string
	// Info is the verbose information (ImageStatus with verbose).
	Info map[string]string
}

// pinnedNames are the image names reported as pinned (kept by the
// kubelet's image garbage collection): the pause image and the
// pinned-images patterns. Immutable; a reload stores a new one.
type pinnedNames struct {
	pause    string // normalized pause image name, or ""
	patterns *pinned.Matcher
}

// newPinnedNames validates the pause image reference and the patterns.
func newPinnedNames(pauseImage string, patterns []string) (*pinnedNames, error) {
	p := &pinnedNames{}
	if pauseImage != "" {
		named, err := reference.ParseNormalizedNamed(pauseImage)
		if err != nil {
			return nil, fmt.Errorf("pause image %q: %w", pauseImage, err)
		}
		p.pause = reference.TagNameOnly(named).String()
	}
	m, err := pinned.New(patterns)
	if err != nil {
		return nil, err
	}
	p.patterns = m
	return p, nil
}

// match reports whether the stored name n (named, normalized) is pinned.
func (p *pinnedNames) match(n, named string) bool {
	return (p.pause != "" && n == p.pause) || p.patterns.Match(named)
}

// catalog is the local side of the service: it finds stored images by ID,
// name, short name or digest, and lists, describes and removes them. It
// owns the cache of each image's immutable facts (size, config,
// annotations), which cacheMu guards (held only around map accesses,
// never across a storage call); removals go through layerPins, whose lock
// orders them against pulls.
type catalog struct {
	images     *storage.ImageStore
	registries *registries // short names
	pins       *layerPins
	// pinned are the names reported as pinned; a reload swaps them
	// (Service.Reconfigure).
	pinned atomic.Pointer[pinnedNames]
	step   stepHook

	cacheMu sync.Mutex
	cache   map[storage.ImageID]*imageFacts
}

func newCatalog(images *storage.ImageStore, regs *registries, pins *layerPins, names *pinnedNames) *catalog {
	c := &catalog{images: images, registries: regs, pins: pins, cache: map[storage.ImageID]*imageFacts{}}
	c.pinned.Store(names)
	return c
}

// imageFacts are an image's immutable properties, cached by ID.
type imageFacts struct {
	size        int64
	config      *ocispec.Image
	annotations map[string]string
}

// matchKind says how a reference matched an image.
type matchKind int

const (
	byID matchKind = iota
	byTag
	byDigest
)

// lookup finds the image ref names: an image ID (full, "sha256:"-prefixed
// or an unambiguous prefix), a tagged name or a digested name, short
// names resolved as in pulls (see localCandidates). It returns the name
// that matched for a tag.
func (s *catalog) lookup(ref string) (*storage.Image, matchKind, string, error) {
	if idPrefix.MatchString(ref) {
		if img, err := s.images.Get(strings.TrimPrefix(ref, "sha256:")); err == nil {
			return img, byID, "", nil
		}
		// A full ID can only be an ID (the reference grammar forbids 64-hex
		// repository names): an unknown one is not found, not malformed.
		if fullID.MatchString(ref) {
			return nil, 0, "", errdefs.NotFound("image %q not found", ref)
		}
	}
	candidates, err := s.registries.localCandidates(ref)
	if err != nil {
		return nil, 0, "", err
	}
	for _, c := range candidates {
		if canonical, ok := c.(reference.Canonical); ok {
			if img, err := s.images.Get(c.String()); err == nil {
				return img, byDigest, c.String(), nil
			}
			imgs, err := s.images.ByDigest(canonical.Digest())
			if err != nil {
				return nil, 0, "", err
			}
			for i := range imgs {
				if hasRepo(imgs[i].Names, c.Name()) {
					return &imgs[i], byDigest, c.String(), nil
				}
			}
			continue
		}
		if img, err := s.images.Get(c.String()); err == nil {
			return img, byTag, c.String(), nil
		}
	}
	return nil, 0, "", errdefs.NotFound("image %q not found", ref)
}

func hasRepo(names []string, repo string) bool {
	for _, n := range names {
		if named, err := reference.ParseNormalizedNamed(n); err == nil && named.Name() == repo {
			return true
		}
	}
	return false
}

// Status returns the image ref names, or an errdefs NotFound error.
func (s *catalog) Status(_ context.Context, ref string, verbose bool) (*Image, error) {
	img, _, _, err := s.lookup(ref)
	if err != nil {
		return nil, err
	}
	return s.describe(img, verbose)
}

// List returns every image, or only the one filter names ("" for all):
// the Stream items, collected.
func (s *catalog) List(ctx context.Context, filter string) ([]*Image, error) {
	out := []*Image{}
	for img, err := range s.Stream(ctx, filter) {
		if err != nil {
			return nil, err
		}
		out = append(out, img)
	}
	return out, nil
}

// Stream yields every image, or only the one filter names ("" for all),
// described one at a time (the store lists its images at once, but their
// descriptions, sizes and configs, are built only as each is reached). An
// error ends the sequence.
func (s *catalog) Stream(_ context.Context, filter string) iter.Seq2[*Image, error] {
	return func(yield func(*Image, error) bool) {
		var imgs []storage.Image
		if filter != "" {
			img, _, _, err := s.lookup(filter)
			if errdefs.IsNotFound(err) {
				return
			}
			if err != nil {
				yield(nil, err)
				return
			}
			imgs = []storage.Image{*img}
		} else {
			var err error
			if imgs, err = s.images.List(); err != nil {
				yield(nil, err)
				return
			}
		}
		for i := range imgs {
			d, err := s.describe(&imgs[i], false)
			if errdefs.IsNotFound(err) {
				continue // removed meanwhile
			}
			if !yield(d, err) || err != nil {
				return
			}
		}
	}
}

// Remove removes what ref names. A tag is removed from its image, and the
// image goes with its last tag; an ID or a digest removes the image with
// all its names. Removing an image that is not there succeeds. An image
// that a container uses is an errdefs FailedPrecondition error.
func (s *catalog) Remove(ctx context.Context, ref string) error {
	img, kind, name, err := s.lookup(ref)
	if errdefs.IsNotFound(err) {
		return nil
	}
	if err != nil {
		return err
	}
	if kind == byTag {
		for _, n := range img.Names {
			if n != name && isTaggedName(n) {
				log.FromContext(ctx).WithFields(map[string]any{"id": img.ID.String(), "tag": name}).Info("image tag removed")
				return s.images.RemoveNames(img.ID, []string{name})
			}
		}
	}
	err = s.pins.deleteImage(ctx, img.ID)
	s.forget(img.ID)
	if err != nil {
		return err
	}
	log.FromContext(ctx).WithFields(map[string]any{"id": img.ID.String(), "names": img.Names}).Info("image removed")
	return s.step.after("remove-image")
}

func isTaggedName(n string) bool {
	named, err := reference.ParseNormalizedNamed(n)
	return err == nil && isTagged(named)
}

// describe builds the CRI view of an image.
func (s *catalog) describe(img *storage.Image, verbose bool) (*Image, error) {
	f, err := s.facts(img)
	if err != nil {
		return nil, err
	}
	out := &Image{ID: img.ID, Size: uint64(max(f.size, 0)), Annotations: f.annotations}
	withDigest := map[string]bool{}
	var tagged []reference.Named
	pins := s.pinned.Load()
	for _, n := range img.Names {
		named, err := reference.ParseNormalizedNamed(n)
		if err != nil {
			continue
		}
		if _, ok := named.(reference.Canonical); ok {
			out.RepoDigests = append(out.RepoDigests, named.String())
			withDigest[named.Name()] = true
		} else if isTagged(named) {
			out.RepoTags = append(out.RepoTags, named.String())
			tagged = append(tagged, named)
		}
		if pins.match(n, named.String()) {
			out.Pinned = true
		}
	}
	// Every repository the image is tagged in gets a digest, as in CRI-O.
	for _, named := range tagged {
		if withDigest[named.Name()] || img.Digest == "" {
			continue
		}
		if d, err := reference.WithDigest(reference.TrimNamed(named), img.Digest); err == nil {
			out.RepoDigests = append(out.RepoDigests, d.String())
			withDigest[named.Name()] = true
		}
	}
	if f.config != nil {
		out.UID, out.Username = userOf(f.config.Config.User)
	}
	if verbose {
		info := map[string]any{
			"id":             img.ID.String(),
			"names":          img.Names,
			"manifestDigest": img.Digest,
			"digests":        img.Digests,
			"topLayer":       img.TopLayer,
			"created":        img.Created,
			"size":           f.size,
			"imageSpec":      f.config,
		}
		b, err := json.Marshal(info)
		if err != nil {
			return nil, err
		}
		out.Info = map[string]string{"info": string(b)}
	}
	return out, nil
}

// userOf splits a config USER ("uid", "name", "uid:gid", "name:group")
// into a numeric UID or a user name, as the kubelet's runAsNonRoot check
// expects.
func userOf(user string) (*int64, string) {
	if user == "" {
		return nil, ""
	}
	u, _, _ := strings.Cut(user, ":")
	if uid, err := strconv.ParseInt(u, 10, 64); err == nil {
		return &uid, ""
	}
	return nil, u
}

// facts returns an image's cached immutable properties.
func (s *catalog) facts(img *storage.Image) (*imageFacts, error) {
	s.cacheMu.Lock()
	f, ok := s.cache[img.ID]
	s.cacheMu.Unlock()
	if ok {
		return f, nil
	}
	f = &imageFacts{}
	var err error
	if f.size, err = s.images.Size(img.ID); err != nil {
		return nil, err
	}
	if b, err := s.images.BigData(img.ID, storage.ConfigKey(img.ID)); err == nil {
		var cfg ocispec.Image
		if json.Unmarshal(b, &cfg) == nil {
			f.config = &cfg
		}
	} else if !errdefs.IsNotFound(err) {
		return nil, err
	}
	if b, err := s.images.BigData(img.ID, storage.ManifestKey); err == nil {
		var m ocispec.Manifest
		if json.Unmarshal(b, &m) == nil && len(m.Annotations) > 0 {
			f.annotations = m.Annotations
		}
	}
	s.cacheMu.Lock()
	s.cache[img.ID] = f
	s.cacheMu.Unlock()
	return f, nil
}

func (s *catalog) forget(id storage.ImageID) {
	s.cacheMu.Lock()
	delete(s.cache, id)
	s.cacheMu.Unlock()
}
