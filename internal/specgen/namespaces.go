package specgen

import (
	specs "github.com/opencontainers/runtime-spec/specs-go"
	runtimeapi "k8s.io/cri-api/pkg/apis/runtime/v1"

	"github.com/noded-dev/noded/internal/errdefs"
)

// containerNamespaces returns the namespaces of an application container:
// POD joins the pause process's, NODE stays in the host's (no entry),
// CONTAINER (pid only) gets a new one and TARGET joins the target's. The
// UTS namespace follows the network, as in the kubelet and containerd: a
// host-network pod uses the host's name. The container always gets its own
// mount namespace, and a cgroup namespace on cgroup v2 unless privileged
// (containerd's rule, so that /sys/fs/cgroup shows only its own tree).
// With userns it joins the pod's user namespace (containerUserns decides),
// which runc enters first, so that the namespaces the container makes
// belong to it.
func containerNamespaces(ns *runtimeapi.NamespaceOption, userns bool, pod Namespaces, targetPID string, ownCgroupNS bool) ([]specs.LinuxNamespace, error) {
	out := []specs.LinuxNamespace{{Type: specs.MountNamespace}}
	if userns {
		if pod.User == "" {
			return nil, errdefs.InvalidArgument("the pod has no user namespace to join")
		}
		// No mappings with the path: runc reads them from the namespace.
		out = append(out, specs.LinuxNamespace{Type: specs.UserNamespace, Path: pod.User})
	}
	net, err := joinPod(specs.NetworkNamespace, ns.GetNetwork(), pod.Network)
	if err != nil {
		return nil, err
	}
	out = append(out, net...)
	if ns.GetNetwork() == runtimeapi.NamespaceMode_POD {
		uts, err := joinPod(specs.UTSNamespace, runtimeapi.NamespaceMode_POD, pod.UTS)
		if err != nil {
			return nil, err
		}
		out = append(out, uts...)
	}
	ipc, err := joinPod(specs.IPCNamespace, ns.GetIpc(), pod.IPC)
	if err != nil {
		return nil, err
	}
	out = append(out, ipc...)
	pid, err := containerPID(ns, pod.PID, targetPID)
	if err != nil {
		return nil, err
	}
	out = append(out, pid...)
	if ownCgroupNS {
		out = append(out, specs.LinuxNamespace{Type: specs.CgroupNamespace})
	}
	return out, nil
}

// joinPod handles the modes valid for the network and IPC namespaces.
func joinPod(t specs.LinuxNamespaceType, mode runtimeapi.NamespaceMode, path string) ([]specs.LinuxNamespace, error) {
	switch mode {
	case runtimeapi.NamespaceMode_NODE:
		return nil, nil
	case runtimeapi.NamespaceMode_POD:
		if path == "" {
			return nil, errdefs.InvalidArgument("the pod has no %s namespace to join", t)
		}
		return []specs.LinuxNamespace{{Type: t, Path: path}}, nil
	}
	return nil, errdefs.InvalidArgument("namespace mode %s is not valid for the %s namespace", mode, t)
}

func containerPID(ns *runtimeapi.NamespaceOption, podPID, targetPID string) ([]specs.LinuxNamespace, error) {
	switch ns.GetPid() {
	case runtimeapi.NamespaceMode_CONTAINER:
		return []specs.LinuxNamespace{{Type: specs.PIDNamespace}}, nil
	case runtimeapi.NamespaceMode_TARGET:
		if ns.GetTargetId() == "" || targetPID == "" {
			return nil, errdefs.InvalidArgument("pid namespace mode TARGET needs a target container and its namespace")
		}
		return []specs.LinuxNamespace{{Type: specs.PIDNamespace, Path: targetPID}}, nil
	}
	return joinPod(specs.PIDNamespace, ns.GetPid(), podPID)
}

// sandboxNamespaces returns the pause process's namespaces: new ones for
// every POD (or, for pid, CONTAINER) mode, none for NODE. The network one
// is the namespace prepared for the pod when there is one. With userns the
// pause process makes the pod's user namespace (the caller sets its
// mappings), and runc makes the others inside it.
func sandboxNamespaces(ns *runtimeapi.NamespaceOption, userns bool, netNS string) ([]specs.LinuxNamespace, error) {
	out := []specs.LinuxNamespace{{Type: specs.MountNamespace}}
	if userns {
		out = append(out, specs.LinuxNamespace{Type: specs.UserNamespace})
	}
	switch ns.GetNetwork() {
	case runtimeapi.NamespaceMode_NODE:
	case runtimeapi.NamespaceMode_POD:
		out = append(out,
			specs.LinuxNamespace{Type: specs.NetworkNamespace, Path: netNS},
			specs.LinuxNamespace{Type: specs.UTSNamespace})
	default:
		return nil, errdefs.InvalidArgument("namespace mode %s is not valid for a pod's network", ns.GetNetwork())
	}
	switch ns.GetIpc() {
	case runtimeapi.NamespaceMode_NODE:
	case runtimeapi.NamespaceMode_POD:
		out = append(out, specs.LinuxNamespace{Type: specs.IPCNamespace})
	default:
		return nil, errdefs.InvalidArgument("namespace mode %s is not valid for a pod's IPC", ns.GetIpc())
	}
	switch ns.GetPid() {
	case runtimeapi.NamespaceMode_NODE:
	case runtimeapi.NamespaceMode_POD, runtimeapi.NamespaceMode_CONTAINER:
		// With CONTAINER each container has its own; the pause process
		// still gets one so it does not see the host's processes.
		out = append(out, specs.LinuxNamespace{Type: specs.PIDNamespace})
	default:
		return nil, errdefs.InvalidArgument("namespace mode %s is not valid for a pod's pid", ns.GetPid())
	}
	return out, nil
}
