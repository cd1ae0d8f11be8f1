package cri

import (
	"slices"

	runtimeapi "k8s.io/cri-api/pkg/apis/runtime/v1"

	"github.com/noded-dev/noded/internal/errdefs"
)

// checkImageHandler checks ImageSpec.runtime_handler (the kubelet sets it
// with RuntimeClassInImageCriAPI). Every handler noded runs shares one
// image store, so any of them, or none, names the same images; an unknown
// one is refused as RunPodSandbox refuses it (InvalidArgument), so that a
// typo in a RuntimeClass fails at the pull rather than answering for a
// handler that cannot run the image.
func (s *ImageServer) checkImageHandler(spec *runtimeapi.ImageSpec) error {
	if h := spec.GetRuntimeHandler(); h != "" && !slices.Contains(s.opts.Handlers, h) {
		return errdefs.InvalidArgument("runtime handler %q is not configured (noded runs %q)", h, s.opts.Handlers)
	}
	return nil
}
