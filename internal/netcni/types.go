package netcni

import (
	"net"

	types100 "github.com/containernetworking/cni/pkg/types/100"
)

// PodNetwork describes one pod sandbox for a CNI operation.
type PodNetwork struct {
	// ID is the sandbox ID, the CNI container ID (CNI_CONTAINERID and
	// K8S_POD_INFRA_CONTAINER_ID). Required.
	ID string
	// Name, Namespace and UID are the pod's metadata, passed as
	// K8S_POD_NAME, K8S_POD_NAMESPACE and K8S_POD_UID.
	Name      string
	Namespace string
	UID       string
	// NetNSPath is the pinned network namespace (see NewNetNS). Required for
	// Setup; Teardown accepts a path that is already gone or empty.
	NetNSPath string

	// PortMappings are the pod's hostPorts, passed to plugins that declare
	// the "portMappings" capability (the portmap plugin). Mappings with a
	// zero HostPort are skipped, as the kubelet does.
	PortMappings []PortMapping
	// Bandwidth, when set, is passed to plugins with the "bandwidth"
	// capability.
	Bandwidth *Bandwidth
	// DNS, when set, is passed to plugins with the "dns" capability.
	DNS *DNS
}

// PortMapping maps a port on the host to a port of the pod.
type PortMapping struct {
	HostPort      int32
	ContainerPort int32
	// Protocol is "tcp", "udp" or "sctp" (any case; empty means tcp).
	Protocol string
	// HostIP restricts the mapping to one host address; empty means all.
	HostIP string
}

// Bandwidth limits the pod's traffic; rates are in bits per second, bursts
// in bits (the CNI bandwidth plugin's units). Zero means unlimited.
type Bandwidth struct {
	IngressRate  uint64
	IngressBurst uint64
	EgressRate   uint64
	EgressBurst  uint64
}

// DNS is the pod's resolver configuration for plugins that can use it.
type DNS struct {
	Servers  []string
	Searches []string
	Options  []string
}

// Result is what Setup reports about the pod's network.
type Result struct {
	// Network is the name of the CNI network the pod was attached to.
	Network string
	// IPs are the pod's addresses, IPv4 and IPv6, in the order the plugins
	// returned them (the first is the pod's primary IP). They are the
	// addresses of interfaces inside the pod's namespace.
	IPs []net.IP
	// Interfaces are all interfaces the plugins reported, on the host and
	// in the pod.
	Interfaces []Interface
	// Raw is the full CNI result converted to the current CNI version.
	Raw *types100.Result
}

// Interface is one interface of a CNI result.
type Interface struct {
	Name string
	MAC  string
	// Sandbox is the namespace path for an interface in the pod, empty for
	// a host interface (a bridge, the host end of a veth).
	Sandbox string
	// Addrs are the addresses the plugins assigned to this interface.
	Addrs []net.IPNet
}

// portMappingEntry is one element of the "portMappings" capability
// argument, in the form the portmap plugin reads.
type portMappingEntry struct {
	HostPort      int32  `json:"hostPort"`
	ContainerPort int32  `json:"containerPort"`
	Protocol      string `json:"protocol"`
	HostIP        string `json:"hostIP,omitempty"`
}

// bandwidthEntry is the "bandwidth" capability argument.
type bandwidthEntry struct {
	IngressRate  uint64 `json:"ingressRate,omitempty"`
	IngressBurst uint64 `json:"ingressBurst,omitempty"`
	EgressRate   uint64 `json:"egressRate,omitempty"`
	EgressBurst  uint64 `json:"egressBurst,omitempty"`
}

// dnsEntry is the "dns" capability argument.
type dnsEntry struct {
	Servers  []string `json:"servers,omitempty"`
	Searches []string `json:"searches,omitempty"`
	Options  []string `json:"options,omitempty"`
}
