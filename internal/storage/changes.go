package storage

import (
	"fmt"

	"go.podman.io/storage/pkg/archive"
)

// Changes lists what the container's writable layer adds, changes and
// deletes against its image (a checkpoint's rootfs-diff.tar and
// deleted.files; internal/checkpoint). The overlay driver reads them from
// the layer's upper directory, without comparing file trees.
func (s *ContainerStore) Changes(id ContainerID) ([]archive.Change, error) {
	c, err := s.s.Container(string(id))
	if err != nil {
		return nil, mapErr(err, fmt.Sprintf("container %s", id))
	}
	changes, err := s.s.Changes("", c.LayerID)
	if err != nil {
		return nil, fmt.Errorf("changes of container %s: %w", id, err)
	}
	return changes, nil
}
