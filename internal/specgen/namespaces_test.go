package specgen

import (
	"testing"

	specs "github.com/opencontainers/runtime-spec/specs-go"
	runtimeapi "k8s.io/cri-api/pkg/apis/runtime/v1"

	"github.com/noded-dev/noded/internal/errdefs"
)

func TestContainerNamespaces(t *testing.T) {
	pod := NamespacesOfPID(42)
	const (
		POD       = runtimeapi.NamespaceMode_POD
		NODE      = runtimeapi.NamespaceMode_NODE
		CONTAINER = runtimeapi.NamespaceMode_CONTAINER
		TARGET    = runtimeapi.NamespaceMode_TARGET
	)
	mnt := specs.LinuxNamespace{Type: specs.MountNamespace}
	net := specs.LinuxNamespace{Type: specs.NetworkNamespace, Path: "/proc/42/ns/net"}
	uts := specs.LinuxNamespace{Type: specs.UTSNamespace, Path: "/proc/42/ns/uts"}
	ipc := specs.LinuxNamespace{Type: specs.IPCNamespace, Path: "/proc/42/ns/ipc"}
	pid := specs.LinuxNamespace{Type: specs.PIDNamespace, Path: "/proc/42/ns/pid"}
	for _, tc := range []struct {
		desc     string
		ns       *runtimeapi.NamespaceOption
		pod      *Namespaces
		target   string
		userns   bool
		cgroupNS bool
		want     []specs.LinuxNamespace
		wantErr  error
	}{
		{desc: "nil options join the pod", want: []specs.LinuxNamespace{mnt, net, uts, ipc, pid}},
		{desc: "pid CONTAINER gets a new one", ns: &runtimeapi.NamespaceOption{Pid: CONTAINER},
			want: []specs.LinuxNamespace{mnt, net, uts, ipc, {Type: specs.PIDNamespace}}},
		{desc: "host network also shares host UTS", ns: &runtimeapi.NamespaceOption{Network: NODE},
			want: []specs.LinuxNamespace{mnt, ipc, pid}},
		{desc: "host everything", ns: &runtimeapi.NamespaceOption{Network: NODE, Ipc: NODE, Pid: NODE},
			want: []specs.LinuxNamespace{mnt}},
		{desc: "pid TARGET joins the target", ns: &runtimeapi.NamespaceOption{Pid: TARGET, TargetId: "c0"}, target: "/proc/77/ns/pid",
			want: []specs.LinuxNamespace{mnt, net, uts, ipc, {Type: specs.PIDNamespace, Path: "/proc/77/ns/pid"}}},
		{desc: "cgroup namespace on request", ns: &runtimeapi.NamespaceOption{Pid: CONTAINER}, cgroupNS: true,
			want: []specs.LinuxNamespace{mnt, net, uts, ipc, {Type: specs.PIDNamespace}, {Type: specs.CgroupNamespace}}},
		{desc: "userns joins the pod's first", userns: true,
			want: []specs.LinuxNamespace{mnt, {Type: specs.UserNamespace, Path: "/proc/42/ns/user"}, net, uts, ipc, pid}},
		{desc: "userns without the pod's", userns: true, pod: &Namespaces{Network: "/n", IPC: "/x", UTS: "/y", PID: "/z"},
			wantErr: errdefs.ErrInvalidArgument},
		{desc: "TARGET without target", ns: &runtimeapi.NamespaceOption{Pid: TARGET, TargetId: "c0"}, wantErr: errdefs.ErrInvalidArgument},
		{desc: "TARGET without target id", ns: &runtimeapi.NamespaceOption{Pid: TARGET}, target: "/proc/77/ns/pid", wantErr: errdefs.ErrInvalidArgument},
		{desc: "network CONTAINER is invalid", ns: &runtimeapi.NamespaceOption{Network: CONTAINER}, wantErr: errdefs.ErrInvalidArgument},
		{desc: "ipc TARGET is invalid", ns: &runtimeapi.NamespaceOption{Ipc: TARGET}, wantErr: errdefs.ErrInvalidArgument},
		{desc: "pod without a network namespace", pod: &Namespaces{IPC: "/x", UTS: "/y", PID: "/z"}, wantErr: errdefs.ErrInvalidArgument},
	} {
		t.Run(tc.desc, func(t *testing.T) {
			p := pod
			if tc.pod != nil {
				p = *tc.pod
			}
			got, err := containerNamespaces(tc.ns, tc.userns, p, tc.target, tc.cgroupNS)
			if checkErr(t, err, tc.wantErr) {
				assertEqual(t, "namespaces", got, tc.want)
			}
		})
	}
}

func TestSandboxNamespaces(t *testing.T) {
	const (
		POD       = runtimeapi.NamespaceMode_POD
		NODE      = runtimeapi.NamespaceMode_NODE
		CONTAINER = runtimeapi.NamespaceMode_CONTAINER
		TARGET    = runtimeapi.NamespaceMode_TARGET
	)
	mnt := specs.LinuxNamespace{Type: specs.MountNamespace}
	uts := specs.LinuxNamespace{Type: specs.UTSNamespace}
	ipc := specs.LinuxNamespace{Type: specs.IPCNamespace}
	pid := specs.LinuxNamespace{Type: specs.PIDNamespace}
	for _, tc := range []struct {
		desc    string
		ns      *runtimeapi.NamespaceOption
		netNS   string
		userns  bool
		want    []specs.LinuxNamespace
		wantErr error
	}{
		{desc: "own everything with a prepared netns", netNS: "/run/netns/cni-1",
			want: []specs.LinuxNamespace{mnt, {Type: specs.NetworkNamespace, Path: "/run/netns/cni-1"}, uts, ipc, pid}},
		{desc: "no prepared netns gives a new one",
			want: []specs.LinuxNamespace{mnt, {Type: specs.NetworkNamespace}, uts, ipc, pid}},
		{desc: "pid CONTAINER still isolates the pause process", ns: &runtimeapi.NamespaceOption{Pid: CONTAINER},
			want: []specs.LinuxNamespace{mnt, {Type: specs.NetworkNamespace}, uts, ipc, pid}},
		{desc: "host network, ipc and pid", ns: &runtimeapi.NamespaceOption{Network: NODE, Ipc: NODE, Pid: NODE},
			want: []specs.LinuxNamespace{mnt}},
		{desc: "pid TARGET is invalid for a pod", ns: &runtimeapi.NamespaceOption{Pid: TARGET}, wantErr: errdefs.ErrInvalidArgument},
		{desc: "network CONTAINER is invalid", ns: &runtimeapi.NamespaceOption{Network: CONTAINER}, wantErr: errdefs.ErrInvalidArgument},
		{desc: "ipc CONTAINER is invalid", ns: &runtimeapi.NamespaceOption{Ipc: CONTAINER}, wantErr: errdefs.ErrInvalidArgument},
		{desc: "user namespace first, the rest made in it", userns: true,
			want: []specs.LinuxNamespace{mnt, {Type: specs.UserNamespace}, {Type: specs.NetworkNamespace}, uts, ipc, pid}},
	} {
		t.Run(tc.desc, func(t *testing.T) {
			got, err := sandboxNamespaces(tc.ns, tc.userns, tc.netNS)
			if checkErr(t, err, tc.wantErr) {
				assertEqual(t, "namespaces", got, tc.want)
			}
		})
	}
}
