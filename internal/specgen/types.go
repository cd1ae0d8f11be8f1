// Package specgen turns CRI requests into OCI runtime specs: Container for
// an application container and Sandbox for a pod's pause container.
//
// Generation is pure apart from a few well-defined looks at the machine:
// the container's own /etc/passwd and /etc/group (read through os.Root so a
// symlink in the image can never point at the host's files), a localhost
// seccomp profile named by the request, and the host lookups behind HostFS
// (device nodes, bind-mount sources, mount propagation). Facts about noded's
// own process (capabilities, oom_score_adj, cgroup version) are gathered once
// by DetectNode and passed in, so tests can state them.
//
// The rules follow containerd's CRI plugin unless a comment says otherwise,
// because the kubelet and critest are written against its behaviour.
package specgen

import (
	"os"
	"strconv"
	"syscall"

	ocispec "github.com/opencontainers/image-spec/specs-go/v1"
	specs "github.com/opencontainers/runtime-spec/specs-go"
	runtimeapi "k8s.io/cri-api/pkg/apis/runtime/v1"
)

// Cgroup managers, as in noded's configuration.
const (
	CgroupfsManager = "cgroupfs"
	SystemdManager  = "systemd"
)

// Node is what generation needs to know about the machine and about noded's
// configuration. It is the same for every container; DetectNode fills the
// host facts once at start-up and the daemon adds its configuration.
type Node struct {
	// HostCapabilities are the capabilities noded holds (effective and
	// bounding), as "CAP_" names. A container can never get more: runc would
	// fail to raise a capability its parent lacks.
	HostCapabilities []string
	// DefaultCapabilities is the set a container starts from before the
	// request's add/drop. Nil means DefaultCapabilities().
	DefaultCapabilities []string
	// OOMScoreAdjMin is the lowest oom_score_adj noded may give a process:
	// its own, since lowering it needs CAP_SYS_RESOURCE.
	OOMScoreAdjMin int
	// CgroupV2 is true on a unified (cgroup v2 only) hierarchy.
	CgroupV2 bool
	// SwapAccounting is true when the memory controller can limit swap.
	SwapAccounting bool
	// Hugetlb is true when the hugetlb controller is present.
	Hugetlb bool
	// CgroupMountOptions are super-block options of the host's cgroup2 mount
	// that a container sharing the host cgroup namespace must repeat, since
	// mounting cgroup2 again rewrites the shared super block's options
	// (nsdelegate, memory_recursiveprot).
	CgroupMountOptions []string
	// Hostname is the node's host name, the HOSTNAME of a container whose
	// pod has none.
	Hostname string

	// CgroupManager is CgroupfsManager (default) or SystemdManager.
	CgroupManager string
	// UnprivilegedPorts and UnprivilegedICMP add containerd's pod sysctls
	// net.ipv4.ip_unprivileged_port_start=0 and net.ipv4.ping_group_range
	// to pods with their own network namespace, unless the pod sets them.
	UnprivilegedPorts bool
	UnprivilegedICMP  bool
	// Rlimits are given to every container and pause process. Nil (the
	// default, as in containerd) lets them inherit noded's limits.
	Rlimits []specs.POSIXRlimit

	// SeccompProfileRoot, when set, is the directory Localhost seccomp
	// profiles must resolve into (the kubelet's <root-dir>/seccomp); a
	// profile elsewhere, reached through ".." or a symlink, is refused.
	// Empty allows any absolute path, as containerd and CRI-O do (neither
	// has such a setting; the kubelet dropped --seccomp-profile-root).
	SeccompProfileRoot string
	// SeccompUnconfinedWhenEmpty runs a container whose request names no
	// seccomp profile unconfined, as containerd does, instead of with the
	// runtime default (CRI-O's default, and noded's). The kubelet always
	// names one; this is for other clients (config seccomp-when-empty).
	SeccompUnconfinedWhenEmpty bool

	// FS answers the host lookups. Nil means the real host (OSFS).
	FS HostFS
	// CDI resolves CDI devices (ContainerConfig.CDI_devices and the
	// cdi.k8s.io/ annotations) and applies their edits; nil: a container
	// asking for one is refused.
	CDI CDIInjector
}

// HostFS is the part of the host filesystem generation looks at. Tests use a
// fake; OSFS is the real one.
type HostFS interface {
	// Devices returns the device nodes at path after following symlinks: the
	// node itself (Path "") when path is a device, every node below it
	// (Path relative to it) when it is a directory.
	Devices(path string) ([]specs.LinuxDevice, error)
	// BindSource prepares a bind mount source: it creates path as a
	// directory when missing, as containerd and CRI-O do, and returns it with
	// symlinks resolved.
	BindSource(path string) (string, error)
	// MountPropagation reports whether the mount holding path is shared or
	// a slave, which rshared and rslave bind mounts need to be useful.
	MountPropagation(path string) (shared, slave bool, err error)
}

