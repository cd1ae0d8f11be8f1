package specgen

import (
	"testing"

	specs "github.com/opencontainers/runtime-spec/specs-go"
	runtimeapi "k8s.io/cri-api/pkg/apis/runtime/v1"

	"github.com/noded-dev/noded/internal/errdefs"
)

func TestBindMounts(t *testing.T) {
	const (
		private = runtimeapi.MountPropagation_PROPAGATION_PRIVATE
		h2c     = runtimeapi.MountPropagation_PROPAGATION_HOST_TO_CONTAINER
		bidi    = runtimeapi.MountPropagation_PROPAGATION_BIDIRECTIONAL
	)
	bind := func(dst, src string, opts ...string) specs.Mount {
		return specs.Mount{Destination: dst, Type: "bind", Source: src, Options: append([]string{"rbind"}, opts...)}
	}
	for _, tc := range []struct {
		desc     string
		mounts   []*runtimeapi.Mount
		fs       func(*fakeFS)
		want     []specs.Mount
		wantProp string
		wantErr  error
	}{
		{desc: "read-write private",
			mounts: []*runtimeapi.Mount{{ContainerPath: "/data", HostPath: "/srv/data"}},
			want:   []specs.Mount{bind("/data", "/srv/data", "rprivate", "rw")}},
		{desc: "read-only, destination cleaned",
			mounts: []*runtimeapi.Mount{{ContainerPath: "/data/", HostPath: "/srv/data", Readonly: true}},
			want:   []specs.Mount{bind("/data", "/srv/data", "rprivate", "ro")}},
		{desc: "recursive read-only",
			mounts: []*runtimeapi.Mount{{ContainerPath: "/data", HostPath: "/srv/data", Readonly: true, RecursiveReadOnly: true}},
			want:   []specs.Mount{bind("/data", "/srv/data", "rprivate", "rro")}},
		{desc: "symlinked source is resolved",
			mounts: []*runtimeapi.Mount{{ContainerPath: "/data", HostPath: "/srv/link"}},
			fs:     func(f *fakeFS) { f.links = map[string]string{"/srv/link": "/srv/real"} },
			want:   []specs.Mount{bind("/data", "/srv/real", "rprivate", "rw")}},
		{desc: "host-to-container makes the root rslave",
			mounts:   []*runtimeapi.Mount{{ContainerPath: "/m", HostPath: "/mnt/slave", Propagation: h2c}},
			want:     []specs.Mount{bind("/m", "/mnt/slave", "rslave", "rw")},
			wantProp: "rslave"},
		{desc: "bidirectional makes the root rshared, whatever the order",
			mounts: []*runtimeapi.Mount{
				{ContainerPath: "/b", HostPath: "/mnt/shared", Propagation: bidi},
				{ContainerPath: "/a", HostPath: "/mnt/shared", Propagation: h2c},
			},
			want:     []specs.Mount{bind("/b", "/mnt/shared", "rshared", "rw"), bind("/a", "/mnt/shared", "rslave", "rw")},
			wantProp: "rshared"},
		{desc: "host-to-container from a shared source",
			mounts:   []*runtimeapi.Mount{{ContainerPath: "/m", HostPath: "/mnt/shared", Propagation: h2c, Readonly: true}},
			want:     []specs.Mount{bind("/m", "/mnt/shared", "rslave", "ro")},
			wantProp: "rslave"},
		{desc: "bidirectional needs a shared source",
			mounts:  []*runtimeapi.Mount{{ContainerPath: "/m", HostPath: "/mnt/slave", Propagation: bidi}},
			wantErr: errdefs.ErrFailedPrecondition},
		{desc: "host-to-container needs shared or slave",
			mounts:  []*runtimeapi.Mount{{ContainerPath: "/m", HostPath: "/srv/private", Propagation: h2c}},
			wantErr: errdefs.ErrFailedPrecondition},
		{desc: "rro needs read-only",
			mounts:  []*runtimeapi.Mount{{ContainerPath: "/d", HostPath: "/srv/d", RecursiveReadOnly: true}},
			wantErr: errdefs.ErrInvalidArgument},
		{desc: "rro needs private propagation",
			mounts:  []*runtimeapi.Mount{{ContainerPath: "/d", HostPath: "/mnt/slave", Readonly: true, RecursiveReadOnly: true, Propagation: h2c}},
			wantErr: errdefs.ErrInvalidArgument},
		{desc: "unknown propagation",
			mounts:  []*runtimeapi.Mount{{ContainerPath: "/d", HostPath: "/srv/d", Propagation: 7}},
			wantErr: errdefs.ErrInvalidArgument},
		{desc: "relative destination",
			mounts:  []*runtimeapi.Mount{{ContainerPath: "data", HostPath: "/srv/d"}},
			wantErr: errdefs.ErrInvalidArgument},
		{desc: "relative source",
			mounts:  []*runtimeapi.Mount{{ContainerPath: "/data", HostPath: "srv/d"}},
			wantErr: errdefs.ErrInvalidArgument},
		{desc: "destination with ..",
			mounts:  []*runtimeapi.Mount{{ContainerPath: "/data/../etc", HostPath: "/srv/d"}},
			wantErr: errdefs.ErrInvalidArgument},
		{desc: "source with ..",
			mounts:  []*runtimeapi.Mount{{ContainerPath: "/data", HostPath: "/srv/d/../../etc"}},
			wantErr: errdefs.ErrInvalidArgument},
		{desc: "names with dots are no ..",
			mounts: []*runtimeapi.Mount{{ContainerPath: "/data/..x", HostPath: "/srv/...d"}},
			want:   []specs.Mount{bind("/data/..x", "/srv/...d", "rprivate", "rw")}},
		{desc: "ID-mapped mount",
			mounts: []*runtimeapi.Mount{{ContainerPath: "/data", HostPath: "/srv/d",
				UidMappings: []*runtimeapi.IDMapping{{HostId: 1000, ContainerId: 0, Length: 1}}}},
			wantErr: errdefs.ErrInvalidArgument},
		{desc: "image volume: read-only, nosuid, nodev, private; its source is the caller's",
			mounts: []*runtimeapi.Mount{{ContainerPath: "/data", Readonly: true, Propagation: h2c,
				Image: &runtimeapi.ImageSpec{Image: "busybox"}}},
			want: []specs.Mount{bind("/data", "", "rprivate", "ro", "nosuid", "nodev")}},
		{desc: "image volume that is not read-only",
			mounts:  []*runtimeapi.Mount{{ContainerPath: "/data", Image: &runtimeapi.ImageSpec{Image: "busybox"}}},
			wantErr: errdefs.ErrInvalidArgument},
		{desc: "source that cannot be created",
			mounts:  []*runtimeapi.Mount{{ContainerPath: "/data", HostPath: "/proc/nope"}},
			fs:      func(f *fakeFS) { f.missing = map[string]bool{"/proc/nope": true} },
			wantErr: errdefs.ErrFailedPrecondition},
	} {
		t.Run(tc.desc, func(t *testing.T) {
			fs := newFakeFS()
			if tc.fs != nil {
				tc.fs(fs)
			}
			got, prop, err := bindMounts(tc.mounts, fs)
			if checkErr(t, err, tc.wantErr) {
				assertEqual(t, "mounts", got, tc.want)
				assertEqual(t, "rootfs propagation", prop, tc.wantProp)
			}
		})
	}
}

