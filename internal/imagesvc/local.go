package imagesvc

import (
	"context"

	ocispec "github.com/opencontainers/image-spec/specs-go/v1"

	"github.com/noded-dev/noded/internal/storage"
)

// LocalImage is a stored image as a container needs it.
type LocalImage struct {
	ID storage.ImageID
	// Name is the reference that matched, fully qualified; for a lookup by
	// ID, the image's first tag (or digest name).
	Name   string
	Config ocispec.ImageConfig
}

// Resolve finds a stored image by ID, name, short name or digest, the way
// ImageStatus does; a missing image is NotFound (the kubelet pulls first).
func (s *catalog) Resolve(_ context.Context, ref string) (LocalImage, error) {
	img, _, matched, err := s.lookup(ref)
	if err != nil {
		return LocalImage{}, err
	}
	f, err := s.facts(img)
	if err != nil {
		return LocalImage{}, err
	}
	out := LocalImage{ID: img.ID, Name: matched}
	if out.Name == "" && len(img.Names) > 0 {
		out.Name = img.Names[0]
	}
	if out.Name == "" {
		out.Name = img.ID.String()
	}
	if f.config != nil {
		out.Config = f.config.Config
	}
	return out, nil
}
