package cri

import (
	"context"

	runtimeapi "k8s.io/cri-api/pkg/apis/runtime/v1"
)

// RemoveImage removes a tag (the image goes with its last one) or, given
// an ID or digest, the image. Removing an absent image succeeds.
func (s *ImageServer) RemoveImage(ctx context.Context, req *runtimeapi.RemoveImageRequest) (*runtimeapi.RemoveImageResponse, error) {
	if s.opts.Images == nil {
		return nil, errNoImageService("RemoveImage")
	}
	if err := s.checkImageHandler(req.GetImage()); err != nil {
		return nil, err
	}
	if err := s.opts.Images.Remove(ctx, req.GetImage().GetImage()); err != nil {
		return nil, err
	}
	return &runtimeapi.RemoveImageResponse{}, nil
}
