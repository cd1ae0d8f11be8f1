package nri

import (
	"errors"

	api "github.com/containerd/nri/pkg/api"
	nrigen "github.com/containerd/nri/pkg/runtime-tools/generate"
	specs "github.com/opencontainers/runtime-spec/specs-go"
	rtgen "github.com/opencontainers/runtime-tools/generate"
)

// cdiInjector applies CDI devices to a spec (internal/cdi's Registry, as
// specgen uses it for the kubelet's CDI devices).
type cdiInjector interface {
	Inject(spec *specs.Spec, devices []string) error
}

// adjust applies the plugins' merged adjustment to a container's spec in
// place, through the library's spec generator (over runtime-tools', the
// one containerd and CRI-O use): environment, arguments, annotations,
// mounts, devices and CDI devices, OCI hooks, resources, rlimits, seccomp,
// namespaces, sysctls, scheduling and I/O priority. Block I/O and RDT
// classes are ignored: noded configures neither (no class exists to name).
func adjust(spec *specs.Spec, a *api.ContainerAdjustment, cdi cdiInjector, swapAccounting bool) error {
	if a == nil {
		return nil
	}
	if spec.Process == nil {
		spec.Process = &specs.Process{}
	}
	if spec.Linux == nil {
		spec.Linux = &specs.Linux{}
	}
	g := rtgen.NewFromSpec(spec)
	opts := []nrigen.GeneratorOption{
		nrigen.WithCDIDeviceInjector(func(s *specs.Spec, names []string) error {
			if cdi == nil {
				return errors.New("CDI devices are asked for, but noded has no CDI spec directories (cdi-spec-dirs)")
			}
			return cdi.Inject(s, names)
		}),
		nrigen.WithResourceChecker(func(r *specs.LinuxResources) error {
			// The generator sets memory+swap with a memory limit, as
			// specgen does; without swap accounting the cgroup has no
			// file for it, and specgen leaves it out too.
			if !swapAccounting && r != nil && r.Memory != nil {
				r.Memory.Swap = nil
			}
			return nil
		}),
	}
	return nrigen.SpecGenerator(&g, opts...).Adjust(a)
}
