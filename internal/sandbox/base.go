package sandbox

import (
	"context"
	"encoding/json"
	"errors"
	"fmt"
	"os"
	"path/filepath"
	"syscall"
	"time"

	specs "github.com/opencontainers/runtime-spec/specs-go"

	"github.com/noded-dev/noded/internal/admit"
	"github.com/noded-dev/noded/internal/cleanup"
	"github.com/noded-dev/noded/internal/errdefs"
	"github.com/noded-dev/noded/internal/ids"
	"github.com/noded-dev/noded/internal/kmutex"
	"github.com/noded-dev/noded/internal/log"
	"github.com/noded-dev/noded/internal/oci"
	"github.com/noded-dev/noded/internal/specgen"
	"github.com/noded-dev/noded/internal/storage"
)

// base is what the services share: their options (records, monitor,
// storage, host), the CRI name registry and the per-object locks, and the
// few operations more than one service performs (locking, admission, root
// filesystems, killing a container). It holds no state of its own beyond
// the names and locks.
type base struct {
	o     Options
	names *ids.Names
	locks kmutex.KeyedMutex[string]
}

// Failure injection points for rollback and crash tests: a hook named
// after a step returns an error to make the operation fail right after
// that step (or, in noded's failpoints build, kills noded there). Nil in
// production.
type failHook func(step string) error

// step marks the end of a step of a multi-step operation (every create,
// start, stop and remove): it is logged at debug level (with the logger's
// timestamps, a slow step shows) and is where tests inject failures. Step
// names are unique across operations, so that one name arms one point.
func (b *base) step(ctx context.Context, name string) error {
	log.FromContext(ctx).WithField("step", name).Debug("step done")
	if b.o.FailAfter == nil {
		return nil
	}
	return b.o.FailAfter(name)
}

func (b *base) lockPod(ctx context.Context, id ids.SandboxID) (func(), error) {
	return b.locks.Lock(ctx, "pod/"+string(id))
}

func (b *base) lockContainer(ctx context.Context, id ids.ContainerID) (func(), error) {
	return b.locks.Lock(ctx, "ctr/"+string(id))
}

// enter waits for a creation slot (see gate) and returns the function that
// gives it back.
func (b *base) enter(ctx context.Context, c admit.Class) (leave func(), err error) {
	if b.o.Starts == nil {
		return func() {}, nil
	}
	leave, err = b.o.Starts.Enter(ctx, c)
	if err != nil {
		return nil, fmt.Errorf("waiting for a creation slot: %w", err)
	}
	return leave, nil
}

func (b *base) podDir(id ids.SandboxID) string { return filepath.Join(b.o.PodsDir, string(id)) }

// netnsPath is where a pod's network namespace is pinned.
func (b *base) netnsPath(id ids.SandboxID) string { return filepath.Join(b.o.NetNSDir, string(id)) }

func (b *base) bundleDir(pod ids.SandboxID, ctr ids.ContainerID) string {
	return filepath.Join(b.podDir(pod), "containers", string(ctr))
}

// createRootfs makes and mounts a storage container on the image, ID-mapped
// to the pod's user namespace when it has one (userns non-nil).
func (b *base) createRootfs(id storage.ContainerID, image storage.ImageID, name string, userns *specgen.IDMappings, undo *cleanup.Stack) (string, error) {
	return b.mountStorageContainer("root filesystem", id, image, storage.CreateContainerOptions{Names: []string{name}}, userns, undo)
}

// mountStorageContainer makes a storage container (what names it in
// errors and undo steps), pushes its removal on undo and mounts it. In a
// pod with a user namespace its layers are ID-mapped to it, and the
// directories above the mount are made searchable by the pod's root.
func (b *base) mountStorageContainer(what string, id storage.ContainerID, image storage.ImageID, o storage.CreateContainerOptions, userns *specgen.IDMappings, undo *cleanup.Stack) (string, error) {
	if userns != nil {
		o.UIDMap, o.GIDMap = storageIDMaps(userns.UIDs), storageIDMaps(userns.GIDs)
	}
	if _, err := b.o.Rootfs.CreateContainer(id, image, o); err != nil {
		return "", fmt.Errorf("creating %s: %w", what, err)
	}
	undo.Push("delete "+what, func(context.Context) error { return b.removeRootfs(id) })
	path, err := b.o.Rootfs.Mount(id, "")
	if err != nil {
		return "", fmt.Errorf("mounting %s: %w", what, err)
	}
	if userns != nil {
		if err := traversable(path); err != nil {
			return "", fmt.Errorf("%s of a user namespace: %w", what, err)
		}
	}
	return path, nil
}

// removeRootfs unmounts and deletes a storage container; missing is fine.
func (b *base) removeRootfs(id storage.ContainerID) error {
	if err := b.o.Rootfs.Unmount(id, true); err != nil && !errdefs.IsNotFound(err) {
		return err
	}
	if err := b.o.Rootfs.DeleteContainer(id); err != nil && !errdefs.IsNotFound(err) {
		return err
	}
	return nil
}

// killWaitLimit bounds the wait for a SIGKILLed process to be reported
// gone; a process stuck in the kernel (D state) must not hang the RPC.
const killWaitLimit = 30 * time.Second

// killAndWait stops a container: sig first (when non-zero) with timeout to
// exit, then SIGKILL. A container that already exited is not an error.
func (b *base) killAndWait(ctx context.Context, pod oci.PodID, ctr oci.ContainerID, sig syscall.Signal, timeout time.Duration) error {
	if sig != 0 && timeout > 0 {
		if err := b.o.Monitor.Kill(ctx, pod, ctr, sig); err != nil {
			if isExited(err) {
				return nil
			}
			return err
		}
		wctx, cancel := context.WithTimeout(ctx, timeout)
		_, err := b.o.Monitor.Wait(wctx, pod, ctr)
		cancel()
		if err == nil {
			return nil
		}
		if ctx.Err() != nil {
			return ctx.Err()
		}
	}
	if err := b.o.Monitor.Kill(ctx, pod, ctr, syscall.SIGKILL); err != nil {
		if isExited(err) {
			return nil
		}
		return err
	}
	wctx, cancel := context.WithTimeout(ctx, killWaitLimit)
	defer cancel()
	if _, err := b.o.Monitor.Wait(wctx, pod, ctr); err != nil {
		return fmt.Errorf("waiting for %s to die after SIGKILL: %w", ctr, err)
	}
	return nil
}

// isExited reports the monitor's answer to signalling a container that is
// no longer running.
func isExited(err error) bool {
	return errors.Is(err, errdefs.ErrFailedPrecondition)
}

// forceDelete kills a container if it runs and deletes it from its monitor.
func (b *base) forceDelete(ctx context.Context, pod oci.PodID, ctr oci.ContainerID) error {
	if err := b.killAndWait(ctx, pod, ctr, 0, 0); err != nil && !errdefs.IsNotFound(err) {
		log.FromContext(ctx).WithError(err).WithField("container", ctr.Short()).Warn("killing before delete")
	}
	if err := b.o.Monitor.Delete(ctx, pod, ctr); err != nil && !errdefs.IsNotFound(err) {
		return err
	}
	return nil
}

func writeBundle(dir string, spec *specs.Spec) error {
	if err := os.MkdirAll(dir, 0o700); err != nil {
		return err
	}
	b, err := json.Marshal(spec)
	if err != nil {
		return err
	}
	return os.WriteFile(filepath.Join(dir, "config.json"), b, 0o600)
}
