package sandbox

import (
	"context"
	"crypto/sha256"
	"encoding/hex"
	"errors"
	"fmt"
	"io/fs"
	"os"
	"slices"
	"strconv"
	"strings"
	"syscall"

	securejoin "github.com/cyphar/filepath-securejoin"
	"google.golang.org/protobuf/proto"
	runtimeapi "k8s.io/cri-api/pkg/apis/runtime/v1"

	"github.com/noded-dev/noded/internal/cleanup"
	"github.com/noded-dev/noded/internal/errdefs"
	"github.com/noded-dev/noded/internal/ids"
	"github.com/noded-dev/noded/internal/log"
	"github.com/noded-dev/noded/internal/specgen"
	"github.com/noded-dev/noded/internal/state"
	"github.com/noded-dev/noded/internal/storage"
)

// Image volumes (CRI Mount.image, KEP-4639).
//
// Each image mount of a container is a storage container of its own on
// the image, created with the mount options ro, nodev and nosuid: the
// overlay driver then mounts the image's layers as lower directories only
// (no upper, no work directory), so the file system is read-only on the
// host too, shares its layers with every root filesystem and volume made
// from the image, and nothing is copied. The spec binds it (or the
// mount's sub path in it) read-only into the container (specgen).
//
// A storage container per mount rather than a shared mount of the image
// (store.MountImage) because:
//   - it belongs to one CRI container: its ID is derived from the
//     container's ID and the mount's index in the request, so the
//     container's removal, a failed create's rollback and the recovery of
//     a create killed half-way all find it from the request alone, and no
//     reference count is shared that a crash could leave too high (how
//     containerd leaks image-volume mounts);
//   - containers/storage refuses to delete an image a container uses, so
//     RemoveImage of the image is FailedPrecondition while any container
//     has it as a volume, and the start-up garbage collection keeps its
//     layers, exactly as for a root filesystem.
//
// At start-up, once the interrupted creates are undone, every image
// volume whose container has no record is removed (sweepImageVolumes),
// whatever left it.

// imageVolumeMountOptions are the storage mount options of an image
// volume; "ro" is what makes the overlay driver mount it without an upper
// directory.
var imageVolumeMountOptions = []string{"ro", "nodev", "nosuid"}

// imageVolumeNameInfix joins the container's ID and the mount's index in
// a volume's storage name. CRI container names (containerName) always
// have four underscores, so they never take the form <64 hex>-image-volume-<n>.
const imageVolumeNameInfix = "-image-volume-"

// imageVolumeID is the storage container of the image mount at index i of
// container ctr's mounts.
func imageVolumeID(ctr ids.ContainerID, i int) storage.ContainerID {
	sum := sha256.Sum256(fmt.Appendf(nil, "noded image volume %s %d", ctr, i))
	return storage.ContainerID(hex.EncodeToString(sum[:]))
}

// imageVolumeName is the storage name of that container, which says whose
// it is (for people reading the store, and for sweepImageVolumes).
func imageVolumeName(ctr ids.ContainerID, i int) string {
	return string(ctr) + imageVolumeNameInfix + strconv.Itoa(i)
}

// imageVolumeOwner returns the CRI container a storage container is an
// image volume of, if it is one: its name and ID are the ones
// imageVolumeName and imageVolumeID give.
func imageVolumeOwner(c storage.Container) (ids.ContainerID, bool) {
	for _, n := range c.Names {
		owner, index, ok := strings.Cut(n, imageVolumeNameInfix)
		if !ok {
			continue
		}
		i, err := strconv.Atoi(index)
		if err == nil && i >= 0 && c.ID == imageVolumeID(ids.ContainerID(owner), i) {
			return ids.ContainerID(owner), true
		}
	}
	return "", false
}

// imageMounts returns the index in the request of each image mount.
func imageMounts(cfg *runtimeapi.ContainerConfig) []int {
	var out []int
	for i, m := range cfg.GetMounts() {
		if m.GetImage() != nil {
			out = append(out, i)
		}
	}
	return out
}

// mountImageVolumes makes and mounts the image volumes of a container
// being created, pushing their removal on undo. It returns their host
// paths by index in the request's mounts (specgen.Container.ImageVolumes)
// and their records. The request was checked (specgen.CheckContainerConfig):
// each image mount is read-only and its sub path relative, without "..".
func (s *Containers) mountImageVolumes(ctx context.Context, ctr ids.ContainerID, cfg *runtimeapi.ContainerConfig, userns *specgen.IDMappings, undo *cleanup.Stack) (map[int]string, []state.ImageVolume, error) {
	var (
		sources map[int]string
		recs    []state.ImageVolume
	)
	for _, i := range imageMounts(cfg) {
		src, rec, err := s.mountImageVolume(ctx, ctr, i, cfg.GetMounts()[i], userns, undo)
		if err != nil {
			return nil, nil, err
		}
		if sources == nil {
			sources = map[int]string{}
		}
		sources[i] = src
		recs = append(recs, rec)
	}
	return sources, recs, nil
}

