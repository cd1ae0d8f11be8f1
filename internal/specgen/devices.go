package specgen

import (
	"path"
	"slices"
	"strings"

	specs "github.com/opencontainers/runtime-spec/specs-go"
	runtimeapi "k8s.io/cri-api/pkg/apis/runtime/v1"

	"github.com/noded-dev/noded/internal/errdefs"
)

// devices returns the device nodes to create in the container and the
// device cgroup rules: deny everything, then allow each requested device
// with its permissions (runc adds its own default set: null, zero, tty…).
// A privileged container gets every host device and access to all.
func devices(reqs []*runtimeapi.Device, privileged bool, fs HostFS) ([]specs.LinuxDevice, []specs.LinuxDeviceCgroup, error) {
	var nodes []specs.LinuxDevice
	rules := []specs.LinuxDeviceCgroup{{Allow: false, Access: "rwm"}}
	for _, d := range reqs {
		devs, access, err := requestedDevices(d, fs)
		if err != nil {
			return nil, nil, err
		}
		for i := range devs {
			nodes = append(nodes, devs[i])
			rules = append(rules, specs.LinuxDeviceCgroup{
				Allow: true, Type: devs[i].Type, Major: &devs[i].Major, Minor: &devs[i].Minor, Access: access,
			})
		}
	}
	if !privileged {
		return nodes, rules, nil
	}
	host, err := fs.Devices("/dev")
	if err != nil {
		return nil, nil, errdefs.FailedPrecondition("listing host devices: %v", err)
	}
	for _, h := range host {
		h.Path = path.Join("/dev", h.Path)
		// A requested device keeps its own path and mode.
		if !slices.ContainsFunc(nodes, func(n specs.LinuxDevice) bool { return n.Path == h.Path }) {
			nodes = append(nodes, h)
		}
	}
	return nodes, []specs.LinuxDeviceCgroup{{Allow: true, Access: "rwm"}}, nil
}

// requestedDevices resolves one CRI device: a node, or a directory of nodes
// placed under the container path. The container path defaults to the host
// path, as in containerd.
func requestedDevices(d *runtimeapi.Device, fs HostFS) ([]specs.LinuxDevice, string, error) {
	access, err := devicePermissions(d.GetPermissions())
	if err != nil {
		return nil, "", err
	}
	if !path.IsAbs(d.GetHostPath()) {
		return nil, "", errdefs.InvalidArgument("device host path %q is not absolute", d.GetHostPath())
	}
	dst := d.GetContainerPath()
	if dst == "" {
		dst = d.GetHostPath()
	}
	if !path.IsAbs(dst) {
		return nil, "", errdefs.InvalidArgument("device container path %q is not absolute", dst)
	}
	devs, err := fs.Devices(d.GetHostPath())
	if err != nil {
		return nil, "", errdefs.FailedPrecondition("device %q: %v", d.GetHostPath(), err)
	}
	if len(devs) == 0 {
		return nil, "", errdefs.FailedPrecondition("device %q: no device nodes found", d.GetHostPath())
	}
	for i := range devs {
		devs[i].Path = path.Join(dst, devs[i].Path)
	}
	return devs, access, nil
}

// devicePermissions validates a cgroup access string; empty means all.
func devicePermissions(p string) (string, error) {
	if p == "" {
		return "rwm", nil
	}
	for _, c := range p {
		if !strings.ContainsRune("rwm", c) || strings.Count(p, string(c)) > 1 {
			return "", errdefs.InvalidArgument("invalid device permissions %q: want a combination of r, w and m", p)
		}
	}
	return p, nil
}
