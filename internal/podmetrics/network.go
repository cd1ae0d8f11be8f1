package podmetrics

import (
	"fmt"
	"net"
	"sort"

	"github.com/vishvananda/netlink"
	"github.com/vishvananda/netns"
	"golang.org/x/sys/unix"
)

// NetNSReader reads the interface counters of the network namespace
// pinned at a path. The pod's namespace is entered only to open a netlink
// socket there (netlink.NewHandleAt), never by noded's other threads, so
// the counters are the pod's, not the host's.
type NetNSReader struct{}

// Interfaces lists the namespace's interfaces other than loopback (which
// cadvisor leaves out too), by name.
func (NetNSReader) Interfaces(path string) ([]InterfaceSample, error) {
	ns, err := netns.GetFromPath(path)
	if err != nil {
		return nil, fmt.Errorf("opening network namespace %s: %w", path, err)
	}
	defer ns.Close()
	// Only the routing family is needed (links): a handle opens one
	// socket per family asked for, each entering the namespace.
	h, err := netlink.NewHandleAt(ns, unix.NETLINK_ROUTE)
	if err != nil {
		return nil, fmt.Errorf("netlink in network namespace %s: %w", path, err)
	}
	defer h.Close()
	links, err := h.LinkList()
	if err != nil {
		return nil, fmt.Errorf("listing links in %s: %w", path, err)
	}
	out := make([]InterfaceSample, 0, len(links))
	for _, l := range links {
		a := l.Attrs()
		if a == nil || a.Flags&net.FlagLoopback != 0 {
			continue
		}
		i := InterfaceSample{Name: a.Name}
		if st := a.Statistics; st != nil {
			i.RxBytes, i.RxPackets, i.RxErrors, i.RxDropped = st.RxBytes, st.RxPackets, st.RxErrors, st.RxDropped
			i.TxBytes, i.TxPackets, i.TxErrors, i.TxDropped = st.TxBytes, st.TxPackets, st.TxErrors, st.TxDropped
		}
		out = append(out, i)
	}
	sort.Slice(out, func(i, j int) bool { return out[i].Name < out[j].Name })
	return out, nil
}
