package cri

import (
	"context"
	"iter"
	"strings"
	"testing"
	"time"

	"google.golang.org/grpc/codes"
	"google.golang.org/grpc/status"
	runtimeapi "k8s.io/cri-api/pkg/apis/runtime/v1"

	"github.com/noded-dev/noded/internal/errdefs"
	"github.com/noded-dev/noded/internal/imagesvc"
	"github.com/noded-dev/noded/internal/storage"
)

const fakeID = storage.ImageID("0123456789abcdef0123456789abcdef0123456789abcdef0123456789abcdef")

type fakeImages struct {
	pulled  string
	auth    imagesvc.Auth
	removed string
}

func (f *fakeImages) Pull(_ context.Context, ref string, auth imagesvc.Auth) (storage.ImageID, error) {
	if ref == "bad" {
		return "", errdefs.InvalidArgument("invalid image reference %q", ref)
	}
	f.pulled, f.auth = ref, auth
	return fakeID, nil
}

func (f *fakeImages) List(_ context.Context, filter string) ([]*imagesvc.Image, error) {
	if filter == "none" {
		return nil, nil
	}
	img, _ := f.Status(context.Background(), "x", false)
	return []*imagesvc.Image{img}, nil
}

func (f *fakeImages) Stream(ctx context.Context, filter string) iter.Seq2[*imagesvc.Image, error] {
	imgs, err := f.List(ctx, filter)
	return func(yield func(*imagesvc.Image, error) bool) {
		if err != nil {
			yield(nil, err)
			return
		}
		for _, img := range imgs {
			if !yield(img, nil) {
				return
			}
		}
	}
}

func (f *fakeImages) Status(_ context.Context, ref string, verbose bool) (*imagesvc.Image, error) {
	if ref == "missing" {
		return nil, errdefs.NotFound("image %q not found", ref)
	}
	uid := int64(1000)
	img := &imagesvc.Image{ID: fakeID, RepoTags: []string{"r/x:1"}, RepoDigests: []string{"r/x@sha256:" + string(fakeID)}, Size: 42, UID: &uid, Pinned: true}
	if verbose {
		img.Info = map[string]string{"info": "{}"}
	}
	return img, nil
}

func (f *fakeImages) Remove(_ context.Context, ref string) error { f.removed = ref; return nil }

func (f *fakeImages) FsInfo(context.Context) (storage.FsUsage, storage.FsUsage, error) {
	now := time.Unix(10, 0)
	return storage.FsUsage{Mountpoint: "/var/lib/noded/storage", UsedBytes: 100, InodesUsed: 7, Timestamp: now},
		storage.FsUsage{Mountpoint: "/var/lib/noded/storage", UsedBytes: 5, InodesUsed: 1, Timestamp: now}, nil
}

func TestImageHandlers(t *testing.T) {
	f := &fakeImages{}
	s := NewServer(Options{Images: f})
	ctx := context.Background()

	pull, err := s.PullImage(ctx, &runtimeapi.PullImageRequest{
		Image: &runtimeapi.ImageSpec{Image: "r/x:1"},
		Auth:  &runtimeapi.AuthConfig{Username: "u", Password: "p", RegistryToken: "t"},
	})
	if err != nil || pull.GetImageRef() != "sha256:"+string(fakeID) {
		t.Fatalf("PullImage = %v, %v", pull, err)
	}
	if f.pulled != "r/x:1" || f.auth.Username != "u" || f.auth.Password != "p" || f.auth.RegistryToken != "t" {
		t.Errorf("service got %q %+v", f.pulled, f.auth)
	}
	if _, err := s.PullImage(ctx, &runtimeapi.PullImageRequest{Image: &runtimeapi.ImageSpec{Image: "bad"}}); status.Code(toGRPC(err)) != codes.InvalidArgument {
		t.Errorf("bad reference: %v", err)
	}

	st, err := s.ImageStatus(ctx, &runtimeapi.ImageStatusRequest{Image: &runtimeapi.ImageSpec{Image: "r/x:1"}, Verbose: true})
	if err != nil {
		t.Fatal(err)
	}
	img := st.GetImage()
	if img.GetId() != pull.GetImageRef() || img.GetUid().GetValue() != 1000 || !img.GetPinned() || img.GetSize() != 42 || img.GetSpec().GetImage() != img.GetId() || st.GetInfo()["info"] == "" {
		t.Errorf("ImageStatus = %+v", st)
	}
	st, err = s.ImageStatus(ctx, &runtimeapi.ImageStatusRequest{Image: &runtimeapi.ImageSpec{Image: "missing"}})
	if err != nil || st.GetImage() != nil {
		t.Errorf("absent image: %v, %v; want no image and no error", st, err)
	}

	list, err := s.ListImages(ctx, &runtimeapi.ListImagesRequest{})
	if err != nil || len(list.GetImages()) != 1 {
		t.Errorf("ListImages = %v, %v", list, err)
	}
	list, err = s.ListImages(ctx, &runtimeapi.ListImagesRequest{Filter: &runtimeapi.ImageFilter{Image: &runtimeapi.ImageSpec{Image: "none"}}})
	if err != nil || len(list.GetImages()) != 0 {
		t.Errorf("filtered ListImages = %v, %v", list, err)
	}

	if _, err := s.RemoveImage(ctx, &runtimeapi.RemoveImageRequest{Image: &runtimeapi.ImageSpec{Image: "r/x:1"}}); err != nil || f.removed != "r/x:1" {
		t.Errorf("RemoveImage: %v, removed %q", err, f.removed)
	}

	fs, err := s.ImageFsInfo(ctx, &runtimeapi.ImageFsInfoRequest{})
	if err != nil {
		t.Fatal(err)
	}
	im, ct := fs.GetImageFilesystems(), fs.GetContainerFilesystems()
	if len(im) != 1 || im[0].GetUsedBytes().GetValue() != 100 || im[0].GetInodesUsed().GetValue() != 7 || im[0].GetFsId().GetMountpoint() != "/var/lib/noded/storage" || im[0].GetTimestamp() != 10e9 {
		t.Errorf("image filesystems %v", im)
	}
	if len(ct) != 1 || ct[0].GetUsedBytes().GetValue() != 5 {
		t.Errorf("container filesystems %v", ct)
	}
}

func TestImageHandlersWithoutService(t *testing.T) {
	s := NewServer(Options{})
	ctx := context.Background()
	_, err := s.PullImage(ctx, &runtimeapi.PullImageRequest{Image: &runtimeapi.ImageSpec{Image: "x"}})
	if status.Code(toGRPC(err)) != codes.Unimplemented || !strings.Contains(err.Error(), "PullImage") {
		t.Errorf("PullImage without a service: %v", err)
	}
	for name, call := range map[string]func() error{
		"ListImages":  func() error { _, err := s.ListImages(ctx, &runtimeapi.ListImagesRequest{}); return err },
		"ImageStatus": func() error { _, err := s.ImageStatus(ctx, &runtimeapi.ImageStatusRequest{}); return err },
		"RemoveImage": func() error { _, err := s.RemoveImage(ctx, &runtimeapi.RemoveImageRequest{}); return err },
		"ImageFsInfo": func() error { _, err := s.ImageFsInfo(ctx, &runtimeapi.ImageFsInfoRequest{}); return err },
	} {
		if code := status.Code(toGRPC(call())); code != codes.Unimplemented {
			t.Errorf("%s without a service: %v", name, code)
		}
	}
}