func TestMergeMounts(t *testing.T) {
	m := func(dst, src string) *runtimeapi.Mount { return &runtimeapi.Mount{ContainerPath: dst, HostPath: src} }
	for _, tc := range []struct {
		desc       string
		cri, extra []*runtimeapi.Mount
		want       []string // sources in order
	}{
		{desc: "sorted by depth, stable", cri: []*runtimeapi.Mount{m("/a/b/c", "1"), m("/x", "2"), m("/a/b", "3"), m("/y", "4")},
			want: []string{"2", "4", "3", "1"}},
		{desc: "request wins over extra at the same path",
			cri: []*runtimeapi.Mount{m("/etc/hosts", "mine")}, extra: []*runtimeapi.Mount{m("/etc/hosts/", "pod"), m("/etc/resolv.conf", "pod-resolv")},
			want: []string{"mine", "pod-resolv"}},
	} {
		t.Run(tc.desc, func(t *testing.T) {
			var got []string
			for _, x := range mergeMounts(tc.cri, tc.extra) {
				got = append(got, x.GetHostPath())
			}
			assertEqual(t, "order", got, tc.want)
		})
	}
}

func TestSandboxFileMounts(t *testing.T) {
	files := SandboxFiles{Hosts: "/s/hosts", ResolvConf: "/s/resolv", Hostname: "/s/hostname", Shm: "/s/shm"}
	m := func(dst, src string, ro bool) *runtimeapi.Mount {
		return &runtimeapi.Mount{ContainerPath: dst, HostPath: src, Readonly: ro}
	}
	for _, tc := range []struct {
		desc              string
		files             SandboxFiles
		readonly, hostIPC bool
		want              []*runtimeapi.Mount
	}{
		{desc: "all files read-write", files: files, want: []*runtimeapi.Mount{
			m("/etc/hostname", "/s/hostname", false), m("/etc/hosts", "/s/hosts", false),
			m("/etc/resolv.conf", "/s/resolv", false), m("/dev/shm", "/s/shm", false)}},
		{desc: "read-only rootfs makes files read-only but not shm", files: files, readonly: true, want: []*runtimeapi.Mount{
			m("/etc/hostname", "/s/hostname", true), m("/etc/hosts", "/s/hosts", true),
			m("/etc/resolv.conf", "/s/resolv", true), m("/dev/shm", "/s/shm", false)}},
		{desc: "host IPC shares the host's shm", files: SandboxFiles{Shm: "/s/shm"}, hostIPC: true,
			want: []*runtimeapi.Mount{m("/dev/shm", "/dev/shm", false)}},
		{desc: "no files, no mounts"},
	} {
		t.Run(tc.desc, func(t *testing.T) {
			got := sandboxFileMounts(tc.files, tc.readonly, tc.hostIPC)
			assertEqual(t, "count", len(got), len(tc.want))
			for i := range got {
				assertEqual(t, "mount", got[i].String(), tc.want[i].String())
			}
		})
	}
}

