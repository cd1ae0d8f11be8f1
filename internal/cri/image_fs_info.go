package cri

import (
	"context"

	runtimeapi "k8s.io/cri-api/pkg/apis/runtime/v1"
)

// ImageFsInfo reports what images (read-only layers and metadata) and
// containers (writable layers) use on the storage filesystem; the kubelet
// adds the filesystem's capacity and free space for eviction and image
// garbage collection.
func (s *ImageServer) ImageFsInfo(ctx context.Context, _ *runtimeapi.ImageFsInfoRequest) (*runtimeapi.ImageFsInfoResponse, error) {
	if s.opts.Images == nil {
		return nil, errNoImageService("ImageFsInfo")
	}
	images, containers, err := s.opts.Images.FsInfo(ctx)
	if err != nil {
		return nil, err
	}
	return &runtimeapi.ImageFsInfoResponse{
		ImageFilesystems:     []*runtimeapi.FilesystemUsage{toCRIFsUsage(images)},
		ContainerFilesystems: []*runtimeapi.FilesystemUsage{toCRIFsUsage(containers)},
	}, nil
}
