package specgen

import (
	"testing"

	runtimeapi "k8s.io/cri-api/pkg/apis/runtime/v1"

	"github.com/noded-dev/noded/internal/errdefs"
)

func TestMountOptions(t *testing.T) {
	for _, tc := range []struct {
		desc    string
		opts    []string
		want    []string
		wantErr error
	}{
		{desc: "none"},
		{desc: "the three, once each, in order", opts: []string{"noexec", "nodev", "noexec", "nosuid"}, want: []string{"noexec", "nodev", "nosuid"}},
		{desc: "a loosening option", opts: []string{"suid"}, wantErr: errdefs.ErrInvalidArgument},
		{desc: "an access mode", opts: []string{"ro"}, wantErr: errdefs.ErrInvalidArgument},
		{desc: "a file system option", opts: []string{"noexec", "size=1m"}, wantErr: errdefs.ErrInvalidArgument},
		{desc: "empty", opts: []string{""}, wantErr: errdefs.ErrInvalidArgument},
	} {
		t.Run(tc.desc, func(t *testing.T) {
			m := &runtimeapi.Mount{ContainerPath: "/data", HostPath: "/srv/data", MountOptions: tc.opts}
			got, err := mountOptions(m)
			if !checkErr(t, err, tc.wantErr) {
				return
			}
			assertEqual(t, "options", got, tc.want)
		})
	}
}

// mount_options reach the OCI bind mount after its access mode, and a bad
// one is refused before the host is touched (CheckContainerConfig) and by
// Generate.
func TestMountOptionsInSpec(t *testing.T) {
	c := testContainer(t)
	c.Config.Mounts = []*runtimeapi.Mount{
		{ContainerPath: "/data", HostPath: "/srv/data", MountOptions: []string{"noexec", "nodev", "nosuid"}},
		{ContainerPath: "/ro", HostPath: "/srv/ro", Readonly: true, MountOptions: []string{"nosuid"}},
		{ContainerPath: "/plain", HostPath: "/srv/plain"},
	}
	res, err := c.Generate()
	if err != nil {
		t.Fatal(err)
	}
	assertEqual(t, "/data", mountAt(res.Spec, "/data").Options, []string{"rbind", "rprivate", "rw", "noexec", "nodev", "nosuid"})
	assertEqual(t, "/ro", mountAt(res.Spec, "/ro").Options, []string{"rbind", "rprivate", "ro", "nosuid"})
	assertEqual(t, "/plain", mountAt(res.Spec, "/plain").Options, []string{"rbind", "rprivate", "rw"})

	c.Config.Mounts[2].MountOptions = []string{"exec"}
	if err := CheckContainerConfig(c.Config); !checkErr(t, err, errdefs.ErrInvalidArgument) {
		return
	}
	_, err = c.Generate()
	checkErr(t, err, errdefs.ErrInvalidArgument)
}