func TestTerminationMessageMount(t *testing.T) {
	for _, tc := range []struct {
		desc        string
		file        string
		annotations map[string]string
		wantDst     string
	}{
		{desc: "no file, no mount"},
		{desc: "default path", file: "/state/c1/termination-log", wantDst: "/dev/termination-log"},
		{desc: "kubelet annotation path", file: "/state/c1/termination-log",
			annotations: map[string]string{annotationTerminationMessagePath: "/tmp/msg"}, wantDst: "/tmp/msg"},
	} {
		t.Run(tc.desc, func(t *testing.T) {
			got := terminationMessageMount(tc.file, tc.annotations)
			if tc.wantDst == "" {
				assertEqual(t, "mounts", len(got), 0)
				return
			}
			assertEqual(t, "destination", got[0].GetContainerPath(), tc.wantDst)
			assertEqual(t, "source", got[0].GetHostPath(), tc.file)
			assertEqual(t, "writable", got[0].GetReadonly(), false)
		})
	}
}

func TestWithoutShadowed(t *testing.T) {
	for _, tc := range []struct {
		desc  string
		binds []string
		want  []string
	}{
		{desc: "nothing shadowed", want: []string{"/proc", "/dev", "/dev/pts", "/dev/shm", "/dev/mqueue", "/sys", "/sys/fs/cgroup"}},
		{desc: "same destination", binds: []string{"/dev/shm", "/sys/"},
			want: []string{"/proc", "/dev", "/dev/pts", "/dev/mqueue", "/sys/fs/cgroup"}},
		{desc: "bound /dev hides everything under it", binds: []string{"/dev"},
			want: []string{"/proc", "/sys", "/sys/fs/cgroup"}},
	} {
		t.Run(tc.desc, func(t *testing.T) {
			var binds []*runtimeapi.Mount
			for _, b := range tc.binds {
				binds = append(binds, &runtimeapi.Mount{ContainerPath: b})
			}
			var got []string
			for _, m := range withoutShadowed(defaultMounts(false, nil), binds) {
				got = append(got, m.Destination)
			}
			assertEqual(t, "destinations", got, tc.want)
		})
	}
}
