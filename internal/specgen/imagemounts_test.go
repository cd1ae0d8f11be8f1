package specgen

import (
	"testing"

	specs "github.com/opencontainers/runtime-spec/specs-go"
	runtimeapi "k8s.io/cri-api/pkg/apis/runtime/v1"

	"github.com/noded-dev/noded/internal/errdefs"
)

func imageMount(dst, sub string) *runtimeapi.Mount {
	return &runtimeapi.Mount{ContainerPath: dst, Readonly: true, ImageSubPath: sub,
		Image: &runtimeapi.ImageSpec{Image: "sha256:abc"}}
}

// The checks CreateContainer makes of an image mount before anything is
// made.
func TestCheckImageMount(t *testing.T) {
	edit := func(f func(*runtimeapi.Mount)) *runtimeapi.Mount {
		m := imageMount("/vol", "")
		f(m)
		return m
	}
	for _, tc := range []struct {
		desc    string
		m       *runtimeapi.Mount
		wantErr error
	}{
		{desc: "image root", m: imageMount("/vol", "")},
		{desc: "sub path", m: imageMount("/vol", "etc/ssl")},
		{desc: "sub path with dots in names", m: imageMount("/vol", "..etc/x..")},
		{desc: "recursive read-only", m: edit(func(m *runtimeapi.Mount) { m.RecursiveReadOnly = true })},
		{desc: "any propagation", m: edit(func(m *runtimeapi.Mount) {
			m.Propagation = runtimeapi.MountPropagation_PROPAGATION_BIDIRECTIONAL
		})},
		{desc: "not read-only", m: edit(func(m *runtimeapi.Mount) { m.Readonly = false }), wantErr: errdefs.ErrInvalidArgument},
		{desc: "host path too", m: edit(func(m *runtimeapi.Mount) { m.HostPath = "/srv" }), wantErr: errdefs.ErrInvalidArgument},
		{desc: "no image name", m: edit(func(m *runtimeapi.Mount) { m.Image.Image = "" }), wantErr: errdefs.ErrInvalidArgument},
		{desc: "ID-mapped", m: edit(func(m *runtimeapi.Mount) {
			m.GidMappings = []*runtimeapi.IDMapping{{HostId: 1000, Length: 1}}
		}), wantErr: errdefs.ErrInvalidArgument},
		{desc: "sub path ..", m: imageMount("/vol", ".."), wantErr: errdefs.ErrInvalidArgument},
		{desc: "sub path through ..", m: imageMount("/vol", "etc/../.."), wantErr: errdefs.ErrInvalidArgument},
		{desc: "sub path ending in ..", m: imageMount("/vol", "etc/.."), wantErr: errdefs.ErrInvalidArgument},
		{desc: "absolute sub path", m: imageMount("/vol", "/etc"), wantErr: errdefs.ErrInvalidArgument},
		{desc: "NUL in sub path", m: imageMount("/vol", "etc\x00x"), wantErr: errdefs.ErrInvalidArgument},
		{desc: "relative destination", m: imageMount("vol", ""), wantErr: errdefs.ErrInvalidArgument},
		{desc: "destination with ..", m: imageMount("/vol/../etc", ""), wantErr: errdefs.ErrInvalidArgument},
		{desc: "unknown propagation", m: edit(func(m *runtimeapi.Mount) { m.Propagation = 9 }), wantErr: errdefs.ErrInvalidArgument},
	} {
		t.Run(tc.desc, func(t *testing.T) {
			err := CheckContainerConfig(&runtimeapi.ContainerConfig{Mounts: []*runtimeapi.Mount{tc.m}})
			checkErr(t, err, tc.wantErr)
		})
	}
}

