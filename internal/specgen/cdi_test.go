package specgen

import (
	"errors"
	"slices"
	"testing"

	specs "github.com/opencontainers/runtime-spec/specs-go"
	runtimeapi "k8s.io/cri-api/pkg/apis/runtime/v1"

	"github.com/noded-dev/noded/internal/errdefs"
)

// fakeCDI knows one device, vendor.example/dev=a, which adds a device node
// and a variable; it records what it was asked for and what the spec held
// by then.
type fakeCDI struct {
	asked []string
	// sawUser and sawRules are the spec's process user and device rules
	// at injection time.
	sawUser  specs.User
	sawRules int
}

func (f *fakeCDI) Inject(spec *specs.Spec, devices []string) error {
	f.asked = devices
	f.sawUser, f.sawRules = spec.Process.User, len(spec.Linux.Resources.Devices)
	for _, d := range devices {
		if d != "vendor.example/dev=a" {
			return errdefs.InvalidArgument("unknown CDI device %q", d)
		}
	}
	spec.Linux.Devices = append(spec.Linux.Devices, specs.LinuxDevice{Path: "/dev/cdi-a", Type: "c", Major: 1, Minor: 3})
	spec.Process.Env = append(spec.Process.Env, "CDI_A=1")
	return nil
}

func TestCDIDevices(t *testing.T) {
	for _, tc := range []struct {
		desc        string
		devices     []string
		annotations map[string]string
		noCDI       bool
		wantAsked   []string
		wantErr     error
	}{
		{desc: "none asked for: CDI not consulted"},
		{desc: "CDI_devices", devices: []string{"vendor.example/dev=a"}, wantAsked: []string{"vendor.example/dev=a"}},
		{desc: "annotations, once with CDI_devices", devices: []string{"vendor.example/dev=a"},
			annotations: map[string]string{"cdi.k8s.io/vendor.example_a": "vendor.example/dev=a"},
			wantAsked:   []string{"vendor.example/dev=a"}},
		{desc: "an unknown device", devices: []string{"vendor.example/dev=b"}, wantAsked: []string{"vendor.example/dev=b"}, wantErr: errdefs.ErrInvalidArgument},
		{desc: "a malformed name is refused before CDI", devices: []string{"gpu0"}, wantErr: errdefs.ErrInvalidArgument},
		{desc: "a malformed annotation", annotations: map[string]string{"cdi.k8s.io/x_y": "gpu0"}, wantErr: errdefs.ErrInvalidArgument},
		{desc: "CDI off", devices: []string{"vendor.example/dev=a"}, noCDI: true, wantErr: errdefs.ErrInvalidArgument},
	} {
		t.Run(tc.desc, func(t *testing.T) {
			c := testContainer(t)
			for _, d := range tc.devices {
				c.Config.CDIDevices = append(c.Config.CDIDevices, &runtimeapi.CDIDevice{Name: d})
			}
			c.Config.Annotations = tc.annotations
			c.Config.Linux.SecurityContext.RunAsUser = &runtimeapi.Int64Value{Value: 1000}
			c.Config.Devices = []*runtimeapi.Device{{HostPath: "/dev/fuse"}}
			f := &fakeCDI{}
			if !tc.noCDI {
				c.Node.CDI = f
			}
			if err := CheckContainerConfig(c.Config); err != nil && !errors.Is(err, tc.wantErr) {
				t.Fatalf("CheckContainerConfig: %v", err)
			}
			res, err := c.Generate()
			assertEqual(t, "asked", f.asked, tc.wantAsked)
			if !checkErr(t, err, tc.wantErr) || len(tc.wantAsked) == 0 {
				return
			}
			if f.sawUser.UID != 1000 || f.sawRules < 2 {
				t.Errorf("CDI ran before the user (%+v) or the device rules (%d)", f.sawUser, f.sawRules)
			}
			if !slices.Contains(res.Spec.Process.Env, "CDI_A=1") || !slices.ContainsFunc(res.Spec.Linux.Devices, func(d specs.LinuxDevice) bool { return d.Path == "/dev/cdi-a" }) {
				t.Errorf("the edits are not in the spec: env %v devices %+v", res.Spec.Process.Env, res.Spec.Linux.Devices)
			}
		})
	}
}
