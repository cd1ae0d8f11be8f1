package specgen

import (
	"testing"

	specs "github.com/opencontainers/runtime-spec/specs-go"
	runtimeapi "k8s.io/cri-api/pkg/apis/runtime/v1"

	"github.com/noded-dev/noded/internal/errdefs"
)

func TestDevices(t *testing.T) {
	deny := specs.LinuxDeviceCgroup{Allow: false, Access: "rwm"}
	allowDev := func(major, minor int64, access string) specs.LinuxDeviceCgroup {
		return specs.LinuxDeviceCgroup{Allow: true, Type: "c", Major: &major, Minor: &minor, Access: access}
	}
	for _, tc := range []struct {
		desc       string
		reqs       []*runtimeapi.Device
		privileged bool
		wantNodes  []specs.LinuxDevice
		wantRules  []specs.LinuxDeviceCgroup
		wantErr    error
	}{
		{desc: "none: deny all", wantRules: []specs.LinuxDeviceCgroup{deny}},
		{desc: "one device at another path",
			reqs:      []*runtimeapi.Device{{HostPath: "/dev/fuse", ContainerPath: "/dev/myfuse", Permissions: "rw"}},
			wantNodes: []specs.LinuxDevice{charDev("/dev/myfuse", 10, 229)},
			wantRules: []specs.LinuxDeviceCgroup{deny, allowDev(10, 229, "rw")}},
		{desc: "container path defaults to host path, permissions to rwm",
			reqs:      []*runtimeapi.Device{{HostPath: "/dev/fuse"}},
			wantNodes: []specs.LinuxDevice{charDev("/dev/fuse", 10, 229)},
			wantRules: []specs.LinuxDeviceCgroup{deny, allowDev(10, 229, "rwm")}},
		{desc: "a directory gives every node under it",
			reqs:      []*runtimeapi.Device{{HostPath: "/dev/snd", ContainerPath: "/dev/snd", Permissions: "mrw"}},
			wantNodes: []specs.LinuxDevice{charDev("/dev/snd/controlC0", 116, 0), charDev("/dev/snd/pcmC0D0p", 116, 16)},
			wantRules: []specs.LinuxDeviceCgroup{deny, allowDev(116, 0, "mrw"), allowDev(116, 16, "mrw")}},
		{desc: "privileged gets every host device, requested ones keep their place",
			privileged: true,
			reqs:       []*runtimeapi.Device{{HostPath: "/dev/fuse", Permissions: "r"}},
			wantNodes:  []specs.LinuxDevice{charDev("/dev/fuse", 10, 229), charDev("/dev/null", 1, 3), charDev("/dev/snd/controlC0", 116, 0)},
			wantRules:  []specs.LinuxDeviceCgroup{{Allow: true, Access: "rwm"}}},
		{desc: "missing device", reqs: []*runtimeapi.Device{{HostPath: "/dev/none"}}, wantErr: errdefs.ErrFailedPrecondition},
		{desc: "bad permissions", reqs: []*runtimeapi.Device{{HostPath: "/dev/fuse", Permissions: "rx"}}, wantErr: errdefs.ErrInvalidArgument},
		{desc: "repeated permission", reqs: []*runtimeapi.Device{{HostPath: "/dev/fuse", Permissions: "rr"}}, wantErr: errdefs.ErrInvalidArgument},
		{desc: "relative host path", reqs: []*runtimeapi.Device{{HostPath: "dev/fuse"}}, wantErr: errdefs.ErrInvalidArgument},
		{desc: "relative container path", reqs: []*runtimeapi.Device{{HostPath: "/dev/fuse", ContainerPath: "fuse"}}, wantErr: errdefs.ErrInvalidArgument},
	} {
		t.Run(tc.desc, func(t *testing.T) {
			nodes, rules, err := devices(tc.reqs, tc.privileged, newFakeFS())
			if checkErr(t, err, tc.wantErr) {
				assertEqual(t, "nodes", nodes, tc.wantNodes)
				assertEqual(t, "rules", rules, tc.wantRules)
			}
		})
	}
}
