package specgen

import (
	"encoding/json"
	"slices"
	"syscall"
	"testing"

	specs "github.com/opencontainers/runtime-spec/specs-go"
	runtimeapi "k8s.io/cri-api/pkg/apis/runtime/v1"

	"github.com/noded-dev/noded/internal/errdefs"
)

func mountAt(s *specs.Spec, dst string) *specs.Mount {
	for i := range s.Mounts {
		if s.Mounts[i].Destination == dst {
			return &s.Mounts[i]
		}
	}
	return nil
}

func hasNamespace(s *specs.Spec, t specs.LinuxNamespaceType) bool {
	return slices.ContainsFunc(s.Linux.Namespaces, func(n specs.LinuxNamespace) bool { return n.Type == t })
}

func TestContainerGenerate(t *testing.T) {
	for _, tc := range []struct {
		desc    string
		edit    func(*Container)
		check   func(*testing.T, *Result)
		wantErr error
	}{
		{desc: "minimal container",
			check: func(t *testing.T, r *Result) {
				s := r.Spec
				assertEqual(t, "version", s.Version, specs.Version)
				assertEqual(t, "args", s.Process.Args, []string{"/bin/app"})
				assertEqual(t, "env", s.Process.Env, []string{DefaultPathEnv, "HOSTNAME=pod-host"})
				assertEqual(t, "cwd", s.Process.Cwd, "/")
				assertEqual(t, "user", s.Process.User, specs.User{AdditionalGids: []uint32{0}})
				assertEqual(t, "bounding", s.Process.Capabilities.Bounding, DefaultCapabilities())
				assertEqual(t, "no_new_privs", s.Process.NoNewPrivileges, false)
				assertEqual(t, "terminal", s.Process.Terminal, false)
				assertEqual(t, "oom", s.Process.OOMScoreAdj, (*int)(nil))
				assertEqual(t, "rlimits", s.Process.Rlimits, []specs.POSIXRlimit(nil))
				assertEqual(t, "readonly root", s.Root.Readonly, false)
				assertEqual(t, "hostname", s.Hostname, "")
				assertEqual(t, "masked", s.Linux.MaskedPaths, DefaultMaskedPaths())
				assertEqual(t, "readonly paths", s.Linux.ReadonlyPaths, DefaultReadonlyPaths())
				if s.Linux.Seccomp == nil || s.Linux.Seccomp.DefaultAction != specs.ActErrno {
					t.Errorf("want the runtime default seccomp profile when none is asked for, got %+v", s.Linux.Seccomp)
				}
				assertEqual(t, "cgroups path", s.Linux.CgroupsPath, "/noded/c1")
				assertEqual(t, "device rules", s.Linux.Resources.Devices, []specs.LinuxDeviceCgroup{{Allow: false, Access: "rwm"}})
				assertEqual(t, "sysfs", mountAt(s, "/sys").Options, []string{"nosuid", "noexec", "nodev", "ro"})
				assertEqual(t, "shm", mountAt(s, "/dev/shm").Type, "tmpfs")
				assertEqual(t, "cgroup ns", hasNamespace(s, specs.CgroupNamespace), false)
				assertEqual(t, "stop signal", r.StopSignal, syscall.Signal(0))
				assertEqual(t, "annotations", s.Annotations, map[string]string{
					AnnotationContainerType: "container", AnnotationSandboxID: "s1", AnnotationSandboxName: "pod",
					AnnotationSandboxNamespace: "default", AnnotationSandboxUID: "uid-1",
					AnnotationContainerName: "app", AnnotationImageName: "docker.io/library/app:1",
				})
				// The spec must survive a JSON round trip for runc.
				if _, err := json.Marshal(s); err != nil {
					t.Fatal(err)
				}
			}},
		{desc: "image defaults and request overrides",
			edit: func(c *Container) {
				c.Config.Command = nil
				c.Config.Args = []string{"serve"}
				c.Config.WorkingDir = "/srv"
				c.Config.Tty = true
				c.Config.Envs = []*runtimeapi.KeyValue{{Key: "MODE", Value: []byte("prod")}}
				c.Image.Entrypoint = []string{"/entry"}
				c.Image.Cmd = []string{"default"}
				c.Image.Env = []string{"MODE=dev", "LANG=C"}
				c.Image.User = "app"
				c.Image.StopSignal = "SIGQUIT"
				c.Sandbox.Hostname = ""
			},
			check: func(t *testing.T, r *Result) {
				p := r.Spec.Process
				assertEqual(t, "args", p.Args, []string{"/entry", "serve"})
				assertEqual(t, "cwd", p.Cwd, "/srv")
				assertEqual(t, "terminal", p.Terminal, true)
				assertEqual(t, "env", p.Env, []string{DefaultPathEnv, "HOSTNAME=node1", "MODE=prod", "LANG=C", "TERM=xterm"})
				assertEqual(t, "user", r.User, User{UID: 1000, GID: 1000, AdditionalGIDs: []uint32{29, 44, 1000}})
				assertEqual(t, "spec user", p.User.AdditionalGids, []uint32{29, 44, 1000})
				assertEqual(t, "stop signal", r.StopSignal, syscall.SIGQUIT)
			}},
		{desc: "request annotations are kept but not ours",
			edit: func(c *Container) {
				c.Config.Annotations = map[string]string{"a": "b", AnnotationContainerType: "sandbox"}
			},
			check: func(t *testing.T, r *Result) {
				assertEqual(t, "a", r.Spec.Annotations["a"], "b")
				assertEqual(t, "type", r.Spec.Annotations[AnnotationContainerType], "container")
			}},
		{desc: "privileged container",
			edit: func(c *Container) {
				c.Sandbox.Linux.SecurityContext.Privileged = true
				c.Config.Linux.SecurityContext.Privileged = true
				c.Config.Linux.SecurityContext.Seccomp = &runtimeapi.SecurityProfile{ProfileType: runtimeapi.SecurityProfile_RuntimeDefault}
				c.Config.Linux.SecurityContext.MaskedPaths = []string{"/proc/kcore"}
				c.Node.CgroupV2 = true
				c.Node.CgroupMountOptions = []string{"nsdelegate"}
			},
			check: func(t *testing.T, r *Result) {
				s := r.Spec
				assertEqual(t, "caps", s.Process.Capabilities.Bounding, testHostCaps)
				assertEqual(t, "masked", s.Linux.MaskedPaths, []string(nil))
				assertEqual(t, "readonly paths", s.Linux.ReadonlyPaths, []string(nil))
				assertEqual(t, "seccomp", s.Linux.Seccomp, (*specs.LinuxSeccomp)(nil))
				assertEqual(t, "sysfs", mountAt(s, "/sys").Options, []string{"nosuid", "noexec", "nodev", "rw"})
				assertEqual(t, "cgroupfs", mountAt(s, "/sys/fs/cgroup").Options,
					[]string{"nosuid", "noexec", "nodev", "relatime", "rw", "nsdelegate"})
				assertEqual(t, "cgroup ns", hasNamespace(s, specs.CgroupNamespace), false)
				assertEqual(t, "device rules", s.Linux.Resources.Devices, []specs.LinuxDeviceCgroup{{Allow: true, Access: "rwm"}})
				assertEqual(t, "device count", len(s.Linux.Devices), 3)
			}},
		{desc: "cgroup v2 gives an unprivileged container its own cgroup namespace",
			edit: func(c *Container) {
				c.Node.CgroupV2 = true
				c.Node.CgroupMountOptions = []string{"nsdelegate"}
			},
			check: func(t *testing.T, r *Result) {
				assertEqual(t, "cgroup ns", hasNamespace(r.Spec, specs.CgroupNamespace), true)
				assertEqual(t, "cgroupfs", mountAt(r.Spec, "/sys/fs/cgroup").Options, []string{"nosuid", "noexec", "nodev", "relatime", "ro"})
			}},
		{desc: "security context",
			edit: func(c *Container) {
				sc := c.Config.Linux.SecurityContext
				sc.ReadonlyRootfs = true
				sc.NoNewPrivs = true
				sc.Capabilities = &runtimeapi.Capability{DropCapabilities: []string{"ALL"}, AddCapabilities: []string{"NET_BIND_SERVICE"}}
				sc.Seccomp = &runtimeapi.SecurityProfile{ProfileType: runtimeapi.SecurityProfile_RuntimeDefault}
				sc.RunAsUser = &runtimeapi.Int64Value{Value: 4242}
				c.Files = SandboxFiles{Hosts: "/pod/hosts", Shm: "/pod/shm"}
			},
			check: func(t *testing.T, r *Result) {
				s := r.Spec
				assertEqual(t, "readonly root", s.Root.Readonly, true)
				assertEqual(t, "no_new_privs", s.Process.NoNewPrivileges, true)
				assertEqual(t, "caps", s.Process.Capabilities.Effective, []string{"CAP_NET_BIND_SERVICE"})
				if s.Linux.Seccomp == nil || s.Linux.Seccomp.DefaultAction != specs.ActErrno {
					t.Errorf("want the default seccomp profile, got %+v", s.Linux.Seccomp)
				}
				assertEqual(t, "hosts", *mountAt(s, "/etc/hosts"), specs.Mount{
					Destination: "/etc/hosts", Type: "bind", Source: "/pod/hosts", Options: []string{"rbind", "rprivate", "ro"}})
				assertEqual(t, "shm", *mountAt(s, "/dev/shm"), specs.Mount{
					Destination: "/dev/shm", Type: "bind", Source: "/pod/shm", Options: []string{"rbind", "rprivate", "rw", "nosuid", "nodev", "noexec"}})
				assertEqual(t, "user", r.User, User{UID: 4242, AdditionalGIDs: []uint32{0}})
			}},
		{desc: "mounts: a /dev/shm of the request's own is left as asked",
			edit: func(c *Container) {
				c.Files = SandboxFiles{Shm: "/pod/shm"}
				c.Config.Mounts = []*runtimeapi.Mount{{ContainerPath: "/dev/shm", HostPath: "/volumes/cache"}}
			},
			check: func(t *testing.T, r *Result) {
				assertEqual(t, "shm", *mountAt(r.Spec, "/dev/shm"), specs.Mount{
					Destination: "/dev/shm", Type: "bind", Source: "/volumes/cache", Options: []string{"rbind", "rprivate", "rw"}})
			}},
		{desc: "mounts: request, pod files, termination log, propagation",
			edit: func(c *Container) {
				c.Files = SandboxFiles{Hosts: "/pod/hosts", ResolvConf: "/pod/resolv.conf", Hostname: "/pod/hostname"}
				c.TerminationMessageFile = "/state/c1/termination-log"
				c.Config.Mounts = []*runtimeapi.Mount{
					{ContainerPath: "/etc/hosts", HostPath: "/srv/my-hosts", Readonly: true},
					{ContainerPath: "/var/lib/x", HostPath: "/mnt/slave", Propagation: runtimeapi.MountPropagation_PROPAGATION_HOST_TO_CONTAINER},
				}
			},
			check: func(t *testing.T, r *Result) {
				s := r.Spec
				assertEqual(t, "own hosts wins", mountAt(s, "/etc/hosts").Source, "/srv/my-hosts")
				assertEqual(t, "resolv.conf", mountAt(s, "/etc/resolv.conf").Source, "/pod/resolv.conf")
				assertEqual(t, "hostname", mountAt(s, "/etc/hostname").Source, "/pod/hostname")
				assertEqual(t, "termination log", *mountAt(s, "/dev/termination-log"), specs.Mount{
					Destination: "/dev/termination-log", Type: "bind", Source: "/state/c1/termination-log",
					Options: []string{"rbind", "rprivate", "rw"}})
				assertEqual(t, "rootfs propagation", s.Linux.RootfsPropagation, "rslave")
				// Defaults first, binds after in depth order.
				var dsts []string
				for _, m := range s.Mounts {
					dsts = append(dsts, m.Destination)
				}
				assertEqual(t, "order", dsts, []string{"/proc", "/dev", "/dev/pts", "/dev/shm", "/dev/mqueue", "/sys", "/sys/fs/cgroup",
					"/etc/hosts", "/etc/hostname", "/etc/resolv.conf", "/dev/termination-log", "/var/lib/x"})
			}},
		{desc: "host IPC shares the host's /dev/shm",
			edit: func(c *Container) {
				c.Config.Linux.SecurityContext.NamespaceOptions = &runtimeapi.NamespaceOption{Ipc: runtimeapi.NamespaceMode_NODE}
				c.Files = SandboxFiles{Shm: "/pod/shm"}
			},
			check: func(t *testing.T, r *Result) {
				assertEqual(t, "shm", mountAt(r.Spec, "/dev/shm").Source, "/dev/shm")
				assertEqual(t, "ipc ns", hasNamespace(r.Spec, specs.IPCNamespace), false)
			}},
		{desc: "resources, oom floor, systemd cgroup",
			edit: func(c *Container) {
				c.Config.Linux.Resources = &runtimeapi.LinuxContainerResources{CpuShares: 1024, MemoryLimitInBytes: 1 << 20, OomScoreAdj: -997}
				c.Node.CgroupManager = SystemdManager
				c.Sandbox.Linux.CgroupParent = "kubepods-pod1.slice"
				c.Config.Devices = []*runtimeapi.Device{{HostPath: "/dev/fuse", ContainerPath: "/dev/fuse", Permissions: "rwm"}}
			},
			check: func(t *testing.T, r *Result) {
				s := r.Spec
				assertEqual(t, "oom", *s.Process.OOMScoreAdj, 0)
				assertEqual(t, "shares", *s.Linux.Resources.CPU.Shares, uint64(1024))
				assertEqual(t, "memory", *s.Linux.Resources.Memory.Limit, int64(1<<20))
				assertEqual(t, "cgroups path", s.Linux.CgroupsPath, "kubepods-pod1.slice:noded:c1")
				assertEqual(t, "devices", s.Linux.Devices, []specs.LinuxDevice{charDev("/dev/fuse", 10, 229)})
				assertEqual(t, "rules", len(s.Linux.Resources.Devices), 2)
			}},
		{desc: "cgroup parent override",
			edit: func(c *Container) {
				c.Sandbox.Linux.CgroupParent = "/kubepods/pod1"
				c.CgroupParent = "/other"
			},
			check: func(t *testing.T, r *Result) { assertEqual(t, "cgroups path", r.Spec.Linux.CgroupsPath, "/other/c1") }},
		{desc: "rlimits from the node",
			edit: func(c *Container) {
				c.Node.Rlimits = []specs.POSIXRlimit{{Type: "RLIMIT_NOFILE", Hard: 1048576, Soft: 1048576}}
			},
			check: func(t *testing.T, r *Result) { assertEqual(t, "rlimits", len(r.Spec.Process.Rlimits), 1) }},
		{desc: "empty ID", edit: func(c *Container) { c.ID = "" }, wantErr: errdefs.ErrInvalidArgument},
		{desc: "nil config", edit: func(c *Container) { c.Config = nil }, wantErr: errdefs.ErrInvalidArgument},
		{desc: "no metadata", edit: func(c *Container) { c.Config.Metadata = nil }, wantErr: errdefs.ErrInvalidArgument},
		{desc: "nil sandbox config", edit: func(c *Container) { c.Sandbox = nil }, wantErr: errdefs.ErrInvalidArgument},
		{desc: "relative rootfs", edit: func(c *Container) { c.RootfsPath = "rootfs" }, wantErr: errdefs.ErrInvalidArgument},
		{desc: "privileged in an unprivileged pod",
			edit:    func(c *Container) { c.Config.Linux.SecurityContext.Privileged = true },
			wantErr: errdefs.ErrInvalidArgument},
		{desc: "no command anywhere", edit: func(c *Container) { c.Config.Command = nil }, wantErr: errdefs.ErrInvalidArgument},
		{desc: "unknown user", edit: func(c *Container) { c.Config.Linux.SecurityContext.RunAsUsername = "ghost" },
			wantErr: errdefs.ErrInvalidArgument},
		{desc: "AppArmor runtime default",
			edit: func(c *Container) {
				c.Config.Linux.SecurityContext.Apparmor = &runtimeapi.SecurityProfile{ProfileType: runtimeapi.SecurityProfile_RuntimeDefault}
			},
			wantErr: errdefs.ErrInvalidArgument},
		{desc: "unknown capability",
			edit: func(c *Container) {
				c.Config.Linux.SecurityContext.Capabilities = &runtimeapi.Capability{AddCapabilities: []string{"WARP"}}
			},
			wantErr: errdefs.ErrInvalidArgument},
		{desc: "bad mount combination",
			edit: func(c *Container) {
				c.Config.Mounts = []*runtimeapi.Mount{{ContainerPath: "/d", HostPath: "/srv/d", RecursiveReadOnly: true}}
			},
			wantErr: errdefs.ErrInvalidArgument},
		{desc: "bad propagation",
			edit: func(c *Container) {
				c.Config.Mounts = []*runtimeapi.Mount{{ContainerPath: "/d", HostPath: "/srv/d", Propagation: 9}}
			},
			wantErr: errdefs.ErrInvalidArgument},
		{desc: "bad oom_score_adj",
			edit:    func(c *Container) { c.Config.Linux.Resources = &runtimeapi.LinuxContainerResources{OomScoreAdj: 5000} },
			wantErr: errdefs.ErrInvalidArgument},
		{desc: "bad stop signal", edit: func(c *Container) { c.Image.StopSignal = "SIGFOO" }, wantErr: errdefs.ErrInvalidArgument},
		{desc: "user namespaces",
			edit: func(c *Container) {
				c.Config.Linux.SecurityContext.NamespaceOptions = &runtimeapi.NamespaceOption{
					UsernsOptions: &runtimeapi.UserNamespace{Mode: runtimeapi.NamespaceMode_POD}}
			},
			wantErr: errdefs.ErrInvalidArgument},
		{desc: "node never detected",
			edit:    func(c *Container) { c.Node.HostCapabilities = nil },
			wantErr: errdefs.ErrFailedPrecondition},
	} {
		t.Run(tc.desc, func(t *testing.T) {
			c := testContainer(t)
			if tc.edit != nil {
				tc.edit(c)
			}
			r, err := c.Generate()
			if checkErr(t, err, tc.wantErr) && tc.check != nil {
				tc.check(t, r)
			}
		})
	}
}
