package cri

import (
	"context"
	"testing"

	"google.golang.org/grpc/codes"
	"google.golang.org/grpc/status"
	runtimeapi "k8s.io/cri-api/pkg/apis/runtime/v1"
)

// ImageSpec.runtime_handler: any handler noded runs names the one image
// store; an unknown one is InvalidArgument, as in RunPodSandbox, and the
// image service is not called.
func TestImageRuntimeHandler(t *testing.T) {
	ctx := context.Background()
	spec := func(h string) *runtimeapi.ImageSpec { return &runtimeapi.ImageSpec{Image: "r/x:1", RuntimeHandler: h} }
	calls := map[string]func(*ImageServer, string) error{
		"PullImage": func(s *ImageServer, h string) error {
			_, err := s.PullImage(ctx, &runtimeapi.PullImageRequest{Image: spec(h)})
			return err
		},
		"ImageStatus": func(s *ImageServer, h string) error {
			_, err := s.ImageStatus(ctx, &runtimeapi.ImageStatusRequest{Image: spec(h)})
			return err
		},
		"ListImages": func(s *ImageServer, h string) error {
			_, err := s.ListImages(ctx, &runtimeapi.ListImagesRequest{Filter: &runtimeapi.ImageFilter{Image: spec(h)}})
			return err
		},
		"RemoveImage": func(s *ImageServer, h string) error {
			_, err := s.RemoveImage(ctx, &runtimeapi.RemoveImageRequest{Image: spec(h)})
			return err
		},
	}
	for name, call := range calls {
		for _, tc := range []struct {
			handler string
			want    codes.Code
		}{{"", codes.OK}, {"runc", codes.OK}, {"kata", codes.InvalidArgument}} {
			t.Run(name+"/"+tc.handler, func(t *testing.T) {
				f := &fakeImages{}
				s := NewServer(Options{Images: f, Handlers: []string{"", "runc"}})
				if got := status.Code(toGRPC(call(s.ImageServer, tc.handler))); got != tc.want {
					t.Errorf("code %v, want %v", got, tc.want)
				}
				if tc.want != codes.OK && (f.pulled != "" || f.removed != "") {
					t.Errorf("the image service was called for an unknown handler")
				}
			})
		}
	}
}