// An image mount binds the caller's mount of the image read-only, nosuid
// and nodev, private whatever propagation was asked for (so the root's
// propagation is untouched), and never noexec unless asked.
func TestImageMountsInSpec(t *testing.T) {
	const src = "/var/lib/noded/overlay/abc/merged/etc"
	for _, tc := range []struct {
		desc    string
		edit    func(*Container)
		want    *specs.Mount
		wantErr error
	}{
		{desc: "read-only bind of the caller's mount",
			edit: func(c *Container) {},
			want: &specs.Mount{Destination: "/vol", Type: "bind", Source: src,
				Options: []string{"rbind", "rprivate", "ro", "nosuid", "nodev"}}},
		{desc: "recursive read-only",
			edit: func(c *Container) { c.Config.Mounts[0].RecursiveReadOnly = true },
			want: &specs.Mount{Destination: "/vol", Type: "bind", Source: src,
				Options: []string{"rbind", "rprivate", "rro", "nosuid", "nodev"}}},
		{desc: "propagation asked for is ignored",
			edit: func(c *Container) {
				c.Config.Mounts[0].Propagation = runtimeapi.MountPropagation_PROPAGATION_BIDIRECTIONAL
			},
			want: &specs.Mount{Destination: "/vol", Type: "bind", Source: src,
				Options: []string{"rbind", "rprivate", "ro", "nosuid", "nodev"}}},
		{desc: "noexec when mount_options ask for it",
			edit: func(c *Container) { c.Config.Mounts[0].MountOptions = []string{"noexec", "nosuid"} },
			want: &specs.Mount{Destination: "/vol", Type: "bind", Source: src,
				Options: []string{"rbind", "rprivate", "ro", "nosuid", "nodev", "noexec"}}},
		{desc: "replaces a default mount at its path",
			edit: func(c *Container) {
				c.Config.Mounts[0].ContainerPath = "/sys"
			},
			want: &specs.Mount{Destination: "/sys", Type: "bind", Source: src,
				Options: []string{"rbind", "rprivate", "ro", "nosuid", "nodev"}}},
		{desc: "not mounted by the caller",
			edit:    func(c *Container) { c.ImageVolumes = nil },
			wantErr: errdefs.ErrInvalidArgument},
		{desc: "mounted for another index",
			edit:    func(c *Container) { c.ImageVolumes = map[int]string{1: src} },
			wantErr: errdefs.ErrInvalidArgument},
	} {
		t.Run(tc.desc, func(t *testing.T) {
			c := testContainer(t)
			c.Config.Mounts = []*runtimeapi.Mount{imageMount("/vol", "etc")}
			c.ImageVolumes = map[int]string{0: src}
			tc.edit(c)
			res, err := c.Generate()
			if !checkErr(t, err, tc.wantErr) {
				return
			}
			got := mountAt(res.Spec, tc.want.Destination)
			if got == nil {
				t.Fatalf("no mount at %s: %v", tc.want.Destination, res.Spec.Mounts)
			}
			assertEqual(t, "mount", *got, *tc.want)
			assertEqual(t, "root propagation", res.Spec.Linux.RootfsPropagation, "")
			n := 0
			for _, m := range res.Spec.Mounts {
				if m.Destination == tc.want.Destination {
					n++
				}
			}
			assertEqual(t, "mounts at the destination", n, 1)
		})
	}
}

// Image mounts and host path mounts together: each gets its source, in
// the depth order of all mounts.
func TestImageMountsAmongOthers(t *testing.T) {
	c := testContainer(t)
	c.Config.Mounts = []*runtimeapi.Mount{
		{ContainerPath: "/data/deep", HostPath: "/srv/deep"},
		imageMount("/tools", ""),
		imageMount("/data/models", "m"),
		{ContainerPath: "/data", HostPath: "/srv/data"},
	}
	c.ImageVolumes = map[int]string{1: "/img/a", 2: "/img/b/m"}
	res, err := c.Generate()
	if err != nil {
		t.Fatal(err)
	}
	var got []string
	for _, m := range res.Spec.Mounts {
		if m.Type == "bind" && (m.Destination == "/tools" || m.Destination == "/data" || m.Destination == "/data/deep" || m.Destination == "/data/models") {
			got = append(got, m.Destination+"="+m.Source)
		}
	}
	assertEqual(t, "binds", got, []string{"/tools=/img/a", "/data=/srv/data", "/data/deep=/srv/deep", "/data/models=/img/b/m"})
}
