package specgen

import (
	"path"
	"strings"

	specs "github.com/opencontainers/runtime-spec/specs-go"
	runtimeapi "k8s.io/cri-api/pkg/apis/runtime/v1"

	"github.com/noded-dev/noded/internal/errdefs"
)

// Image volumes (KEP-4639, GA in Kubernetes 1.36) are CRI mounts that name
// an image instead of a host path. Generation needs no image store: the
// caller (internal/sandbox) mounts the image's file system read-only
// before it generates the spec, resolves the mount's image_sub_path in it,
// and passes the result in Container.ImageVolumes; the image mount is then
// bound like any other mount, read-only, nosuid and nodev. noexec is only
// added when the mount asks for it (mount_options): the kubelet's image
// volumes carry programs (critest runs one from its volume).

// imageMountFlags are what every image mount gets besides its access mode:
// the image's setuid binaries and device nodes are content, not a grant.
var imageMountFlags = []string{"nosuid", "nodev"}

// checkImageMount makes the host-free checks of an image mount: it names
// an image and no host path (the CRI makes them mutually exclusive), it is
// read-only (image mounts are read-only by definition; the kubelet always
// sets readonly, and critest expects a mount without it refused), it asks
// for no ID mapping of its own, and its sub path stays inside the image.
// An image mount needs no mapping from the request: in a pod with its own
// user namespace its storage layers are ID-mapped to the pod, as the root
// filesystem's are (the kernel refuses MOUNT_ATTR_IDMAP on the overlay
// mount itself: mount_setattr fails with EINVAL on 6.18), so the image's
// files belong to the pod's users.
func checkImageMount(m *runtimeapi.Mount) error {
	dst := m.GetContainerPath()
	switch {
	case m.GetImage().GetImage() == "":
		return errdefs.InvalidArgument("image volume at %q names no image", dst)
	case m.GetHostPath() != "":
		return errdefs.InvalidArgument("mount at %q has both a host path and an image; they are mutually exclusive", dst)
	case !m.GetReadonly():
		return errdefs.InvalidArgument("image volume at %q must be read-only (readonly: true): image volumes are read-only by definition", dst)
	case len(m.GetUidMappings()) > 0 || len(m.GetGidMappings()) > 0:
		return errdefs.InvalidArgument("image volume at %q has uid/gid mappings: an image volume takes its pod's user namespace mapping, and no other", dst)
	}
	return checkImageSubPath(dst, m.GetImageSubPath())
}

// checkImageSubPath refuses a sub path that could leave the image as
// written: an absolute path or a ".." component (Kubernetes refuses both
// in a volume mount's subPath). Symbolic links inside the image are the
// caller's to resolve within the image's root.
func checkImageSubPath(dst, sub string) error {
	switch {
	case sub == "":
		return nil
	case path.IsAbs(sub):
		return errdefs.InvalidArgument("image volume at %q: sub path %q is not a relative path", dst, sub)
	case hasDotDot(sub):
		return errdefs.InvalidArgument("image volume at %q: sub path %q has a \"..\" component", dst, sub)
	case strings.ContainsRune(sub, 0):
		return errdefs.InvalidArgument("image volume at %q: sub path %q has a NUL byte", dst, sub)
	}
	return nil
}

// imageMountPropagation is the propagation of every image mount: private.
// The source is a read-only mount of immutable layers that nothing is ever
// mounted under, so no mode could change what the container sees, and a
// requested one must not change the root's propagation.
const imageMountPropagation = "rprivate"

// imageVolumeSources fills in the sources of the image mounts among binds
// (bindMounts(all), in the same order) from in.ImageVolumes, which holds
// them by index in the request's mounts. An image mount the caller did not
// mount is refused.
func (in *Container) imageVolumeSources(all []*runtimeapi.Mount, binds []specs.Mount) error {
	index := map[*runtimeapi.Mount]int{}
	for i, m := range in.Config.GetMounts() {
		index[m] = i
	}
	for i, m := range all {
		if m.GetImage() == nil {
			continue
		}
		j, ok := index[m]
		src := in.ImageVolumes[j]
		if !ok || src == "" {
			return errdefs.InvalidArgument("image volume at %q was not mounted by the runtime", m.GetContainerPath())
		}
		binds[i].Source = src
	}
	return nil
}
