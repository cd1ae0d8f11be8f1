package specgen

import (
	"maps"
	"path/filepath"
	"slices"
	"strings"

	specs "github.com/opencontainers/runtime-spec/specs-go"
	runtimeapi "k8s.io/cri-api/pkg/apis/runtime/v1"

	"github.com/noded-dev/noded/internal/errdefs"
)

// Pod sysctls containerd adds when its enable_unprivileged_* options are on.
const (
	sysctlUnprivilegedPortStart = "net.ipv4.ip_unprivileged_port_start"
	sysctlPingGroupRange        = "net.ipv4.ping_group_range"
)

// Generate builds the spec of a pod's pause container: it holds the pod's
// namespaces and does nothing else, so it runs read-only, without new
// privileges, with the default capabilities and, unless the pod says
// otherwise, the default seccomp profile (or none when the pause program
// confines itself).
func (in *Sandbox) Generate() (*Result, error) {
	if err := in.validate(); err != nil {
		return nil, err
	}
	spec := &specs.Spec{
		Version:     specs.Version,
		Root:        &specs.Root{Path: in.RootfsPath, Readonly: true},
		Hostname:    in.hostname(),
		Annotations: sandboxAnnotations(in),
		Linux:       &specs.Linux{},
	}
	res := &Result{Spec: spec}
	steps := []func(*Sandbox, *Result) error{
		(*Sandbox).process,
		(*Sandbox).user,
		(*Sandbox).security,
		(*Sandbox).linux,
		(*Sandbox).seccomp,
	}
	for _, step := range steps {
		if err := step(in, res); err != nil {
			return nil, err
		}
	}
	return res, nil
}

func (in *Sandbox) validate() error {
	switch {
	case in.ID == "":
		return errdefs.InvalidArgument("sandbox ID is empty")
	case in.Config == nil || in.Config.GetMetadata() == nil:
		return errdefs.InvalidArgument("sandbox config or its metadata is missing")
	case !filepath.IsAbs(in.RootfsPath):
		return errdefs.InvalidArgument("pause rootfs %q is not an absolute path", in.RootfsPath)
	}
	return nil
}

func (in *Sandbox) securityContext() *runtimeapi.LinuxSandboxSecurityContext {
	return in.Config.GetLinux().GetSecurityContext()
}

func (in *Sandbox) hostNetwork() bool {
	return in.securityContext().GetNamespaceOptions().GetNetwork() == runtimeapi.NamespaceMode_NODE
}

// hostname is set only with the pod's own UTS namespace: runc refuses a
// host name for a process in the host's.
func (in *Sandbox) hostname() string {
	if in.hostNetwork() {
		return ""
	}
	return in.Config.GetHostname()
}

func (in *Sandbox) process(res *Result) error {
	args := append(append([]string{}, in.Image.Entrypoint...), in.Image.Cmd...)
	if len(args) == 0 {
		return errdefs.InvalidArgument("pause image %q has neither entrypoint nor cmd", in.ImageName)
	}
	cwd, err := workingDir("", in.Image)
	if err != nil {
		return err
	}
	adj, err := oomScoreAdj(sandboxOOMScoreAdj, &in.Node)
	if err != nil {
		return err
	}
	res.Spec.Process = &specs.Process{
		Args:            args,
		Env:             mergeEnv([]string{DefaultPathEnv}, in.Image.Env),
		Cwd:             cwd,
		NoNewPrivileges: true,
		OOMScoreAdj:     adj,
		Rlimits:         slices.Clone(in.Node.Rlimits),
	}
	return nil
}

// user runs the pause process as the pod's run_as_user/run_as_group, else
// as the pause image's USER.
func (in *Sandbox) user(res *Result) error {
	req, err := newUserRequest(in.securityContext(), "", in.Image.User)
	if err != nil {
		return err
	}
	if res.User, err = resolveUser(in.RootfsPath, req); err != nil {
		return err
	}
	userns, err := PodUserNamespace(in.Config)
	if err != nil {
		return err
	}
	if err := userMapped(res.User, userns); err != nil {
		return err
	}
	res.Spec.Process.User = specs.User{UID: res.User.UID, GID: res.User.GID, AdditionalGids: res.User.AdditionalGIDs}
	return nil
}

// security gives the pause process the default capabilities whatever the
// pod asks: privileged or not, it never needs more. The pod's AppArmor
// profile is left to its containers, as in containerd.
func (in *Sandbox) security(res *Result) error {
	caps, err := capabilities(nil, false, &in.Node)
	if err != nil {
		return err
	}
	res.Spec.Process.Capabilities = caps
	res.Spec.Linux.MaskedPaths = DefaultMaskedPaths()
	res.Spec.Linux.ReadonlyPaths = DefaultReadonlyPaths()
	return nil
}

// seccomp applies the pod's profile. Nothing requested means the runtime
// default here, whatever seccomp-when-empty says, since the pause process
// makes only a handful of calls, unless the pause program confines itself
// with a tighter filter of its own.
func (in *Sandbox) seccomp(res *Result) error {
	sc := in.securityContext()
	sp, deprecated := sc.GetSeccomp(), sc.GetSeccompProfilePath() //nolint:staticcheck // deprecated field, old clients
	if sp == nil && deprecated == "" {
		if in.PauseConfinesItself {
			res.Spec.Linux.Seccomp = nil
			return nil
		}
		sp = &runtimeapi.SecurityProfile{ProfileType: runtimeapi.SecurityProfile_RuntimeDefault}
	}
	p, err := seccompProfile(sp, deprecated, sc.GetPrivileged(), res.Spec, &in.Node)
	res.Spec.Linux.Seccomp = p
	return err
}

