package specgen

import (
	"fmt"
	"path"
	"strconv"

	specs "github.com/opencontainers/runtime-spec/specs-go"
	runtimeapi "k8s.io/cri-api/pkg/apis/runtime/v1"

	"github.com/noded-dev/noded/internal/errdefs"
)

// User namespaces (KEP-127, a pod with hostUsers: false).
//
// A pod asks for one with NamespaceOption.userns_options mode POD and one
// uid and one gid mapping, chosen by the kubelet (container IDs 0-65535 to
// a range of the host's no other pod uses). The pause process creates it,
// as it creates the pod's IPC, UTS and PID namespaces, and holds it; every
// container of the pod joins it through the pause process (a container
// cannot have one of its own: modes CONTAINER and TARGET are refused). The
// pod's network namespace is made by the pause process too, inside the
// user namespace: a network namespace the host's user namespace owns would
// keep the pod's root from mounting sysfs and setting net.* sysctls.
//
// Files: the root file systems (the pause's and every container's) are
// ID-mapped by containers/storage (see internal/storage), so that the
// image's root-owned files are the pod's root's; a CRI mount with
// uid/gid mappings is an ID-mapped bind mount (runc, mount_setattr); a CRI
// mount without is a plain bind mount, as in CRI-O and containerd (the
// kubelet sends none today); the pod's own files noded makes (/etc/hosts,
// /etc/hostname, /etc/resolv.conf, the termination log) are ID-mapped
// with the pod's mappings, as containerd does, so that they belong to the
// pod's root.

// maxID bounds an ID mapping: IDs are 32-bit, and (uid_t)-1 is no ID.
const maxID = 1<<32 - 1

// IDMappings are a user namespace's uid and gid mappings.
type IDMappings struct {
	UIDs []specs.LinuxIDMapping
	GIDs []specs.LinuxIDMapping
}

// PodUserNamespace returns the mappings of a pod's own user namespace, or
// nil when the pod runs in the host's (no options, as older kubelets send,
// or mode NODE). A request noded cannot honour is InvalidArgument: modes
// CONTAINER and TARGET, anything but one uid and one gid mapping, a
// mapping of container ID 0 missing, and a user namespace with the host's
// IPC or PID namespace (the kubelet refuses those pods too: the pod's root
// could not mount /dev/mqueue or /proc there). The host's network is
// allowed (user_namespaces_host_network): see hostSysfs.
func PodUserNamespace(cfg *runtimeapi.PodSandboxConfig) (*IDMappings, error) {
	ns := cfg.GetLinux().GetSecurityContext().GetNamespaceOptions()
	m, err := userNamespace(ns.GetUsernsOptions())
	if err != nil || m == nil {
		return nil, err
	}
	for what, mode := range map[string]runtimeapi.NamespaceMode{"IPC": ns.GetIpc(), "PID": ns.GetPid()} {
		if mode == runtimeapi.NamespaceMode_NODE {
			return nil, errdefs.InvalidArgument("a pod with its own user namespace cannot use the host's %s namespace", what)
		}
	}
	return m, nil
}

// userNamespace checks user namespace options and returns their mappings,
// nil for the host's user namespace.
func userNamespace(u *runtimeapi.UserNamespace) (*IDMappings, error) {
	if u == nil {
		// Not NODE by GetMode: POD is the enum's zero.
		return nil, nil
	}
	switch u.GetMode() {
	case runtimeapi.NamespaceMode_NODE:
		if len(u.GetUids()) > 0 || len(u.GetGids()) > 0 {
			return nil, errdefs.InvalidArgument("user namespace mode NODE (the host's) takes no ID mappings")
		}
		return nil, nil
	case runtimeapi.NamespaceMode_POD:
	case runtimeapi.NamespaceMode_CONTAINER, runtimeapi.NamespaceMode_TARGET:
		return nil, errdefs.InvalidArgument("user namespace mode %s is not supported: a pod's containers share the pod's user namespace (mode POD) or the host's (mode NODE)", u.GetMode())
	default:
		return nil, errdefs.InvalidArgument("unknown user namespace mode %d", u.GetMode())
	}
	uids, err := idMapping("uid", u.GetUids())
	if err != nil {
		return nil, err
	}
	gids, err := idMapping("gid", u.GetGids())
	if err != nil {
		return nil, err
	}
	return &IDMappings{UIDs: uids, GIDs: gids}, nil
}

