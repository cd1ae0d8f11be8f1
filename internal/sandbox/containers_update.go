package sandbox

import (
	"context"
	"encoding/json"
	"errors"
	"fmt"
	"os"
	"path/filepath"

	specs "github.com/opencontainers/runtime-spec/specs-go"
	runtimeapi "k8s.io/cri-api/pkg/apis/runtime/v1"

	"github.com/noded-dev/noded/internal/atomicfile"
	"github.com/noded-dev/noded/internal/cleanup"
	"github.com/noded-dev/noded/internal/errdefs"
	"github.com/noded-dev/noded/internal/ids"
	"github.com/noded-dev/noded/internal/log"
	"github.com/noded-dev/noded/internal/oci"
	"github.com/noded-dev/noded/internal/resize"
	"github.com/noded-dev/noded/internal/state"
)

// UpdateContainerResources resizes a container in place: the request's
// limits are merged into the bundle's linux.resources (internal/resize),
// the bundle is rewritten, the pod's monitor applies it to the
// container's cgroups and libcontainer state (runc update), and the
// record gets the new values, which ContainerStatus reports. It returns
// once the cgroup files hold them. A lowered memory limit below the
// container's usage fails with FailedPrecondition and changes nothing;
// any failure puts the bundle (and, if they were written, the cgroups)
// back as they were.
//
// As containerd does, the bundle is written first and the record last: a
// noded killed in between leaves the record, and so ContainerStatus, with
// the old values, and the kubelet, which compares them with what it asked
// for, asks again. A container that is not running (exited, or exiting
// meanwhile) gets the new values in its bundle and record only, as
// containerd updates only the spec of a container without a task.
//
// The NRI plugins may change the request first (UpdateContainer) and are
// told of the result (PostUpdateContainer).
func (s *Containers) UpdateContainerResources(ctx context.Context, id ids.ContainerID, r *runtimeapi.LinuxContainerResources) error {
	return s.updateResources(ctx, id, r, true)
}

// updateResources is UpdateContainerResources; withNRI asks the plugins
// (not for an update a plugin asked for itself).
func (s *Containers) updateResources(ctx context.Context, id ids.ContainerID, r *runtimeapi.LinuxContainerResources, withNRI bool) (retErr error) {
	if err := resize.Check(r); err != nil {
		return err
	}
	c, unlock, err := s.lockedExisting(ctx, id)
	if err != nil {
		return err
	}
	defer unlock()
	var pod *state.Sandbox
	if withNRI {
		if pod, err = s.o.Store.Sandbox(c.SandboxID); err != nil {
			return err
		}
		if r, err = s.o.NRI.UpdateContainer(ctx, pod, c, r); err != nil {
			return err
		}
		if err := resize.Check(r); err != nil {
			return err
		}
	}
	spec, err := readBundle(c.Bundle)
	if err != nil {
		return fmt.Errorf("container %s: %w", id.Short(), err)
	}
	if spec.Linux == nil {
		spec.Linux = &specs.Linux{}
	}
	old := spec.Linux.Resources
	next, err := resize.Merge(old, r, &s.o.Node)
	if err != nil {
		return err
	}
	lg := log.FromContext(ctx).WithField("container", id.Short())
	var undo cleanup.Stack
	defer func() { undo.RunIf(ctx, &retErr, lg) }()

	spec.Linux.Resources = next
	if err := writeBundleFile(c.Bundle, spec); err != nil {
		return err
	}
	applied := false
	undo.Push("restore previous resources", func(ctx context.Context) error {
		spec.Linux.Resources = old
		if err := writeBundleFile(c.Bundle, spec); err != nil {
			return err
		}
		if !applied {
			return nil
		}
		return s.o.Monitor.Update(ctx, c.SandboxID, c.ID)
	})
	if err := s.step(ctx, "update-bundle"); err != nil {
		return err
	}
	if applied, err = s.applyResources(ctx, c); err != nil {
		return err
	}
	if err := s.step(ctx, "update-apply"); err != nil {
		return err
	}
	if _, err := s.o.Store.UpdateContainer(c.ID, func(rec *state.Container) error {
		rec.Resources = resize.Recorded(next)
		return nil
	}); err != nil {
		return err
	}
	undo.Release()
	lg.WithField("applied", applied).Info("container resources updated")
	if withNRI {
		s.nriContainer(ctx, c.ID, s.o.NRI.PostUpdateContainer)
	}
	return nil
}

// applyResources has the monitor apply the bundle's resources to a
// created or running container; it reports whether it did. An exited
// container is left alone, and so is one the monitor finds exited
// meanwhile.
func (s *Containers) applyResources(ctx context.Context, c *state.Container) (bool, error) {
	if c.State == state.ContainerExited {
		return false, nil
	}
	err := s.o.Monitor.Update(ctx, c.SandboxID, c.ID)
	if err == nil {
		return true, nil
	}
	if errors.Is(err, errdefs.ErrFailedPrecondition) {
		if st, serr := s.o.Monitor.State(ctx, c.SandboxID, c.ID); serr == nil && st.Status == oci.StatusExited {
			return false, nil
		}
	}
	return false, fmt.Errorf("updating the resources of %s: %w", c.ID.Short(), err)
}

// resourcesStatus is ContainerStatus.resources: the record's resources,
// or for a record written before noded kept them, its bundle's.
func resourcesStatus(c *state.Container) *runtimeapi.ContainerResources {
	if c.Resources != nil {
		return resize.CRI(c.Resources, c.OOMScoreAdj)
	}
	spec, err := readBundle(c.Bundle)
	if err != nil || spec.Linux == nil {
		return nil
	}
	var oom *int
	if spec.Process != nil {
		oom = spec.Process.OOMScoreAdj
	}
	return resize.CRI(spec.Linux.Resources, oom)
}

// readBundle reads a bundle's config.json.
func readBundle(dir string) (*specs.Spec, error) {
	b, err := os.ReadFile(filepath.Join(dir, "config.json"))
	if err != nil {
		return nil, fmt.Errorf("reading the bundle: %w", err)
	}
	var spec specs.Spec
	if err := json.Unmarshal(b, &spec); err != nil {
		return nil, fmt.Errorf("bundle config.json: %w", err)
	}
	return &spec, nil
}

// writeBundleFile replaces a bundle's config.json atomically (temporary
// file, fsync, rename): a kill leaves the old spec or the new one, never a
// torn one that neither the monitor nor a recovery could read.
func writeBundleFile(dir string, spec *specs.Spec) error {
	b, err := json.Marshal(spec)
	if err != nil {
		return err
	}
	return atomicfile.WriteFile(filepath.Join(dir, "config.json"), b, 0o600)
}