func (in *Sandbox) linux(res *Result) error {
	sc := in.securityContext()
	userns, err := PodUserNamespace(in.Config)
	if err != nil {
		return err
	}
	ns, err := sandboxNamespaces(sc.GetNamespaceOptions(), userns != nil, in.NetNS)
	if err != nil {
		return err
	}
	res.Spec.Linux.Namespaces = ns
	if userns != nil {
		res.Spec.Linux.UIDMappings, res.Spec.Linux.GIDMappings = userns.UIDs, userns.GIDs
	}
	res.Spec.Mounts = in.mountList()
	if userns != nil && in.hostNetwork() {
		res.Spec.Mounts = hostSysfs(res.Spec.Mounts)
	}
	if err := checkSysctls(in.Config.GetLinux().GetSysctls(), sc.GetNamespaceOptions()); err != nil {
		return err
	}
	res.Spec.Linux.Sysctl = in.sysctls(userns)
	shares := uint64(sandboxCPUShares)
	res.Spec.Linux.Resources = &specs.LinuxResources{
		Devices: []specs.LinuxDeviceCgroup{{Allow: false, Access: "rwm"}},
		CPU:     &specs.LinuxCPU{Shares: &shares},
	}
	parent := in.CgroupParent
	if parent == "" {
		parent = in.Config.GetLinux().GetCgroupParent()
	}
	res.Spec.Linux.CgroupsPath, err = cgroupsPath(in.Node.CgroupManager, parent, in.ID)
	return err
}

// mountList is containerd's pause mounts: the defaults without cgroupfs,
// the pod's /dev/shm (the host's with host IPC) and resolv.conf read-only.
// They are pod-owned files, so no HostFS preparation applies.
func (in *Sandbox) mountList() []specs.Mount {
	var out []specs.Mount
	shm := in.Files.Shm
	if in.securityContext().GetNamespaceOptions().GetIpc() == runtimeapi.NamespaceMode_NODE {
		shm = hostDevShm
	}
	for _, m := range defaultMounts(false, nil) {
		switch {
		case m.Destination == "/sys/fs/cgroup":
		case m.Destination == devShm && shm != "":
		default:
			out = append(out, m)
		}
	}
	ro := []string{"rbind", "ro", "nosuid", "nodev", "noexec"}
	if shm != "" {
		out = append(out, specs.Mount{Destination: devShm, Type: "bind", Source: shm, Options: ro})
	}
	if in.Files.ResolvConf != "" {
		out = append(out, specs.Mount{Destination: etcResolvConf, Type: "bind", Source: in.Files.ResolvConf, Options: ro})
	}
	return out
}

// ipcSysctls are the sysctls of the IPC namespace (besides fs.mqueue.*).
var ipcSysctls = map[string]bool{
	"kernel.msgmax": true, "kernel.msgmnb": true, "kernel.msgmni": true, "kernel.sem": true,
	"kernel.shmall": true, "kernel.shmmax": true, "kernel.shmmni": true, "kernel.shm_rmid_forced": true,
}

// checkSysctls refuses sysctls that are not the pod's to set: one of no
// namespace (it would change the host), or of a namespace the pod shares
// with the host. The kubelet checks this too; a client of the socket may
// not, and libcontainer's refusal came from the pause container's init,
// as an error of no class.
func checkSysctls(sysctls map[string]string, ns *runtimeapi.NamespaceOption) error {
	for k := range sysctls {
		var host bool
		switch {
		case ipcSysctls[k] || strings.HasPrefix(k, "fs.mqueue."):
			host = ns.GetIpc() == runtimeapi.NamespaceMode_NODE
		case strings.HasPrefix(k, "net."):
			host = ns.GetNetwork() == runtimeapi.NamespaceMode_NODE
		case k == "kernel.hostname" || k == "kernel.domainname":
			host = ns.GetNetwork() == runtimeapi.NamespaceMode_NODE // the UTS namespace goes with the network
		default:
			return errdefs.InvalidArgument("sysctl %q is not in a namespace of the pod", k)
		}
		if host {
			return errdefs.InvalidArgument("sysctl %q is of a namespace the pod shares with the host", k)
		}
	}
	return nil
}

// sysctls are the pod's, passed through (checkSysctls checked them against
// the pod's namespaces), plus containerd's optional defaults for a pod
// with its own network (the ICMP range within a user namespace's gids).
func (in *Sandbox) sysctls(userns *IDMappings) map[string]string {
	out := maps.Clone(in.Config.GetLinux().GetSysctls())
	if out == nil {
		out = map[string]string{}
	}
	if !in.hostNetwork() {
		if _, set := out[sysctlUnprivilegedPortStart]; in.Node.UnprivilegedPorts && !set {
			out[sysctlUnprivilegedPortStart] = "0"
		}
		if _, set := out[sysctlPingGroupRange]; in.Node.UnprivilegedICMP && !set {
			out[sysctlPingGroupRange] = pingGroupRange(userns)
		}
	}
	if len(out) == 0 {
		return nil
	}
	return out
}
