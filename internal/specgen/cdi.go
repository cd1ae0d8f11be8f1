package specgen

import (
	"slices"

	specs "github.com/opencontainers/runtime-spec/specs-go"
	runtimeapi "k8s.io/cri-api/pkg/apis/runtime/v1"

	"github.com/noded-dev/noded/internal/cdi"
	"github.com/noded-dev/noded/internal/errdefs"
)

// CDIInjector applies the edits of CDI devices to a spec (internal/cdi's
// Registry). Errors carry an errdefs class: InvalidArgument for a device
// no CDI spec defines.
type CDIInjector interface {
	Inject(spec *specs.Spec, devices []string) error
}

// cdiDevices applies the CDI devices the container asks for. It runs once
// the process, its user, the mounts, the devices and their cgroup rules
// are in the spec: CDI adds to each of them (and may give a device node
// the process's owner), as in containerd and CRI-O.
func (in *Container) cdiDevices(res *Result) error {
	names, err := requestedCDIDevices(in.Config)
	if err != nil || len(names) == 0 {
		return err
	}
	if in.Node.CDI == nil {
		return errdefs.InvalidArgument("CDI devices %q are requested, but noded has no CDI spec directories (cdi-spec-dirs)", names)
	}
	return in.Node.CDI.Inject(res.Spec, names)
}

// requestedCDIDevices lists the CDI devices of a request: CDI_devices (the
// kubelet's, for device plugins and DRA drivers that return CDI names),
// then those of cdi.k8s.io/ annotations (older device plugins), each once,
// every name checked.
func requestedCDIDevices(cfg *runtimeapi.ContainerConfig) ([]string, error) {
	var names []string
	for _, d := range cfg.GetCDIDevices() {
		names = append(names, d.GetName())
	}
	annotated, err := cdi.DevicesFromAnnotations(cfg.GetAnnotations())
	if err != nil {
		return nil, err
	}
	var out []string
	for _, n := range append(names, annotated...) {
		if err := cdi.CheckName(n); err != nil {
			return nil, err
		}
		if !slices.Contains(out, n) {
			out = append(out, n)
		}
	}
	return out, nil
}
