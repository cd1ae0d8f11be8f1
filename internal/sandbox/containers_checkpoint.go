package sandbox

import (
	"context"
	"errors"
	"os"
	"path/filepath"
	"time"

	runtimeapi "k8s.io/cri-api/pkg/apis/runtime/v1"

	"github.com/noded-dev/noded/internal/checkpoint"
	"github.com/noded-dev/noded/internal/errdefs"
	"github.com/noded-dev/noded/internal/ids"
	"github.com/noded-dev/noded/internal/log"
	"github.com/noded-dev/noded/internal/oci"
	"github.com/noded-dev/noded/internal/state"
)

// checkpointer dumps a running container into an archive, or a pod's
// containers into a directory of archives (checkpoint.Service).
type checkpointer interface {
	Checkpoint(ctx context.Context, r checkpoint.Request) error
	CheckpointPod(ctx context.Context, r checkpoint.PodRequest) error
}

// restoreDir is where a container created from a checkpoint keeps the
// archive's contents until its start restored it: <bundle>/restore, with
// CRIU's images in checkpoint/ and CRIU's work files in work/.
func restoreDir(bundle string) string { return filepath.Join(bundle, "restore") }

// CheckpointContainer writes a checkpoint archive of a running container
// at location and leaves the container running (CRI
// CheckpointContainer). A timeout above zero bounds the whole call.
func (s *Containers) CheckpointContainer(ctx context.Context, id ids.ContainerID, location string, timeout time.Duration) error {
	if s.o.Checkpoints == nil {
		return errdefs.NotImplemented("checkpoints are not enabled")
	}
	if err := checkpoint.CheckLocation(location); err != nil {
		return err
	}
	if timeout > 0 {
		var cancel context.CancelFunc
		ctx, cancel = context.WithTimeout(ctx, timeout)
		defer cancel()
	}
	c, unlock, err := s.lockedExisting(ctx, id)
	if err != nil {
		return err
	}
	defer unlock()
	if c.State != state.ContainerRunning {
		return errdefs.FailedPrecondition("container %s is %s, not running", c.ID.Short(), c.State)
	}
	ctx = log.WithContext(ctx, log.FromContext(ctx).WithField("container", c.ID.Short()))
	return s.o.Checkpoints.Checkpoint(ctx, checkpoint.Request{Container: c, Location: location})
}

// fromCheckpoint is the config of a CreateContainer whose image names a
// checkpoint archive (checkpoint.IsArchiveRef, CRI-O's convention): the
// request's, with the checkpointed container's image and process
// (checkpoint.Archive.ContainerConfig), and the opened archive. Any other
// request is returned as it is, with a nil archive.
func (s *Containers) fromCheckpoint(cfg *runtimeapi.ContainerConfig) (*runtimeapi.ContainerConfig, *checkpoint.Archive, error) {
	if !checkpoint.IsArchiveRef(cfg.GetImage().GetImage()) {
		return cfg, nil, nil
	}
	if s.o.Checkpoints == nil {
		return nil, nil, errdefs.InvalidArgument("image %q is a path, and restoring checkpoints is not enabled", cfg.GetImage().GetImage())
	}
	a, err := checkpoint.Open(cfg.GetImage().GetImage())
	if err != nil {
		return nil, nil, err
	}
	return a.ContainerConfig(cfg), a, nil
}

// unpackCheckpoint extracts a restore's archive into the new container's
// bundle and applies its writable layer's changes to the root file system
// at rootPath, and tells the monitor to restore rather than start
// (req.Restore). The bundle's removal undoes the extraction, the root
// file system's the changes.
func unpackCheckpoint(ctx context.Context, a *checkpoint.Archive, req *oci.CreateRequest, rootPath string) error {
	if a == nil {
		return nil
	}
	dir := restoreDir(req.Bundle)
	if err := a.Unpack(dir, rootPath); err != nil {
		return err
	}
	req.Restore = filepath.Join(dir, checkpoint.ImagesDir)
	req.RestoreWork = filepath.Join(dir, "work")
	log.FromContext(ctx).WithField("archive", a.Path).Info("container created from a checkpoint")
	return nil
}

// restored drops a restored container's CRIU images: its start used them.
func restored(ctx context.Context, bundle string) {
	dir := restoreDir(bundle)
	if err := os.RemoveAll(filepath.Join(dir, checkpoint.ImagesDir)); err != nil && !errors.Is(err, os.ErrNotExist) {
		log.FromContext(ctx).WithError(err).Warn("removing the images of a restore")
	}
}
