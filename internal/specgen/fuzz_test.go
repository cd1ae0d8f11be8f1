package specgen

import (
	"errors"
	"path"
	"strings"
	"testing"

	"google.golang.org/protobuf/proto"
	runtimeapi "k8s.io/cri-api/pkg/apis/runtime/v1"

	"github.com/noded-dev/noded/internal/errdefs"
)

// FuzzContainerSpec generates specs from arbitrary CRI container configs
// (the protobuf a kubelet, or anyone with the socket, can send). It must
// never panic; a config it refuses is refused with a client's error
// class (InvalidArgument, FailedPrecondition, NotFound), never an
// unclassified one; and a spec it makes mounts nothing at a relative or
// unclean path and runs a command.
func FuzzContainerSpec(f *testing.F) {
	seeds := []*runtimeapi.ContainerConfig{
		{Metadata: &runtimeapi.ContainerMetadata{Name: "app"}, Command: []string{"/bin/app"}},
		{Metadata: &runtimeapi.ContainerMetadata{Name: "m"}, Args: []string{"x"}, Mounts: []*runtimeapi.Mount{
			{ContainerPath: "/data/../../etc", HostPath: "/tmp"},
			{ContainerPath: "rel", HostPath: "/tmp"},
			{ContainerPath: "/x", HostPath: "relative/src", Propagation: runtimeapi.MountPropagation_PROPAGATION_BIDIRECTIONAL},
		}},
		{Metadata: &runtimeapi.ContainerMetadata{Name: "r"}, Command: []string{"sh"}, Linux: &runtimeapi.LinuxContainerConfig{
			Resources: &runtimeapi.LinuxContainerResources{CpuShares: -5, MemoryLimitInBytes: -1, CpuQuota: 1 << 62, OomScoreAdj: 5000},
			SecurityContext: &runtimeapi.LinuxContainerSecurityContext{
				Capabilities:       &runtimeapi.Capability{AddCapabilities: []string{"ALL", "CAP_BOGUS"}},
				RunAsUser:          &runtimeapi.Int64Value{Value: -1},
				MaskedPaths:        []string{"relative", "/proc/../x"},
				Seccomp:            &runtimeapi.SecurityProfile{ProfileType: runtimeapi.SecurityProfile_Localhost, LocalhostRef: "../../etc/shadow"},
				SupplementalGroups: []int64{-3},
			},
		}},
		{Metadata: &runtimeapi.ContainerMetadata{Name: "d"}, Command: []string{"sh"}, Devices: []*runtimeapi.Device{
			{ContainerPath: "dev/x", HostPath: "/dev/null", Permissions: "rwmz"},
		}, Envs: []*runtimeapi.KeyValue{{Key: "A=B", Value: []byte("c")}}, WorkingDir: "relative"},
	}
	for _, s := range seeds {
		b, err := proto.Marshal(s)
		if err != nil {
			f.Fatal(err)
		}
		f.Add(b)
	}
	f.Fuzz(func(t *testing.T, b []byte) {
		cfg := &runtimeapi.ContainerConfig{}
		if err := proto.Unmarshal(b, cfg); err != nil {
			return
		}
		in := testContainer(t)
		in.Config = cfg
		res, err := in.Generate()
		if err != nil {
			for _, class := range []error{errdefs.ErrInvalidArgument, errdefs.ErrFailedPrecondition, errdefs.ErrNotFound} {
				if errors.Is(err, class) {
					return
				}
			}
			t.Fatalf("refused without a client's error class: %v", err)
		}
		s := res.Spec
		if s.Process == nil || len(s.Process.Args) == 0 {
			t.Fatalf("a spec without a command: %+v", s.Process)
		}
		for _, m := range s.Mounts {
			if !path.IsAbs(m.Destination) || path.Clean(m.Destination) != m.Destination || strings.Contains(m.Destination, "/../") {
				t.Fatalf("mount at %q", m.Destination)
			}
		}
	})
}
