package cri

import (
	"iter"

	runtimeapi "k8s.io/cri-api/pkg/apis/runtime/v1"

	"github.com/noded-dev/noded/internal/imagesvc"
)

// StreamImages sends the images ListImages lists, in batches.
func (s *ImageServer) StreamImages(req *runtimeapi.StreamImagesRequest, stream runtimeapi.ImageService_StreamImagesServer) error {
	if s.opts.Images == nil {
		return errNoImageService("StreamImages")
	}
	if err := s.checkImageHandler(req.GetFilter().GetImage()); err != nil {
		return err
	}
	ctx := stream.Context()
	return sendBatches(ctx, criImages(s.opts.Images.Stream(ctx, req.GetFilter().GetImage().GetImage())), func(b []*runtimeapi.Image) error {
		return stream.Send(&runtimeapi.StreamImagesResponse{Images: b})
	})
}

// criImages converts each image as it comes.
func criImages(imgs iter.Seq2[*imagesvc.Image, error]) iter.Seq2[*runtimeapi.Image, error] {
	return func(yield func(*runtimeapi.Image, error) bool) {
		for img, err := range imgs {
			if err != nil {
				yield(nil, err)
				return
			}
			if !yield(toCRIImage(img), nil) {
				return
			}
		}
	}
}
