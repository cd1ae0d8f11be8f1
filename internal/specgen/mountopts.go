package specgen

import (
	"slices"

	runtimeapi "k8s.io/cri-api/pkg/apis/runtime/v1"

	"github.com/noded-dev/noded/internal/errdefs"
)

// bindMountOptions are the options Mount.mount_options may ask for
// (cri-api v0.37, KEP-5855): restrictions on the bind mount, which the
// CRI names (noexec, nodev, nosuid) and noded advertises with the
// mount_options runtime feature. Anything else is refused rather than
// passed to runc: an option that loosens a mount ("suid", "dev") or
// changes what is mounted ("bind", "ro", a file system option) would
// undo a decision the request made in its other fields.
var bindMountOptions = []string{"nosuid", "nodev", "noexec"}

// mountOptions checks a mount's mount_options and returns them each once,
// in the request's order.
func mountOptions(m *runtimeapi.Mount) ([]string, error) {
	var out []string
	for _, o := range m.GetMountOptions() {
		if !slices.Contains(bindMountOptions, o) {
			return nil, errdefs.InvalidArgument("mount at %q: mount option %q is not supported (want one of %q)", m.GetContainerPath(), o, bindMountOptions)
		}
		if !slices.Contains(out, o) {
			out = append(out, o)
		}
	}
	return out, nil
}

// withOptions appends to opts those of extra it does not have yet.
func withOptions(opts []string, extra ...string) []string {
	for _, o := range extra {
		if !slices.Contains(opts, o) {
			opts = append(opts, o)
		}
	}
	return opts
}
