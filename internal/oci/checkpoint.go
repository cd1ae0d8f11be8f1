package oci

import (
	"context"
	"path/filepath"
	"strings"

	"github.com/noded-dev/noded/internal/errdefs"
	"github.com/noded-dev/noded/internal/oci/wire"
)

// CheckpointOptions say where a checkpoint goes and what becomes of the
// container.
type CheckpointOptions struct {
	// Dir receives CRIU's image files; WorkDir its log (dump.log).
	// Both absolute; Dir must not exist or be empty.
	Dir, WorkDir string
	// Exit ends the container once it is dumped (CRIU kills it; the
	// exit is recorded as any other). Otherwise it keeps running.
	Exit bool
}

// Checkpoint dumps a running container with CRIU through its monitor.
// FailedPrecondition when it is not running, has a terminal, or its
// monitor predates checkpoints.
func (r *Runtime) Checkpoint(ctx context.Context, pod PodID, id ContainerID, o CheckpointOptions) error {
	if err := checkIDs(pod, id); err != nil {
		return err
	}
	if !filepath.IsAbs(o.Dir) || !filepath.IsAbs(o.WorkDir) {
		return errdefs.InvalidArgument("checkpoint directories must be absolute paths")
	}
	_, err := r.call(ctx, pod, &wire.Request{Op: wire.OpCheckpoint, Container: string(id),
		Dir: o.Dir, WorkDir: o.WorkDir, Exit: o.Exit, CriuPath: r.o.CriuPath})
	if errdefs.IsInvalidArgument(err) && strings.Contains(err.Error(), "unknown operation") {
		return errdefs.FailedPrecondition("the monitor of pod %s predates checkpoints (an older noded started it): recreate the pod to checkpoint its containers", pod.Short())
	}
	return err
}

// criuPath is the criu binary a create passes on: only a restore needs
// one.
func (r *Runtime) criuPath(restore string) string {
	if restore == "" {
		return ""
	}
	return r.o.CriuPath
}

// Pause freezes a running container's processes (a pod checkpoint's
// consistent cut); Resume thaws them, and is no error for a container
// that runs unfrozen.
func (r *Runtime) Pause(ctx context.Context, pod PodID, id ContainerID) error {
	return r.freeze(ctx, pod, id, wire.OpPause)
}

// Resume thaws a container Pause froze.
func (r *Runtime) Resume(ctx context.Context, pod PodID, id ContainerID) error {
	return r.freeze(ctx, pod, id, wire.OpResume)
}

func (r *Runtime) freeze(ctx context.Context, pod PodID, id ContainerID, op string) error {
	if err := checkIDs(pod, id); err != nil {
		return err
	}
	_, err := r.call(ctx, pod, &wire.Request{Op: op, Container: string(id)})
	if errdefs.IsInvalidArgument(err) && strings.Contains(err.Error(), "unknown operation") {
		return errdefs.FailedPrecondition("the monitor of pod %s predates checkpoints (an older noded started it): recreate the pod to checkpoint it", pod.Short())
	}
	return err
}