// idMapping checks a pod's mapping of one kind: exactly one range (the
// kubelet sends one; the containers/storage and kubelet code paths know
// only one), starting at container ID 0 so that the pod has a root, of
// non-zero length and within the 32-bit ID space on both sides.
func idMapping(kind string, ms []*runtimeapi.IDMapping) ([]specs.LinuxIDMapping, error) {
	if len(ms) != 1 {
		return nil, errdefs.InvalidArgument("a pod's user namespace needs exactly one %s mapping, got %d", kind, len(ms))
	}
	m := ms[0]
	if m.GetContainerId() != 0 {
		return nil, errdefs.InvalidArgument("the %s mapping of a pod's user namespace must map container ID 0 (its root), not start at %d", kind, m.GetContainerId())
	}
	if err := checkRange(kind, m); err != nil {
		return nil, err
	}
	return []specs.LinuxIDMapping{{ContainerID: m.GetContainerId(), HostID: m.GetHostId(), Size: m.GetLength()}}, nil
}

// checkRange refuses an empty range and one past the last ID.
func checkRange(kind string, m *runtimeapi.IDMapping) error {
	switch {
	case m.GetLength() == 0:
		return errdefs.InvalidArgument("%s mapping %s has length 0", kind, formatMapping(m))
	case uint64(m.GetContainerId())+uint64(m.GetLength()) > maxID, uint64(m.GetHostId())+uint64(m.GetLength()) > maxID:
		return errdefs.InvalidArgument("%s mapping %s goes past the last ID, %d", kind, formatMapping(m), uint64(maxID-1))
	}
	return nil
}

func formatMapping(m *runtimeapi.IDMapping) string {
	return fmt.Sprintf("%d:%d:%d", m.GetContainerId(), m.GetHostId(), m.GetLength())
}

// ContainerUserNamespace returns the mappings of the user namespace a
// container runs in, its pod's (nil: the host's), for its root file
// system; it refuses a container whose options are not its pod's, as
// Generate would, before anything is made for it.
func ContainerUserNamespace(ctr *runtimeapi.ContainerConfig, pod *runtimeapi.PodSandboxConfig) (*IDMappings, error) {
	joins, err := containerUserns(ctr.GetLinux().GetSecurityContext().GetNamespaceOptions(),
		pod.GetLinux().GetSecurityContext().GetNamespaceOptions())
	if err != nil || !joins {
		return nil, err
	}
	return PodUserNamespace(pod)
}

// containerUserns returns whether a container joins its pod's user
// namespace. The kubelet gives a container its pod's options; none at all
// (another client) follows the pod. Anything else is refused: the
// container's root file system and the pod's namespaces belong to the
// pod's user namespace.
func containerUserns(ctr, pod *runtimeapi.NamespaceOption) (bool, error) {
	podMap, err := userNamespace(pod.GetUsernsOptions())
	if err != nil {
		return false, err
	}
	if ctr.GetUsernsOptions() == nil {
		return podMap != nil, nil
	}
	ctrMap, err := userNamespace(ctr.GetUsernsOptions())
	if err != nil {
		return false, err
	}
	if !sameMappings(ctrMap, podMap) {
		return false, errdefs.InvalidArgument("the container's user namespace (%s) is not its pod's (%s): a pod's containers share its user namespace",
			describeUserns(ctrMap), describeUserns(podMap))
	}
	return podMap != nil, nil
}

func sameMappings(a, b *IDMappings) bool {
	if a == nil || b == nil {
		return a == b
	}
	return equalIDMaps(a.UIDs, b.UIDs) && equalIDMaps(a.GIDs, b.GIDs)
}

func equalIDMaps(a, b []specs.LinuxIDMapping) bool {
	if len(a) != len(b) {
		return false
	}
	for i := range a {
		if a[i] != b[i] {
			return false
		}
	}
	return true
}

func describeUserns(m *IDMappings) string {
	if m == nil {
		return "the host's"
	}
	return "uids " + formatIDMaps(m.UIDs) + ", gids " + formatIDMaps(m.GIDs)
}

func formatIDMaps(ms []specs.LinuxIDMapping) string {
	s := ""
	for i, m := range ms {
		if i > 0 {
			s += ","
		}
		s += fmt.Sprintf("%d:%d:%d", m.ContainerID, m.HostID, m.Size)
	}
	return s
}

