package cri

import (
	"context"
	"iter"

	"github.com/noded-dev/noded/internal/errdefs"
	"github.com/noded-dev/noded/internal/imagesvc"
	"github.com/noded-dev/noded/internal/storage"
)

// imageService is what the ImageService handlers need from
// internal/imagesvc. It is declared here, where it is used. Errors are
// errdefs classes; a missing image is errdefs NotFound.
type imageService interface {
	Pull(ctx context.Context, ref string, auth imagesvc.Auth) (storage.ImageID, error)
	List(ctx context.Context, filter string) ([]*imagesvc.Image, error)
	// Stream yields List's images one at a time; an error ends it.
	Stream(ctx context.Context, filter string) iter.Seq2[*imagesvc.Image, error]
	Status(ctx context.Context, ref string, verbose bool) (*imagesvc.Image, error)
	Remove(ctx context.Context, ref string) error
	FsInfo(ctx context.Context) (images, containers storage.FsUsage, err error)
}

// errNoImageService answers ImageService RPCs when no image service is
// wired (codes.Unimplemented, never a fake success).
func errNoImageService(rpc string) error {
	return errdefs.NotImplemented("%s: the image service is not available", rpc)
}
