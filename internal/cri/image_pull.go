package cri

import (
	"context"

	runtimeapi "k8s.io/cri-api/pkg/apis/runtime/v1"

	"github.com/noded-dev/noded/internal/imagesvc"
)

// PullImage pulls an image with the request's credentials and returns its
// ID ("sha256:<config digest>"), the same value ImageStatus reports as
// Image.Id.
func (s *ImageServer) PullImage(ctx context.Context, req *runtimeapi.PullImageRequest) (*runtimeapi.PullImageResponse, error) {
	if s.opts.Images == nil {
		return nil, errNoImageService("PullImage")
	}
	if err := s.checkImageHandler(req.GetImage()); err != nil {
		return nil, err
	}
	a := req.GetAuth()
	id, err := s.opts.Images.Pull(ctx, req.GetImage().GetImage(), imagesvc.Auth{
		Username:      a.GetUsername(),
		Password:      a.GetPassword(),
		Auth:          a.GetAuth(),
		IdentityToken: a.GetIdentityToken(),
		RegistryToken: a.GetRegistryToken(),
	})
	if err != nil {
		return nil, err
	}
	return &runtimeapi.PullImageResponse{ImageRef: id.String()}, nil
}
