package storage

import (
	"errors"
	"fmt"
	"slices"
	"time"

	"github.com/opencontainers/go-digest"
	cstorage "go.podman.io/storage"
)

// Big data keys, the same containers/image uses (and so CRI-O and podman).
const (
	// ManifestKey holds the image's own (per-platform) manifest.
	ManifestKey       = cstorage.ImageDigestBigDataKey
	manifestKeyPrefix = cstorage.ImageDigestManifestBigDataNamePrefix + "-"
)

// ManifestKeyFor is the big data key of the manifest with digest d.
func ManifestKeyFor(d digest.Digest) string { return manifestKeyPrefix + d.String() }

// ConfigKey is the big data key of the image's config.
func ConfigKey(id ImageID) string { return id.Digest().String() }

// Image is an image record.
type Image struct {
	ID ImageID
	// Names are fully qualified references, tagged or digested.
	Names []string
	// Digest is the digest of the image's own manifest; Digests are the
	// digests of every manifest stored with it (manifest lists included).
	Digest   digest.Digest
	Digests  []digest.Digest
	TopLayer LayerID
	Created  time.Time
	// BigDataSizes are the sizes of the manifests and config.
	BigDataSizes map[string]int64
}

// ImageStore is the view of the store's image records (Store.Images): it
// owns every call on images, their names and their big data. It holds no
// state of its own beyond the shared containers/storage store, which
// locks its own files, so it is safe for concurrent use and needs no lock
// rule; ordering image deletion against pulls is the caller's
// (internal/imagesvc pins layers).
type ImageStore struct {
	s cstorage.Store
}

func toImage(i *cstorage.Image) *Image {
	return &Image{
		ID:           ImageID(i.ID),
		Names:        slices.Clone(i.Names),
		Digest:       i.Digest,
		Digests:      slices.Clone(i.Digests),
		TopLayer:     LayerID(i.TopLayer),
		Created:      i.Created,
		BigDataSizes: i.BigDataSizes,
	}
}

// Get looks an image up by exact ID, by exact name, or by an unambiguous
// ID prefix. A missing image is an errdefs NotFound error.
func (s *ImageStore) Get(idOrName string) (*Image, error) {
	i, err := s.s.Image(idOrName)
	if err != nil {
		return nil, mapErr(err, fmt.Sprintf("image %q", idOrName))
	}
	return toImage(i), nil
}

// ByDigest returns the images one of whose manifests has digest d.
func (s *ImageStore) ByDigest(d digest.Digest) ([]Image, error) {
	imgs, err := s.s.ImagesByDigest(d)
	if err != nil {
		if errors.Is(err, cstorage.ErrImageUnknown) {
			return nil, nil
		}
		return nil, mapErr(err, "looking up images by digest "+d.String())
	}
	out := make([]Image, 0, len(imgs))
	for _, i := range imgs {
		out = append(out, *toImage(i))
	}
	return out, nil
}

// List lists every image.
func (s *ImageStore) List() ([]Image, error) {
	imgs, err := s.s.Images()
	if err != nil {
		return nil, mapErr(err, "listing images")
	}
	out := make([]Image, 0, len(imgs))
	for i := range imgs {
		out = append(out, *toImage(&imgs[i]))
	}
	return out, nil
}

// BigData returns one big data item of an image.
func (s *ImageStore) BigData(id ImageID, key string) ([]byte, error) {
	b, err := s.s.ImageBigData(string(id), key)
	if err != nil {
		return nil, mapErr(err, fmt.Sprintf("image %s: reading %q", id, key))
	}
	return b, nil
}

// Size is the image's size on disk as containers/storage accounts it:
// its layers' uncompressed sizes plus its manifests and config.
func (s *ImageStore) Size(id ImageID) (int64, error) {
	n, err := s.s.ImageSize(string(id))
	if err != nil {
		return 0, mapErr(err, fmt.Sprintf("image %s: size", id))
	}
	return n, nil
}

// BigData is one item stored with an image.
type BigData struct {
	Key  string
	Data []byte
	// Digest is the item's digest; for manifests it must be the manifest's
	// digest as containers/image computes it. Empty means sha256 of Data.
	Digest digest.Digest
}

// CreateImageOptions describe a new image record.
type CreateImageOptions struct {
	Created time.Time
	// Digest is the digest of the image's own manifest.
	Digest  digest.Digest
	BigData []BigData
}

// Create records an image whose layers are already in the store. It is
// created without names; AddNames moves names onto it. An image
// with the same ID that already exists is an errdefs AlreadyExists error.
func (s *ImageStore) Create(id ImageID, top LayerID, o CreateImageOptions) (*Image, error) {
	opts := &cstorage.ImageOptions{CreationDate: o.Created, Digest: o.Digest}
	for _, b := range o.BigData {
		d := b.Digest
		if d == "" {
			d = digest.Canonical.FromBytes(b.Data)
		}
		opts.BigData = append(opts.BigData, cstorage.ImageBigDataOption{Key: b.Key, Data: b.Data, Digest: d})
	}
	i, err := s.s.CreateImage(string(id), nil, string(top), "", opts)
	if err != nil {
		return nil, mapErr(err, fmt.Sprintf("creating image %s", id))
	}
	return toImage(i), nil
}

// SetBigData stores (or replaces) one item with an image. For a
// manifest item (key ManifestKey or ManifestKeyFor(d)), digest must be
// the manifest's digest: it joins the image's Digests.
func (s *ImageStore) SetBigData(id ImageID, key string, data []byte, manifestDigest digest.Digest) error {
	var fn func([]byte) (digest.Digest, error)
	if manifestDigest != "" {
		fn = func([]byte) (digest.Digest, error) { return manifestDigest, nil }
	}
	if err := s.s.SetImageBigData(string(id), key, data, fn); err != nil {
		return mapErr(err, fmt.Sprintf("image %s: storing %q", id, key))
	}
	return nil
}

// AddNames gives the image these names, taking each away from any
// other image that had it.
func (s *ImageStore) AddNames(id ImageID, names []string) error {
	if len(names) == 0 {
		return nil
	}
	if err := s.s.AddNames(string(id), names); err != nil {
		return mapErr(err, fmt.Sprintf("image %s: adding names", id))
	}
	return nil
}

// RemoveNames takes these names away from the image.
func (s *ImageStore) RemoveNames(id ImageID, names []string) error {
	if err := s.s.RemoveNames(string(id), names); err != nil {
		return mapErr(err, fmt.Sprintf("image %s: removing names", id))
	}
	return nil
}

// Delete deletes the image and the layers only it uses, and returns
// those layers. With dryRun it deletes nothing and returns the layers it
// would delete. An image that a container uses is an errdefs
// FailedPrecondition error.
func (s *ImageStore) Delete(id ImageID, dryRun bool) ([]LayerID, error) {
	layers, err := s.s.DeleteImage(string(id), !dryRun)
	if err != nil {
		return nil, mapErr(err, fmt.Sprintf("deleting image %s%s", id, s.usersOf(id, err)))
	}
	out := make([]LayerID, len(layers))
	for i, l := range layers {
		out[i] = LayerID(l)
	}
	return out, nil
}
