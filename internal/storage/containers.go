package storage

import (
	"fmt"
	"slices"

	cstorage "go.podman.io/storage"
	"go.podman.io/storage/pkg/idtools"
)

// Container is a storage container: a writable layer on top of an image's
// top layer, plus per-container directories.
type Container struct {
	ID      ContainerID
	Names   []string
	ImageID ImageID
	LayerID LayerID
	// Metadata is the caller's opaque string.
	Metadata string
}

// ContainerStore is the view of the store's containers (Store.Containers):
// it owns every call on storage containers, their writable layers, mounts
// and directories. It is what the runtime side (internal/sandbox's rootfs)
// uses, so its lifecycle calls keep the names that interface declares
// (CreateContainer, Mount, Unmount, DeleteContainer). Like ImageStore it
// has no state or lock of its own; a container's mounts are reference
// counted by containers/storage.
type ContainerStore struct {
	s cstorage.Store
}

func toContainer(c *cstorage.Container) *Container {
	return &Container{
		ID:       ContainerID(c.ID),
		Names:    slices.Clone(c.Names),
		ImageID:  ImageID(c.ImageID),
		LayerID:  LayerID(c.LayerID),
		Metadata: c.Metadata,
	}
}

// CreateContainerOptions describe a new storage container.
type CreateContainerOptions struct {
	// Names must be unique among containers (e.g. the CRI container name).
	Names []string
	// Metadata is stored with the container, opaque to the store.
	Metadata string
	// MountOptions override the driver's default mount options.
	MountOptions []string
	// UIDMap and GIDMap, when set, are the user namespace the container
	// runs in (a pod with hostUsers: false): its root file system shows
	// the image's files as owned by the IDs they map to, so that the
	// image's root is the namespace's root. The overlay driver does it
	// with ID-mapped mounts of the image's layers when the kernel can
	// mount overlay on them (5.19 and later), sharing the layers with
	// every other container; otherwise containers/storage makes a copy of
	// the image's top layer chowned to the mappings, kept with the image
	// for the next container with the same mappings (its MappedTopLayers).
	// The mappings are kept in the store's container record, so a mount
	// after a restart of noded maps the same way.
	UIDMap, GIDMap []IDMap
}

// IDMap is one range of a user namespace's ID mapping.
type IDMap struct {
	ContainerID, HostID, Size uint32
}

func toIDMaps(ms []IDMap) []idtools.IDMap {
	if len(ms) == 0 {
		return nil
	}
	out := make([]idtools.IDMap, len(ms))
	for i, m := range ms {
		out[i] = idtools.IDMap{ContainerID: int(m.ContainerID), HostID: int(m.HostID), Size: int(m.Size)}
	}
	return out
}

// CreateContainer creates a container with a writable layer on top of the
// image's top layer. An empty id lets the store pick a random one. The
// image cannot be removed while the container exists.
func (s *ContainerStore) CreateContainer(id ContainerID, image ImageID, o CreateContainerOptions) (*Container, error) {
	opts := &cstorage.ContainerOptions{Metadata: o.Metadata, MountOpts: o.MountOptions}
	if len(o.UIDMap) > 0 || len(o.GIDMap) > 0 {
		opts.IDMappingOptions = cstorage.IDMappingOptions{UIDMap: toIDMaps(o.UIDMap), GIDMap: toIDMaps(o.GIDMap)}
	}
	c, err := s.s.CreateContainer(string(id), o.Names, string(image), "", o.Metadata, opts)
	if err != nil {
		return nil, mapErr(err, fmt.Sprintf("creating container on image %s", image))
	}
	return toContainer(c), nil
}

// Container returns a container by ID or name.
func (s *ContainerStore) Container(idOrName string) (*Container, error) {
	c, err := s.s.Container(idOrName)
	if err != nil {
		return nil, mapErr(err, fmt.Sprintf("container %q", idOrName))
	}
	return toContainer(c), nil
}

// List lists every storage container.
func (s *ContainerStore) List() ([]Container, error) {
	cs, err := s.s.Containers()
	if err != nil {
		return nil, mapErr(err, "listing containers")
	}
	out := make([]Container, len(cs))
	for i := range cs {
		out[i] = *toContainer(&cs[i])
	}
	return out, nil
}

// Mount mounts the container's root filesystem (reference counted) and
// returns the mount point.
func (s *ContainerStore) Mount(id ContainerID, mountLabel string) (string, error) {
	p, err := s.s.Mount(string(id), mountLabel)
	if err != nil {
		return "", mapErr(err, fmt.Sprintf("mounting container %s", id))
	}
	return p, nil
}

// Unmount drops one reference to the container's mount (every reference
// with force) and unmounts it when none remain.
func (s *ContainerStore) Unmount(id ContainerID, force bool) error {
	if _, err := s.s.Unmount(string(id), force); err != nil {
		return mapErr(err, fmt.Sprintf("unmounting container %s", id))
	}
	return nil
}

// DeleteContainer unmounts and deletes the container and its writable
// layer and directories.
func (s *ContainerStore) DeleteContainer(id ContainerID) error {
	if err := s.s.DeleteContainer(string(id)); err != nil {
		return mapErr(err, fmt.Sprintf("deleting container %s", id))
	}
	return nil
}

// Directory is a persistent per-container directory.
func (s *ContainerStore) Directory(id ContainerID) (string, error) {
	d, err := s.s.ContainerDirectory(string(id))
	if err != nil {
		return "", mapErr(err, fmt.Sprintf("container %s", id))
	}
	return d, nil
}

// RunDirectory is a per-container directory under the run root.
func (s *ContainerStore) RunDirectory(id ContainerID) (string, error) {
	d, err := s.s.ContainerRunDirectory(string(id))
	if err != nil {
		return "", mapErr(err, fmt.Sprintf("container %s", id))
	}
	return d, nil
}
