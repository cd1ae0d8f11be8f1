package netcni

import (
	"encoding/json"
	"errors"
	"fmt"
	"os"
	"path/filepath"
	"strings"

	"github.com/noded-dev/noded/internal/atomicfile"
)

// noded's default network: what a node gets when nothing else installed
// one, so that a fresh node runs pods (CRI-O's package ships a bridge
// network for the same reason; containerd's guide has the user write one).
//
// The file sorts after the names cluster network add-ons use (05-cilium,
// 10-calico, 10-flannel, ...): once one of them writes its config, it is
// the first file and new pods get it, without anyone removing ours. The
// subnets are noded's own: 10.87.0.0/16 is neither CRI-O's (10.85), nor
// podman's and containerd's examples' (10.88), nor Docker's (172.17); the
// IPv6 one is a unique local /64 whose global ID spells "noded" in ASCII
// (6e 6f 64 65 64).
const (
	DefaultNetworkFile = "99-noded-bridge.conflist"
	DefaultNetworkName = "noded"
	DefaultBridge      = "noded0"
	DefaultSubnet      = "10.87.0.0/16"
	DefaultSubnet6     = "fd6e:6f64:6564::/64"
)

type cniRange struct {
	Subnet string `json:"subnet"`
}

type cniRoute struct {
	Dst string `json:"dst"`
}

type hostLocalIPAM struct {
	Type   string       `json:"type"`
	Ranges [][]cniRange `json:"ranges"`
	Routes []cniRoute   `json:"routes"`
}

type bridgePlugin struct {
	Type        string        `json:"type"`
	Bridge      string        `json:"bridge"`
	IsGateway   bool          `json:"isGateway"`
	IPMasq      bool          `json:"ipMasq"`
	HairpinMode bool          `json:"hairpinMode"`
	IPAM        hostLocalIPAM `json:"ipam"`
}

type portmapPlugin struct {
	Type         string          `json:"type"`
	Capabilities map[string]bool `json:"capabilities"`
}

type confList struct {
	CNIVersion string `json:"cniVersion"`
	Name       string `json:"name"`
	Plugins    []any  `json:"plugins"`
}

// DefaultNetwork is the default network's conflist: a bridge with
// host-local addresses from DefaultSubnet (and DefaultSubnet6 when ipv6),
// masqueraded on the way out (pods reach the outside as the node does),
// and portmap for hostPort. The leases are host-local's default,
// /var/lib/cni/networks/noded.
func DefaultNetwork(ipv6 bool) []byte {
	ranges := [][]cniRange{{{Subnet: DefaultSubnet}}}
	routes := []cniRoute{{Dst: "0.0.0.0/0"}}
	if ipv6 {
		ranges = append(ranges, []cniRange{{Subnet: DefaultSubnet6}})
		routes = append(routes, cniRoute{Dst: "::/0"})
	}
	b, err := json.MarshalIndent(confList{
		CNIVersion: "1.0.0",
		Name:       DefaultNetworkName,
		Plugins: []any{
			bridgePlugin{
				Type: "bridge", Bridge: DefaultBridge, IsGateway: true, IPMasq: true, HairpinMode: true,
				IPAM: hostLocalIPAM{Type: "host-local", Ranges: ranges, Routes: routes},
			},
			portmapPlugin{Type: "portmap", Capabilities: map[string]bool{"portMappings": true}},
		},
	}, "", "  ")
	if err != nil {
		panic(err) // only fixed types above: cannot fail
	}
	return append(b, '\n')
}

// WriteDefaultNetwork writes DefaultNetwork into dir as
// DefaultNetworkFile when dir holds no network config, creating dir if
// needed, and returns the file's path. When dir already holds one (any
// .conflist, .conf or .json file, even one that does not parse: the
// operator's file is never shadowed) or the file exists, it writes nothing
// and returns "".
func WriteDefaultNetwork(dir string, ipv6 bool) (string, error) {
	_, files, err := scanConfDir(dir)
	if err != nil {
		return "", fmt.Errorf("reading the CNI config directory: %w", err)
	}
	if len(files) > 0 {
		return "", nil
	}
	path := filepath.Join(dir, DefaultNetworkFile)
	if _, err := os.Lstat(path); err == nil {
		return "", nil // not a regular file (scanConfDir skipped it): leave it
	} else if !errors.Is(err, os.ErrNotExist) {
		return "", err
	}
	if err := os.MkdirAll(dir, 0o755); err != nil {
		return "", err
	}
	if err := atomicfile.WriteFile(path, DefaultNetwork(ipv6), 0o644); err != nil {
		return "", fmt.Errorf("writing the default CNI network: %w", err)
	}
	return path, nil
}

// HostIPv6 reports whether the host has IPv6: the kernel has it
// (/proc/net/if_inet6) and neither the existing interfaces nor new ones
// (which a pod's interfaces are) have it disabled.
func HostIPv6() bool { return hostIPv6("/proc") }

func hostIPv6(proc string) bool {
	if _, err := os.Stat(filepath.Join(proc, "net", "if_inet6")); err != nil {
		return false
	}
	for _, conf := range []string{"all", "default"} {
		b, err := os.ReadFile(filepath.Join(proc, "sys", "net", "ipv6", "conf", conf, "disable_ipv6"))
		if err != nil || strings.TrimSpace(string(b)) != "0" {
			return false
		}
	}
	return true
}
