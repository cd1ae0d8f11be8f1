package storage

import (
	"fmt"
	"time"
)

// WritableLayerUsage is what one container's writable layer holds on
// disk, counted as FsInfo counts it (allocated blocks, distinct inodes,
// never crossing into another filesystem such as the mounted rootfs).
// Mountpoint is the layer's directory, so that a caller can statfs the
// filesystem it lives on. It walks the layer on every call: a writable
// layer changes while its container runs.
func (s *Store) WritableLayerUsage(id ContainerID) (FsUsage, error) {
	c, err := s.s.Container(string(id))
	if err != nil {
		return FsUsage{}, mapErr(err, fmt.Sprintf("container %s", id))
	}
	dir := s.layerDir(c.LayerID)
	if dir == "" {
		return FsUsage{}, fmt.Errorf("container %s: the %s driver's layer layout is not known", id, s.driver)
	}
	u, err := walkUsage(dir, nil)
	if err != nil {
		return FsUsage{}, fmt.Errorf("container %s: %w", id, err)
	}
	return FsUsage{Mountpoint: dir, UsedBytes: u.bytes, InodesUsed: u.inodes, Timestamp: time.Now()}, nil
}
