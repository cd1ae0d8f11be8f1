package podmetrics

import (
	"net"
	"os"
	"path/filepath"
	"runtime"
	"testing"

	"github.com/vishvananda/netlink"
	"github.com/vishvananda/netns"
	"golang.org/x/sys/unix"

	"github.com/noded-dev/noded/internal/netcni"
)

// TestNetNSReader reads a pinned namespace holding a veth pair that
// carried a known number of packets: it reports those two interfaces and
// their counters, neither loopback nor any interface of the host.
func TestNetNSReader(t *testing.T) {
	if os.Geteuid() != 0 {
		t.Skip("needs root: creates a network namespace")
	}
	dir := filepath.Join(t.TempDir(), "netns")
	t.Cleanup(func() {
		for range 4 { // NewNetNS may have made dir a mount point
			if unix.Unmount(dir, unix.MNT_DETACH) != nil {
				break
			}
		}
	})
	path, err := netcni.NewNetNS(dir, "metrics-test")
	if err != nil {
		t.Fatal(err)
	}
	t.Cleanup(func() { _ = netcni.RemoveNetNS(path) })
	ns, err := netns.GetFromPath(path)
	if err != nil {
		t.Fatal(err)
	}
	defer ns.Close()
	h, err := netlink.NewHandleAt(ns)
	if err != nil {
		t.Fatal(err)
	}
	defer h.Close()
	// A veth pair with both ends in the namespace (a dummy link needs a
	// module that may be missing); a permanent neighbour entry sends the
	// datagrams out at once, without waiting for ARP.
	if err := h.LinkAdd(&netlink.Veth{LinkAttrs: netlink.LinkAttrs{Name: "veth0"}, PeerName: "veth1"}); err != nil {
		t.Fatal(err)
	}
	var link netlink.Link
	for _, name := range []string{"veth1", "veth0"} {
		if link, err = h.LinkByName(name); err != nil {
			t.Fatal(err)
		}
		if err := h.LinkSetUp(link); err != nil {
			t.Fatal(err)
		}
	}
	addr, _ := netlink.ParseAddr("10.250.0.1/24")
	if err := h.AddrAdd(link, addr); err != nil {
		t.Fatal(err)
	}
	mac, _ := net.ParseMAC("02:00:00:00:00:02")
	if err := h.NeighAdd(&netlink.Neigh{
		LinkIndex: link.Attrs().Index, State: netlink.NUD_PERMANENT, IP: net.ParseIP("10.250.0.2"), HardwareAddr: mac,
	}); err != nil {
		t.Fatal(err)
	}
	const packets = 5
	sendInNetNS(t, ns, "10.250.0.2:9", packets)

	got, err := NetNSReader{}.Interfaces(path)
	if err != nil {
		t.Fatal(err)
	}
	if len(got) != 2 || got[0].Name != "veth0" || got[1].Name != "veth1" {
		t.Fatalf("interfaces %+v, want only veth0 and veth1", got)
	}
	if got[0].TxPackets < packets || got[0].TxBytes < packets*100 {
		t.Errorf("veth0 sent %d packets, %d bytes; want at least %d packets of 100 bytes", got[0].TxPackets, got[0].TxBytes, packets)
	}
	if got[1].RxPackets < packets {
		t.Errorf("veth1 received %d packets, want at least %d", got[1].RxPackets, packets)
	}
	if _, err := (NetNSReader{}).Interfaces(filepath.Join(dir, "missing")); err == nil {
		t.Error("a missing namespace read without error")
	}
}

// sendInNetNS sends n UDP datagrams of 100 bytes to addr from inside ns,
// on a thread of its own that goes back to the test's namespace after.
func sendInNetNS(t *testing.T, ns netns.NsHandle, addr string, n int) {
	t.Helper()
	errc := make(chan error, 1)
	go func() {
		runtime.LockOSThread()
		orig, err := netns.Get()
		if err != nil {
			errc <- err
			return
		}
		defer orig.Close()
		if err := netns.Set(ns); err != nil {
			errc <- err
			return
		}
		c, err := net.Dial("udp4", addr)
		if err == nil {
			for range n {
				if _, err = c.Write(make([]byte, 100)); err != nil {
					break
				}
			}
			c.Close()
		}
		if netns.Set(orig) == nil {
			runtime.UnlockOSThread() // else the thread ends with the goroutine
		}
		errc <- err
	}()
	if err := <-errc; err != nil {
		t.Fatal(err)
	}
}
