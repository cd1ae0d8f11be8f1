package specgen

import (
	"encoding/json"
	"testing"

	ocispec "github.com/opencontainers/image-spec/specs-go/v1"
	specs "github.com/opencontainers/runtime-spec/specs-go"
	runtimeapi "k8s.io/cri-api/pkg/apis/runtime/v1"

	"github.com/noded-dev/noded/internal/errdefs"
)

func testSandbox(t *testing.T) *Sandbox {
	t.Helper()
	return &Sandbox{
		ID: "s1",
		Config: &runtimeapi.PodSandboxConfig{
			Metadata:     &runtimeapi.PodSandboxMetadata{Name: "pod", Namespace: "default", Uid: "uid-1"},
			Hostname:     "pod-host",
			LogDirectory: "/var/log/pods/x",
			Linux:        &runtimeapi.LinuxPodSandboxConfig{SecurityContext: &runtimeapi.LinuxSandboxSecurityContext{}},
		},
		Image:      ocispec.ImageConfig{Entrypoint: []string{"/pause"}, User: "65535:65535"},
		ImageName:  "localhost/noded/pause:builtin",
		RootfsPath: makeRootfs(t, "", ""),
		NetNS:      "/run/netns/cni-1",
		Files:      SandboxFiles{Shm: "/pod/shm", ResolvConf: "/pod/resolv.conf"},
		Node:       testNode(),
	}
}