func (s *Containers) mountImageVolume(ctx context.Context, ctr ids.ContainerID, i int, m *runtimeapi.Mount, userns *specgen.IDMappings, undo *cleanup.Stack) (string, state.ImageVolume, error) {
	dst := m.GetContainerPath()
	// The kubelet pulls first and names the image by the ID PullImage
	// returned: a missing image is NotFound.
	img, err := s.o.Images.Resolve(ctx, m.GetImage().GetImage())
	if err != nil {
		return "", state.ImageVolume{}, fmt.Errorf("image volume at %q: %w", dst, err)
	}
	id := imageVolumeID(ctr, i)
	// In a pod with a user namespace the volume's layers are ID-mapped
	// like its root filesystem's, so the image's files belong to the
	// pod's users and not to the overflow IDs.
	root, err := s.mountStorageContainer(fmt.Sprintf("image volume at %q (image %s)", dst, img.Name), id, img.ID, storage.CreateContainerOptions{
		Names: []string{imageVolumeName(ctr, i)}, MountOptions: imageVolumeMountOptions,
	}, userns, undo)
	if err != nil {
		return "", state.ImageVolume{}, err
	}
	src, err := imageSubPath(root, m.GetImageSubPath())
	if err != nil {
		return "", state.ImageVolume{}, fmt.Errorf("image volume at %q (image %s): %w", dst, img.Name, err)
	}
	log.FromContext(ctx).WithFields(map[string]any{"path": dst, "image": img.ID.String(), "subPath": m.GetImageSubPath()}).Debug("image volume mounted")
	return src, state.ImageVolume{Index: i, ContainerPath: dst, ImageID: img.ID.String(), StorageID: id}, nil
}

// imageSubPath resolves a mount's sub path in the image's mounted root:
// symbolic links are followed as if root were "/", so no link in the image
// leads out of it. The result cannot change before runc binds it: the
// mount is read-only and its layers immutable. A sub path the image does
// not have is NotFound (the CRI asks runtimes to fail the create).
func imageSubPath(root, sub string) (string, error) {
	if sub == "" {
		return root, nil
	}
	p, err := securejoin.SecureJoin(root, sub)
	if err != nil {
		return "", fmt.Errorf("sub path %q: %w", sub, err)
	}
	if _, err := os.Lstat(p); err != nil {
		if errors.Is(err, fs.ErrNotExist) || errors.Is(err, syscall.ENOTDIR) {
			return "", errdefs.NotFound("sub path %q does not exist in the image", sub)
		}
		return "", fmt.Errorf("sub path %q: %w", sub, err)
	}
	return p, nil
}

// removeImageVolumes unmounts and deletes the image volumes of container
// ctr, found from its request (so a pending record serves as well as a
// full one); missing ones are fine.
func (b *base) removeImageVolumes(ctr ids.ContainerID, cfg *runtimeapi.ContainerConfig) error {
	for _, i := range imageMounts(cfg) {
		if err := b.removeRootfs(imageVolumeID(ctr, i)); err != nil {
			return fmt.Errorf("removing image volume at %q: %w", cfg.GetMounts()[i].GetContainerPath(), err)
		}
	}
	return nil
}

// unmountImageVolumes unmounts a container's image volumes and keeps
// their storage containers (for a stopped pod, which holds no mount; the
// image stays protected until the container is removed).
func (b *base) unmountImageVolumes(c *state.Container) error {
	for _, i := range imageMounts(c.Config) {
		if err := b.o.Rootfs.Unmount(imageVolumeID(c.ID, i), true); err != nil && !errdefs.IsNotFound(err) {
			return fmt.Errorf("unmounting image volume at %q of container %s: %w",
				c.Config.GetMounts()[i].GetContainerPath(), c.ID.Short(), err)
		}
	}
	return nil
}

// storageLister lists the storage containers (storage.ContainerStore
// does); recovery uses it, when Options.Rootfs has it, to find image
// volumes whose container was never recorded.
type storageLister interface {
	List() ([]storage.Container, error)
}

// sweepImageVolumes removes, at start-up, every image volume whose
// container has no record: the creates killed half-way were undone just
// before (recoverPending), so no create is under way and nothing else
// can own one.
func (s *Containers) sweepImageVolumes(ctx context.Context) {
	lg := log.FromContext(ctx)
	lister, ok := s.o.Rootfs.(storageLister)
	if !ok {
		return
	}
	all, err := lister.List()
	if err != nil {
		lg.WithError(err).Warn("listing storage containers for image volumes left behind")
		return
	}
	for _, c := range all {
		owner, ok := imageVolumeOwner(c)
		if !ok || s.o.Store.HasContainer(owner) {
			continue
		}
		vlog := lg.WithFields(map[string]any{"container": owner.Short(), "storage": c.ID.Short()})
		if err := s.removeRootfs(c.ID); err != nil {
			vlog.WithError(err).Warn("removing an image volume of a container that has no record")
			continue
		}
		vlog.Info("removed an image volume of a container that has no record")
	}
}

// statusMounts are the container's mounts as ContainerStatus reports
// them: the request's, each image mount's ImageSpec with image_ref set to
// the ID of the image it mounts (PullImageResponse.image_ref).
func statusMounts(c *state.Container) []*runtimeapi.Mount {
	mounts := c.Config.GetMounts()
	if len(c.ImageVolumes) == 0 {
		return mounts
	}
	out := slices.Clone(mounts)
	for _, v := range c.ImageVolumes {
		if v.Index < 0 || v.Index >= len(out) || out[v.Index].GetImage() == nil {
			continue
		}
		m := proto.Clone(out[v.Index]).(*runtimeapi.Mount)
		m.Image.ImageRef = v.ImageID
		out[v.Index] = m
	}
	return out
}