// mountIDMappings turns a CRI mount's uid and gid mappings into the OCI
// mount's: an ID-mapped bind mount (runc sets MOUNT_ATTR_IDMAP on it).
// Both or neither must be given: the kernel maps uids and gids of a mount
// with one user namespace.
func mountIDMappings(m *runtimeapi.Mount) (uids, gids []specs.LinuxIDMapping, err error) {
	if len(m.GetUidMappings()) == 0 && len(m.GetGidMappings()) == 0 {
		return nil, nil, nil
	}
	if len(m.GetUidMappings()) == 0 || len(m.GetGidMappings()) == 0 {
		return nil, nil, errdefs.InvalidArgument("ID-mapped mount at %q needs both uid and gid mappings", m.GetContainerPath())
	}
	conv := func(kind string, ms []*runtimeapi.IDMapping) ([]specs.LinuxIDMapping, error) {
		out := make([]specs.LinuxIDMapping, 0, len(ms))
		for _, x := range ms {
			if err := checkRange(kind+" (mount "+strconv.Quote(m.GetContainerPath())+")", x); err != nil {
				return nil, err
			}
			out = append(out, specs.LinuxIDMapping{ContainerID: x.GetContainerId(), HostID: x.GetHostId(), Size: x.GetLength()})
		}
		return out, nil
	}
	if uids, err = conv("uid", m.GetUidMappings()); err != nil {
		return nil, nil, err
	}
	gids, err = conv("gid", m.GetGidMappings())
	return uids, gids, err
}

// pingGroupRange is containerd's unprivileged ICMP range for a pod's own
// network namespace: every gid. In a user namespace the kernel takes only
// gids mapped there, so the range is the pod's mapped gids.
func pingGroupRange(userns *IDMappings) string {
	if userns == nil {
		return "0 2147483647"
	}
	var last uint64
	for _, m := range userns.GIDs {
		if end := uint64(m.ContainerID) + uint64(m.Size) - 1; end > last {
			last = end
		}
	}
	return "0 " + strconv.FormatUint(min(last, 2147483647), 10)
}

// userns reports whether the container joins its pod's user namespace.
func (in *Container) userns() (bool, error) {
	return containerUserns(in.Config.GetLinux().GetSecurityContext().GetNamespaceOptions(),
		in.Sandbox.GetLinux().GetSecurityContext().GetNamespaceOptions())
}

// idmapPodFiles ID-maps the bind mounts of the pod's files noded made
// (extra: /etc/hosts, /etc/hostname, /etc/resolv.conf, the termination
// log) with the pod's user namespace, as containerd does: they are the
// host root's, and would be the overflow ID ("nobody") to the pod, which
// could then not write its termination message. runc's "idmap" option
// without mappings takes the user namespace the container joins. The
// pod's /dev/shm is left as it is: its tmpfs is writable by all (mode
// 1777), and the host's, with host IPC, is not the pod's to own. binds
// are bindMounts(all), in the same order.
func idmapPodFiles(all []*runtimeapi.Mount, binds []specs.Mount, extra []*runtimeapi.Mount) {
	for i, m := range all {
		for _, e := range extra {
			if m == e && path.Clean(m.GetContainerPath()) != devShm {
				binds[i].Options = append(binds[i].Options, "idmap")
			}
		}
	}
}

// hostSysfs replaces the sysfs mount of a pod with a user namespace and
// the host's network (as containerd does): the kernel refuses the pod's
// root a sysfs of a network namespace its user namespace does not own, so
// the pod gets the host's /sys, bound recursively read-only.
func hostSysfs(mounts []specs.Mount) []specs.Mount {
	out := make([]specs.Mount, 0, len(mounts))
	for _, m := range mounts {
		if m.Destination == "/sys" && m.Type == "sysfs" {
			m = specs.Mount{Destination: "/sys", Type: "bind", Source: "/sys", Options: []string{"rbind", "rro", "nosuid", "nodev", "noexec"}}
		}
		out = append(out, m)
	}
	return out
}

// userMapped refuses a process identity its user namespace cannot hold
// (m nil: the host's holds any): runc would fail to switch to an unmapped
// uid or gid with a bare EINVAL from the container's init.
func userMapped(u User, m *IDMappings) error {
	if m == nil {
		return nil
	}
	if !idMapped(u.UID, m.UIDs) {
		return errdefs.InvalidArgument("uid %d is not mapped in the pod's user namespace (uids %s)", u.UID, formatIDMaps(m.UIDs))
	}
	for _, g := range append([]uint32{u.GID}, u.AdditionalGIDs...) {
		if !idMapped(g, m.GIDs) {
			return errdefs.InvalidArgument("gid %d is not mapped in the pod's user namespace (gids %s)", g, formatIDMaps(m.GIDs))
		}
	}
	return nil
}

func idMapped(id uint32, ms []specs.LinuxIDMapping) bool {
	for _, m := range ms {
		if uint64(id) >= uint64(m.ContainerID) && uint64(id) < uint64(m.ContainerID)+uint64(m.Size) {
			return true
		}
	}
	return false
}

// usernsMappings are the mappings of the user namespace the container
// runs in, nil for the host's.
func (in *Container) usernsMappings() (*IDMappings, error) {
	return ContainerUserNamespace(in.Config, in.Sandbox)
}
