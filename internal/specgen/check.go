package specgen

import (
	runtimeapi "k8s.io/cri-api/pkg/apis/runtime/v1"
)

// CheckContainerConfig makes the checks of Container.Generate that need
// neither the host nor the pod: mounts, the CDI device names, the seccomp
// profile's name and the resources. A caller refuses a bad request with
// it before it reserves a name or makes a root file system; Generate
// checks them all again.
func CheckContainerConfig(cfg *runtimeapi.ContainerConfig) error {
	for _, m := range cfg.GetMounts() {
		if _, _, err := checkMount(m); err != nil {
			return err
		}
		if _, err := mountOptions(m); err != nil {
			return err
		}
	}
	if _, err := requestedCDIDevices(cfg); err != nil {
		return err
	}
	sc := cfg.GetLinux().GetSecurityContext()
	if _, err := requestedSeccomp(sc.GetSeccomp(), sc.GetSeccompProfilePath(), sc.GetPrivileged(), false); err != nil { //nolint:staticcheck // deprecated field, old clients
		return err
	}
	return checkResources(cfg.GetLinux().GetResources())
}

// CheckSandboxConfig makes the checks of Sandbox.Generate that need no
// host, for a caller to refuse a pod before it makes its network: its
// sysctls against its namespaces.
func CheckSandboxConfig(cfg *runtimeapi.PodSandboxConfig) error {
	return checkSysctls(cfg.GetLinux().GetSysctls(), cfg.GetLinux().GetSecurityContext().GetNamespaceOptions())
}
