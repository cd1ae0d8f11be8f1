package cri

import (
	"context"

	runtimeapi "k8s.io/cri-api/pkg/apis/runtime/v1"

	"github.com/noded-dev/noded/internal/errdefs"
)

// ImageStatus describes an image; an image that is not there is a
// response without an image, as the CRI requires, not an error.
func (s *ImageServer) ImageStatus(ctx context.Context, req *runtimeapi.ImageStatusRequest) (*runtimeapi.ImageStatusResponse, error) {
	if s.opts.Images == nil {
		return nil, errNoImageService("ImageStatus")
	}
	if err := s.checkImageHandler(req.GetImage()); err != nil {
		return nil, err
	}
	img, err := s.opts.Images.Status(ctx, req.GetImage().GetImage(), req.GetVerbose())
	if errdefs.IsNotFound(err) {
		return &runtimeapi.ImageStatusResponse{}, nil
	}
	if err != nil {
		return nil, err
	}
	return &runtimeapi.ImageStatusResponse{Image: toCRIImage(img), Info: img.Info}, nil
}
