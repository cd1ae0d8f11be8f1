package specgen

import (
	"slices"
	"strings"

	"github.com/moby/sys/capability"
	specs "github.com/opencontainers/runtime-spec/specs-go"
	runtimeapi "k8s.io/cri-api/pkg/apis/runtime/v1"

	"github.com/noded-dev/noded/internal/errdefs"
)

// DefaultCapabilities returns the set a container that asks for nothing
// else starts from: CRI-O's default (1.18 and later), not Docker's and
// containerd's larger one. The five the larger set adds are left out on
// purpose: MKNOD (device nodes are the device cgroup's and the request's
// business), NET_RAW (raw sockets spoof packets; ping works without it,
// since noded sets net.ipv4.ping_group_range in every pod with its own
// network), SYS_CHROOT, SETFCAP (file capabilities let a binary regain what
// the process lacks) and AUDIT_WRITE. A container that needs one asks for it
// in add_capabilities.
func DefaultCapabilities() []string {
	return []string{
		"CAP_CHOWN",
		"CAP_DAC_OVERRIDE",
		"CAP_FSETID",
		"CAP_FOWNER",
		"CAP_SETGID",
		"CAP_SETUID",
		"CAP_SETPCAP",
		"CAP_NET_BIND_SERVICE",
		"CAP_KILL",
	}
}

// capName returns the "CAP_"-prefixed upper-case form of a capability name
// given with or without the prefix, and whether the kernel knows it.
func capName(name string) (string, bool) {
	n := strings.ToUpper(strings.TrimSpace(name))
	if !strings.HasPrefix(n, "CAP_") {
		n = "CAP_" + n
	}
	for _, c := range capability.ListKnown() {
		if n == "CAP_"+strings.ToUpper(c.String()) {
			return n, true
		}
	}
	return n, false
}

// capabilityNames maps a bit mask (as in /proc/<pid>/status) to names. Bits
// of capabilities newer than the library are left out: runc could not name
// them either.
func capabilityNames(mask uint64) []string {
	var out []string
	for _, c := range capability.ListKnown() {
		if c < 64 && mask&(1<<uint(c)) != 0 {
			out = append(out, "CAP_"+strings.ToUpper(c.String()))
		}
	}
	return out
}

// capabilities computes the process capabilities from the request. The order
// is containerd's: "ALL" in add starts from every capability noded holds,
// "ALL" in drop from none, then the named adds and drops apply, so
// drop [ALL] add [NET_BIND_SERVICE] leaves only NET_BIND_SERVICE. Adds go to
// the bounding, permitted and effective sets; ambient adds also go to the
// inheritable and ambient sets, which the kernel requires for them to last
// across execve. A privileged container gets everything noded holds, and
// its add/drop lists are ignored as containerd does.
//
// This is the only place a container's capabilities are fitted to the
// host: the monitor's helper (conmon-go/runtime) runs the spec as it is,
// and the monitor holds what noded holds, since noded starts it.
func capabilities(c *runtimeapi.Capability, privileged bool, node *Node) (*specs.LinuxCapabilities, error) {
	held := node.HostCapabilities
	if held == nil {
		// Nil means DetectNode never ran; granting anything would be a guess.
		return nil, errdefs.FailedPrecondition("noded's own capabilities are unknown")
	}
	add, err := capList(c.GetAddCapabilities(), held, true)
	if err != nil {
		return nil, err
	}
	drop, err := capList(c.GetDropCapabilities(), held, false)
	if err != nil {
		return nil, err
	}
	ambient, err := capList(c.GetAddAmbientCapabilities(), held, true)
	if err != nil {
		return nil, err
	}
	var set []string
	switch {
	case privileged:
		set, drop = slices.Clone(held), nil
	case containsFold(c.GetDropCapabilities(), "ALL"):
		set = union(nil, add, ambient)
	case containsFold(c.GetAddCapabilities(), "ALL"):
		set = union(held, ambient)
	default:
		base := node.DefaultCapabilities
		if base == nil {
			base = DefaultCapabilities()
		}
		// Defaults noded does not hold are left out rather than failing
		// every container on a restricted host.
		set = union(intersect(base, held), add, ambient)
	}
	dropped := func(s string) bool { return slices.Contains(drop, s) }
	caps := fullSet(slices.DeleteFunc(set, dropped))
	// A dropped capability cannot stay ambient: the kernel refuses an
	// ambient bit without the permitted and inheritable ones.
	if ambient = slices.DeleteFunc(ambient, dropped); len(ambient) > 0 {
		caps.Ambient, caps.Inheritable = ambient, slices.Clone(ambient)
	}
	return caps, nil
}

// capList validates and normalizes names, skipping "ALL". With mustHold, a
// capability noded does not hold is refused: runc could not grant it.
func capList(names, held []string, mustHold bool) ([]string, error) {
	var out []string
	for _, n := range names {
		if strings.EqualFold(n, "ALL") {
			continue
		}
		name, ok := capName(n)
		if !ok {
			return nil, errdefs.InvalidArgument("unknown capability %q", n)
		}
		if mustHold && !slices.Contains(held, name) {
			return nil, errdefs.FailedPrecondition("capability %s is requested but noded does not hold it", name)
		}
		if !slices.Contains(out, name) {
			out = append(out, name)
		}
	}
	return out, nil
}

func fullSet(set []string) *specs.LinuxCapabilities {
	return &specs.LinuxCapabilities{
		Bounding:  slices.Clone(set),
		Effective: slices.Clone(set),
		Permitted: slices.Clone(set),
	}
}

func intersect(a, b []string) []string {
	var out []string
	for _, s := range a {
		if slices.Contains(b, s) {
			out = append(out, s)
		}
	}
	return out
}

func union(base []string, more ...[]string) []string {
	out := slices.Clone(base)
	for _, m := range more {
		for _, s := range m {
			if !slices.Contains(out, s) {
				out = append(out, s)
			}
		}
	}
	return out
}

func containsFold(list []string, s string) bool {
	return slices.ContainsFunc(list, func(e string) bool { return strings.EqualFold(e, s) })
}