func TestSandboxGenerate(t *testing.T) {
	for _, tc := range []struct {
		desc    string
		edit    func(*Sandbox)
		check   func(*testing.T, *Result)
		wantErr error
	}{
		{desc: "default pod",
			check: func(t *testing.T, r *Result) {
				s := r.Spec
				assertEqual(t, "args", s.Process.Args, []string{"/pause"})
				assertEqual(t, "env", s.Process.Env, []string{DefaultPathEnv})
				assertEqual(t, "user", s.Process.User, specs.User{UID: 65535, GID: 65535, AdditionalGids: []uint32{65535}})
				assertEqual(t, "readonly root", s.Root.Readonly, true)
				assertEqual(t, "no_new_privs", s.Process.NoNewPrivileges, true)
				assertEqual(t, "hostname", s.Hostname, "pod-host")
				assertEqual(t, "caps", s.Process.Capabilities.Bounding, DefaultCapabilities())
				assertEqual(t, "oom clamped to the floor", *s.Process.OOMScoreAdj, 0)
				assertEqual(t, "shares", *s.Linux.Resources.CPU.Shares, uint64(2))
				assertEqual(t, "cgroups path", s.Linux.CgroupsPath, "/noded/s1")
				assertEqual(t, "namespaces", s.Linux.Namespaces, []specs.LinuxNamespace{
					{Type: specs.MountNamespace}, {Type: specs.NetworkNamespace, Path: "/run/netns/cni-1"},
					{Type: specs.UTSNamespace}, {Type: specs.IPCNamespace}, {Type: specs.PIDNamespace}})
				if s.Linux.Seccomp == nil || s.Linux.Seccomp.DefaultAction != specs.ActErrno {
					t.Errorf("want the default seccomp profile, got %+v", s.Linux.Seccomp)
				}
				assertEqual(t, "shm", *mountAt(s, "/dev/shm"), specs.Mount{Destination: "/dev/shm", Type: "bind", Source: "/pod/shm",
					Options: []string{"rbind", "ro", "nosuid", "nodev", "noexec"}})
				assertEqual(t, "resolv", mountAt(s, "/etc/resolv.conf").Source, "/pod/resolv.conf")
				assertEqual(t, "no cgroupfs", mountAt(s, "/sys/fs/cgroup"), (*specs.Mount)(nil))
				assertEqual(t, "sysctls", s.Linux.Sysctl, map[string]string(nil))
				assertEqual(t, "masked", s.Linux.MaskedPaths, DefaultMaskedPaths())
				assertEqual(t, "annotations", s.Annotations, map[string]string{
					AnnotationContainerType: "sandbox", AnnotationSandboxID: "s1", AnnotationSandboxName: "pod",
					AnnotationSandboxNamespace: "default", AnnotationSandboxUID: "uid-1",
					AnnotationSandboxLogDir: "/var/log/pods/x", AnnotationSandboxImageName: "localhost/noded/pause:builtin",
				})
				if _, err := json.Marshal(s); err != nil {
					t.Fatal(err)
				}
			}},
		{desc: "host namespaces",
			edit: func(s *Sandbox) {
				s.Config.Linux.SecurityContext.NamespaceOptions = &runtimeapi.NamespaceOption{
					Network: runtimeapi.NamespaceMode_NODE, Ipc: runtimeapi.NamespaceMode_NODE, Pid: runtimeapi.NamespaceMode_NODE}
				s.Node.UnprivilegedPorts = true
			},
			check: func(t *testing.T, r *Result) {
				s := r.Spec
				assertEqual(t, "namespaces", s.Linux.Namespaces, []specs.LinuxNamespace{{Type: specs.MountNamespace}})
				assertEqual(t, "hostname", s.Hostname, "")
				assertEqual(t, "shm", mountAt(s, "/dev/shm").Source, "/dev/shm")
				assertEqual(t, "no port sysctl on the host network", s.Linux.Sysctl, map[string]string(nil))
			}},
		{desc: "run as the pod's user, sysctls, unprivileged ports and ICMP",
			edit: func(s *Sandbox) {
				sc := s.Config.Linux.SecurityContext
				sc.RunAsUser = &runtimeapi.Int64Value{Value: 1000}
				sc.RunAsGroup = &runtimeapi.Int64Value{Value: 2000}
				sc.SupplementalGroups = []int64{3000}
				s.Config.Linux.Sysctls = map[string]string{"kernel.shm_rmid_forced": "1", sysctlUnprivilegedPortStart: "1024"}
				s.Node.UnprivilegedPorts = true
				s.Node.UnprivilegedICMP = true
			},
			check: func(t *testing.T, r *Result) {
				assertEqual(t, "user", r.User, User{UID: 1000, GID: 2000, AdditionalGIDs: []uint32{2000, 3000}})
				assertEqual(t, "sysctls", r.Spec.Linux.Sysctl, map[string]string{
					"kernel.shm_rmid_forced": "1", sysctlUnprivilegedPortStart: "1024", sysctlPingGroupRange: "0 2147483647"})
			}},
		{desc: "explicit unconfined seccomp",
			edit: func(s *Sandbox) {
				s.Config.Linux.SecurityContext.Seccomp = &runtimeapi.SecurityProfile{ProfileType: runtimeapi.SecurityProfile_Unconfined}
			},
			check: func(t *testing.T, r *Result) {
				assertEqual(t, "seccomp", r.Spec.Linux.Seccomp, (*specs.LinuxSeccomp)(nil))
			}},
		{desc: "self-confining pause, no profile asked: none added",
			edit: func(s *Sandbox) { s.PauseConfinesItself = true },
			check: func(t *testing.T, r *Result) {
				assertEqual(t, "seccomp", r.Spec.Linux.Seccomp, (*specs.LinuxSeccomp)(nil))
			}},
		{desc: "self-confining pause, runtime default asked: applied",
			edit: func(s *Sandbox) {
				s.PauseConfinesItself = true
				s.Config.Linux.SecurityContext.Seccomp = &runtimeapi.SecurityProfile{ProfileType: runtimeapi.SecurityProfile_RuntimeDefault}
			},
			check: func(t *testing.T, r *Result) {
				if r.Spec.Linux.Seccomp == nil || r.Spec.Linux.Seccomp.DefaultAction != specs.ActErrno {
					t.Errorf("want the default seccomp profile, got %+v", r.Spec.Linux.Seccomp)
				}
			}},
		{desc: "deprecated unconfined seccomp",
			edit: func(s *Sandbox) { s.Config.Linux.SecurityContext.SeccompProfilePath = "unconfined" }, //nolint:staticcheck // old clients still send it
			check: func(t *testing.T, r *Result) {
				assertEqual(t, "seccomp", r.Spec.Linux.Seccomp, (*specs.LinuxSeccomp)(nil))
			}},
		{desc: "privileged pod: no seccomp, same capabilities",
			edit: func(s *Sandbox) { s.Config.Linux.SecurityContext.Privileged = true },
			check: func(t *testing.T, r *Result) {
				assertEqual(t, "seccomp", r.Spec.Linux.Seccomp, (*specs.LinuxSeccomp)(nil))
				assertEqual(t, "caps", r.Spec.Process.Capabilities.Bounding, DefaultCapabilities())
			}},
		{desc: "pod resources become annotations, systemd parent",
			edit: func(s *Sandbox) {
				s.Config.Linux.Resources = &runtimeapi.LinuxContainerResources{CpuPeriod: 100000, CpuQuota: 20000, CpuShares: 204, MemoryLimitInBytes: 1 << 20}
				s.Config.Linux.CgroupParent = "kubepods-pod1.slice"
				s.Node.CgroupManager = SystemdManager
			},
			check: func(t *testing.T, r *Result) {
				a := r.Spec.Annotations
				assertEqual(t, "period", a[AnnotationSandboxCPUPeriod], "100000")
				assertEqual(t, "quota", a[AnnotationSandboxCPUQuota], "20000")
				assertEqual(t, "shares", a[AnnotationSandboxCPUShares], "204")
				assertEqual(t, "memory", a[AnnotationSandboxMemory], "1048576")
				assertEqual(t, "cgroups path", r.Spec.Linux.CgroupsPath, "kubepods-pod1.slice:noded:s1")
			}},
		{desc: "no pause command", edit: func(s *Sandbox) { s.Image.Entrypoint = nil }, wantErr: errdefs.ErrInvalidArgument},
		{desc: "no ID", edit: func(s *Sandbox) { s.ID = "" }, wantErr: errdefs.ErrInvalidArgument},
		{desc: "nil config", edit: func(s *Sandbox) { s.Config = nil }, wantErr: errdefs.ErrInvalidArgument},
		{desc: "no metadata", edit: func(s *Sandbox) { s.Config.Metadata = nil }, wantErr: errdefs.ErrInvalidArgument},
		{desc: "relative rootfs", edit: func(s *Sandbox) { s.RootfsPath = "x" }, wantErr: errdefs.ErrInvalidArgument},
		{desc: "user name without passwd", edit: func(s *Sandbox) { s.Image.User = "nobody" }, wantErr: errdefs.ErrInvalidArgument},
		{desc: "user namespaces",
			edit: func(s *Sandbox) {
				s.Config.Linux.SecurityContext.NamespaceOptions = &runtimeapi.NamespaceOption{
					UsernsOptions: &runtimeapi.UserNamespace{Mode: runtimeapi.NamespaceMode_POD}}
			},
			wantErr: errdefs.ErrInvalidArgument},
		{desc: "systemd with a cgroupfs parent",
			edit: func(s *Sandbox) {
				s.Config.Linux.CgroupParent = "/kubepods/pod1"
				s.Node.CgroupManager = SystemdManager
			},
			wantErr: errdefs.ErrInvalidArgument},
	} {
		t.Run(tc.desc, func(t *testing.T) {
			s := testSandbox(t)
			if tc.edit != nil {
				tc.edit(s)
			}
			r, err := s.Generate()
			if checkErr(t, err, tc.wantErr) && tc.check != nil {
				tc.check(t, r)
			}
		})
	}
}