// Namespaces are the namespaces of a pod's pause process, as paths that
// setns can open (/proc/<pid>/ns/<type> or a bind-mounted pin). An empty
// path means the pod has no such namespace of its own.
type Namespaces struct {
	Network string
	IPC     string
	UTS     string
	PID     string
	// User is joined only by the containers of a pod with a user
	// namespace of its own (see userns.go).
	User string
}

// NamespacesOfPID returns the namespace paths of a running process.
func NamespacesOfPID(pid int) Namespaces {
	p := "/proc/" + strconv.Itoa(pid) + "/ns/"
	return Namespaces{Network: p + "net", IPC: p + "ipc", UTS: p + "uts", PID: p + "pid", User: p + "user"}
}

// SandboxFiles are the files a pod sandbox owns and shares with its
// containers. An empty path leaves the container with its image's file (or,
// for Shm, a private tmpfs). A path that is set must exist: a missing bind
// source is created as a directory, as for any CRI mount.
type SandboxFiles struct {
	Hosts      string
	ResolvConf string
	Hostname   string
	Shm        string
}

// Container is the input for one application container.
type Container struct {
	// ID is the container's ID; SandboxID its pod's.
	ID        string
	SandboxID string
	Config    *runtimeapi.ContainerConfig
	Sandbox   *runtimeapi.PodSandboxConfig
	// Image is the config of the container's image; ImageName the name the
	// request used, recorded in an annotation.
	Image     ocispec.ImageConfig
	ImageName string
	// RootfsPath is the container's mounted root filesystem.
	RootfsPath string
	// Namespaces are the pod's (its pause process's).
	Namespaces Namespaces
	// TargetPIDNamespace is the PID namespace of the container named by
	// NamespaceOption.target_id; the caller resolves the ID.
	TargetPIDNamespace string
	Files              SandboxFiles
	// TerminationMessageFile is a host file (under the container's state
	// directory, created by the caller) bind-mounted read-write at the
	// path of the io.kubernetes.container.terminationMessagePath annotation
	// (default /dev/termination-log), unless a CRI mount is already there
	// (the kubelet mounts its own).
	TerminationMessageFile string
	// ImageVolumes are the host paths of the image mounts of Config.Mounts
	// (Mount.image), by their index there: the image's read-only file
	// system as the caller mounted it, with the mount's image_sub_path
	// resolved in it (see imagemounts.go).
	ImageVolumes map[int]string
	// CgroupParent overrides the sandbox config's cgroup_parent.
	CgroupParent string
	Node         Node
}

// Sandbox is the input for a pod's pause container.
type Sandbox struct {
	ID     string
	Config *runtimeapi.PodSandboxConfig
	// Image is the pause image's config: its entrypoint and cmd are the
	// pause command.
	Image     ocispec.ImageConfig
	ImageName string
	// PauseConfinesItself says the pause program installs its own seccomp
	// filter (noded's built-in pause does): when the pod asks for no
	// profile, the container then gets none, which spares compiling the
	// runtime default profile on every pod start.
	PauseConfinesItself bool
	RootfsPath          string
	// NetNS is the network namespace prepared for the pod (by CNI). Empty
	// with a POD network mode gives the pause process a new, empty one.
	NetNS string
	// Files.Shm and Files.ResolvConf are mounted into the pause container.
	Files SandboxFiles
	// CgroupParent overrides the config's cgroup_parent.
	CgroupParent string
	Node         Node
}

// Result is a generated spec and what the caller reports or needs besides it.
type Result struct {
	Spec *specs.Spec
	// User is the identity the process starts with (ContainerStatus.user).
	User User
	// StopSignal is the signal that stops the container: the request's, else
	// the image's, else 0 (the caller's default, SIGTERM).
	StopSignal syscall.Signal
}

// User is a process's initial identity.
type User struct {
	UID            uint32
	GID            uint32
	AdditionalGIDs []uint32
}

// CRI returns u as ContainerStatus reports it.
func (u User) CRI() *runtimeapi.ContainerUser {
	groups := make([]int64, 0, len(u.AdditionalGIDs))
	for _, g := range u.AdditionalGIDs {
		groups = append(groups, int64(g))
	}
	return &runtimeapi.ContainerUser{Linux: &runtimeapi.LinuxContainerUser{
		Uid: int64(u.UID), Gid: int64(u.GID), SupplementalGroups: groups,
	}}
}

// fs returns the HostFS to use.
func (n *Node) fs() HostFS {
	if n.FS != nil {
		return n.FS
	}
	return OSFS{}
}

// fileMode is a helper for device modes in tests and the OS walker.
func fileMode(m os.FileMode) *os.FileMode { return &m }
