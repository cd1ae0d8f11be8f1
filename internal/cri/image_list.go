package cri

import (
	"context"

	runtimeapi "k8s.io/cri-api/pkg/apis/runtime/v1"
)

// ListImages lists every image, or the one the filter names.
func (s *ImageServer) ListImages(ctx context.Context, req *runtimeapi.ListImagesRequest) (*runtimeapi.ListImagesResponse, error) {
	if s.opts.Images == nil {
		return nil, errNoImageService("ListImages")
	}
	if err := s.checkImageHandler(req.GetFilter().GetImage()); err != nil {
		return nil, err
	}
	imgs, err := s.opts.Images.List(ctx, req.GetFilter().GetImage().GetImage())
	if err != nil {
		return nil, err
	}
	resp := &runtimeapi.ListImagesResponse{Images: make([]*runtimeapi.Image, 0, len(imgs))}
	for _, img := range imgs {
		resp.Images = append(resp.Images, toCRIImage(img))
	}
	return resp, nil
}
