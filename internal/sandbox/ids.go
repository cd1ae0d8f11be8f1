package sandbox

import (
	"github.com/noded-dev/noded/internal/errdefs"
	"github.com/noded-dev/noded/internal/ids"
	"github.com/noded-dev/noded/internal/state"
)

// IDs turns what a client sent (a full ID, or a unique prefix as crictl
// users type them) into a typed ID. internal/cri calls it once per
// request, at the edge; the services only ever see resolved IDs.
type IDs struct {
	store *state.Store
}

// ResolveSandbox finds a pod by full ID or unique prefix; NotFound if none.
func (r *IDs) ResolveSandbox(ref string) (ids.SandboxID, error) {
	return resolveID(ref, "pod sandbox", r.store.HasSandbox, r.store.SandboxIDs)
}

// ResolveContainer finds a container by full ID or unique prefix.
func (r *IDs) ResolveContainer(ref string) (ids.ContainerID, error) {
	return resolveID(ref, "container", r.store.HasContainer, r.store.ContainerIDs)
}

// resolveID finds an object by full ID (the kubelet's case, answered
// without listing) or by unique prefix.
func resolveID[T ~string](ref, kind string, exists func(T) bool, all func() []T) (T, error) {
	if exists(T(ref)) {
		return T(ref), nil
	}
	id, err := ids.Resolve(ref, all())
	if errdefs.IsNotFound(err) {
		return id, errdefs.NotFound("%s %q not found", kind, ref)
	}
	return id, err
}
