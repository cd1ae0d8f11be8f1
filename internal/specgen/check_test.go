package specgen

import (
	"testing"

	runtimeapi "k8s.io/cri-api/pkg/apis/runtime/v1"

	"github.com/noded-dev/noded/internal/errdefs"
)

func TestCheckContainerConfig(t *testing.T) {
	sc := func(s *runtimeapi.LinuxContainerSecurityContext) *runtimeapi.LinuxContainerConfig {
		return &runtimeapi.LinuxContainerConfig{SecurityContext: s}
	}
	localhost := func(ref string) *runtimeapi.SecurityProfile {
		return &runtimeapi.SecurityProfile{ProfileType: runtimeapi.SecurityProfile_Localhost, LocalhostRef: ref}
	}
	for _, tc := range []struct {
		desc    string
		cfg     *runtimeapi.ContainerConfig
		wantErr error
	}{
		{desc: "nothing asked", cfg: &runtimeapi.ContainerConfig{}},
		{desc: "a mount", cfg: &runtimeapi.ContainerConfig{Mounts: []*runtimeapi.Mount{{ContainerPath: "/d", HostPath: "/srv/d"}}}},
		// A missing profile is the host's business: Generate finds it.
		{desc: "a localhost profile", cfg: &runtimeapi.ContainerConfig{Linux: sc(&runtimeapi.LinuxContainerSecurityContext{Seccomp: localhost("/none.json")})}},
		{desc: "relative mount source", cfg: &runtimeapi.ContainerConfig{Mounts: []*runtimeapi.Mount{{ContainerPath: "/d", HostPath: "d"}}},
			wantErr: errdefs.ErrInvalidArgument},
		{desc: "mount destination with ..", cfg: &runtimeapi.ContainerConfig{Mounts: []*runtimeapi.Mount{{ContainerPath: "/d/../../etc", HostPath: "/srv/d"}}},
			wantErr: errdefs.ErrInvalidArgument},
		{desc: "unknown propagation", cfg: &runtimeapi.ContainerConfig{Mounts: []*runtimeapi.Mount{{ContainerPath: "/d", HostPath: "/srv/d", Propagation: 9}}},
			wantErr: errdefs.ErrInvalidArgument},
		{desc: "localhost profile with ..", cfg: &runtimeapi.ContainerConfig{Linux: sc(&runtimeapi.LinuxContainerSecurityContext{Seccomp: localhost("/var/lib/kubelet/seccomp/../../../etc/shadow")})},
			wantErr: errdefs.ErrInvalidArgument},
		{desc: "deprecated relative localhost profile", cfg: &runtimeapi.ContainerConfig{Linux: sc(&runtimeapi.LinuxContainerSecurityContext{SeccompProfilePath: "localhost/p.json"})}, //nolint:staticcheck // old clients still send it
			wantErr: errdefs.ErrInvalidArgument},
		{desc: "a privileged container's profile is ignored", cfg: &runtimeapi.ContainerConfig{Linux: sc(&runtimeapi.LinuxContainerSecurityContext{Privileged: true, Seccomp: localhost("p.json")})}},
		{desc: "negative cpu shares", cfg: &runtimeapi.ContainerConfig{Linux: &runtimeapi.LinuxContainerConfig{Resources: &runtimeapi.LinuxContainerResources{CpuShares: -1}}},
			wantErr: errdefs.ErrInvalidArgument},
	} {
		t.Run(tc.desc, func(t *testing.T) {
			checkErr(t, CheckContainerConfig(tc.cfg), tc.wantErr)
		})
	}
}

func TestCheckSandboxConfig(t *testing.T) {
	pod := func(net runtimeapi.NamespaceMode, sysctls map[string]string) *runtimeapi.PodSandboxConfig {
		return &runtimeapi.PodSandboxConfig{Linux: &runtimeapi.LinuxPodSandboxConfig{
			Sysctls:         sysctls,
			SecurityContext: &runtimeapi.LinuxSandboxSecurityContext{NamespaceOptions: &runtimeapi.NamespaceOption{Network: net}},
		}}
	}
	for _, tc := range []struct {
		desc    string
		cfg     *runtimeapi.PodSandboxConfig
		wantErr error
	}{
		{desc: "no config", cfg: nil},
		{desc: "network sysctl of the pod's own network", cfg: pod(runtimeapi.NamespaceMode_POD, map[string]string{"net.ipv4.ip_forward": "1"})},
		{desc: "network sysctl on the host's network", cfg: pod(runtimeapi.NamespaceMode_NODE, map[string]string{"net.core.somaxconn": "1024"}),
			wantErr: errdefs.ErrInvalidArgument},
		{desc: "a sysctl of no namespace", cfg: pod(runtimeapi.NamespaceMode_POD, map[string]string{"vm.overcommit_memory": "1"}),
			wantErr: errdefs.ErrInvalidArgument},
	} {
		t.Run(tc.desc, func(t *testing.T) {
			checkErr(t, CheckSandboxConfig(tc.cfg), tc.wantErr)
		})
	}
}
