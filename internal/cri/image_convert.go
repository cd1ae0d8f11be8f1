package cri

import (
	runtimeapi "k8s.io/cri-api/pkg/apis/runtime/v1"

	"github.com/noded-dev/noded/internal/imagesvc"
	"github.com/noded-dev/noded/internal/storage"
)

// toCRIImage converts the image service's view of an image.
func toCRIImage(img *imagesvc.Image) *runtimeapi.Image {
	out := &runtimeapi.Image{
		Id:          img.ID.String(),
		RepoTags:    img.RepoTags,
		RepoDigests: img.RepoDigests,
		Size:        img.Size,
		Username:    img.Username,
		Spec:        &runtimeapi.ImageSpec{Image: img.ID.String(), Annotations: img.Annotations},
		Pinned:      img.Pinned,
	}
	if img.UID != nil {
		out.Uid = &runtimeapi.Int64Value{Value: *img.UID}
	}
	return out
}

// toCRIFsUsage converts one filesystem's usage.
func toCRIFsUsage(u storage.FsUsage) *runtimeapi.FilesystemUsage {
	return &runtimeapi.FilesystemUsage{
		Timestamp:  u.Timestamp.UnixNano(),
		FsId:       &runtimeapi.FilesystemIdentifier{Mountpoint: u.Mountpoint},
		UsedBytes:  &runtimeapi.UInt64Value{Value: u.UsedBytes},
		InodesUsed: &runtimeapi.UInt64Value{Value: u.InodesUsed},
	}
}
