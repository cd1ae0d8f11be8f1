package netcni

import (
	"bufio"
	"context"
	"errors"
	"fmt"
	"io"
	"net"
	"os"
	"os/exec"
	"path/filepath"
	"strings"
	"testing"
	"time"

	"github.com/vishvananda/netlink"
	"github.com/vishvananda/netns"

	"github.com/noded-dev/noded/internal/errdefs"
)

// The integration tests run the real Debian CNI plugins. To keep every
// change off the machine's own network, each test first creates a "node"
// namespace and runs all CNI operations from a thread inside it: the bridge,
// the host ends of the veths, the iptables chains and route_localnet all
// live there, and "127.0.0.1" is the node namespace's loopback. Deleting
// that namespace at the end removes whatever a failed test left behind.

const testSubnet = "10.234.0.0/24"

type cniEnv struct {
	t        *testing.T
	node     string // the node namespace
	nsDir    string
	confDir  string
	dataDir  string // host-local IPAM state
	cacheDir string
	bridge   string
	netName  string
	m        *Manager
}

func newCNIEnv(t *testing.T, extraPlugins string) *cniEnv {
	t.Helper()
	requirePlugins(t, "bridge", "host-local", "portmap", "tuning")
	root := t.TempDir()
	e := &cniEnv{
		t:        t,
		nsDir:    netnsDir(t),
		confDir:  filepath.Join(root, "net.d"),
		dataDir:  filepath.Join(root, "ipam"),
		cacheDir: filepath.Join(root, "cache"),
		bridge:   "nbr" + randHex(t, 4), // 11 chars, unique per test
		netName:  "noded-test-" + randHex(t, 3),
	}
	e.node = newTestNetNS(t, e.nsDir, "node-"+randHex(t, 4))
	t.Cleanup(e.cleanupNode)
	// A real node has lo up; 127.0.0.1 is where hostPorts are tested.
	if err := loopbackUp(e.node); err != nil {
		t.Fatal(err)
	}
	if err := os.MkdirAll(e.confDir, 0o755); err != nil {
		t.Fatal(err)
	}
	conf := fmt.Sprintf(`{
  "cniVersion": "1.0.0",
  "name": %q,
  "plugins": [
    {
      "type": "bridge",
      "bridge": %q,
      "isGateway": true,
      "ipMasq": false,
      "hairpinMode": true,
      "ipam": {
        "type": "host-local",
        "dataDir": %q,
        "ranges": [[{"subnet": %q}]],
        "routes": [{"dst": "0.0.0.0/0"}]
      }
    },
    {"type": "portmap", "capabilities": {"portMappings": true}, "snat": true}%s
  ]
}`, e.netName, e.bridge, e.dataDir, testSubnet, extraPlugins)
	writeConf(t, e.confDir, "10-test.conflist", conf)

	m, err := New(Options{ConfDir: e.confDir, PluginDirs: []string{cniPluginDir}, CacheDir: e.cacheDir})
	if err != nil {
		t.Fatal(err)
	}
	e.m = m
	return e
}

// cleanupNode deletes the test bridge (the namespace removal that follows
// would drop it and the iptables chains anyway).
func (e *cniEnv) cleanupNode() {
	_ = inNetNS(e.node, func() error {
		if l, err := netlink.LinkByName(e.bridge); err == nil {
			_ = netlink.LinkDel(l)
		}
		return nil
	})
}

func (e *cniEnv) newPod(name string) PodNetwork {
	e.t.Helper()
	id := randHex(e.t, 32)
	return PodNetwork{
		ID:        id,
		Name:      name,
		Namespace: "default",
		UID:       randHex(e.t, 8),
		NetNSPath: newTestNetNS(e.t, e.nsDir, name+"-"+id[:8]),
	}
}

func (e *cniEnv) setup(pod PodNetwork) (*Result, error) {
	var res *Result
	err := inNetNS(e.node, func() error {
		var err error
		res, err = e.m.Setup(context.Background(), pod)
		return err
	})
	return res, err
}

func (e *cniEnv) teardown(pod PodNetwork) error {
	return inNetNS(e.node, func() error { return e.m.Teardown(context.Background(), pod) })
}

// iptablesMentions reports whether the node's nat table mentions s.
func (e *cniEnv) iptablesMentions(s string) bool {
	e.t.Helper()
	var out []byte
	err := inNetNS(e.node, func() error {
		var err error
		out, err = exec.Command("iptables-save", "-t", "nat").CombinedOutput()
		return err
	})
	if err != nil {
		e.t.Fatalf("iptables-save: %v\n%s", err, out)
	}
	return strings.Contains(string(out), s)
}

// ipamHolds reports whether host-local has an address reserved for id.
func (e *cniEnv) ipamHolds(id string) bool {
	e.t.Helper()
	files, _ := filepath.Glob(filepath.Join(e.dataDir, e.netName, "*"))
	for _, f := range files {
		b, err := os.ReadFile(f)
		if err == nil && strings.Contains(string(b), id) {
			return true
		}
	}
	return false
}

// serve starts a TCP server in the namespace ns that answers every
// connection with reply. It stops at the end of the test.
func serve(t *testing.T, ns string, port int, reply string) {
	t.Helper()
	var ln net.Listener
	err := inNetNS(ns, func() error {
		var err error
		ln, err = net.Listen("tcp4", fmt.Sprintf("0.0.0.0:%d", port))
		return err
	})
	if err != nil {
		t.Fatalf("listen in %s: %v", ns, err)
	}
	t.Cleanup(func() { ln.Close() })
	go func() {
		for {
			c, err := ln.Accept()
			if err != nil {
				return
			}
			_ = c.SetDeadline(time.Now().Add(5 * time.Second))
			_, _ = io.WriteString(c, reply+"\n")
			c.Close()
		}
	}()
}

// dial connects from the namespace ns to addr and returns the first line.
func dial(ns, addr string) (string, error) {
	var line string
	err := inNetNS(ns, func() error {
		c, err := net.DialTimeout("tcp4", addr, 3*time.Second)
		if err != nil {
			return err
		}
		defer c.Close()
		_ = c.SetDeadline(time.Now().Add(3 * time.Second))
		line, err = bufio.NewReader(c).ReadString('\n')
		line = strings.TrimSpace(line)
		return err
	})
	return line, err
}

func podIPv4(t *testing.T, r *Result) net.IP {
	t.Helper()
	_, subnet, _ := net.ParseCIDR(testSubnet)
	for _, ip := range r.IPs {
		if subnet.Contains(ip) {
			return ip
		}
	}
	t.Fatalf("no IP in %s among %v", testSubnet, r.IPs)
	return nil
}

func linkUp(t *testing.T, nsPath, name string) bool {
	t.Helper()
	ns, err := netns.GetFromPath(nsPath)
	if err != nil {
		t.Fatal(err)
	}
	defer ns.Close()
	h, err := netlink.NewHandleAt(ns)
	if err != nil {
		t.Fatal(err)
	}
	defer h.Close()
	l, err := h.LinkByName(name)
	if err != nil {
		t.Fatalf("%s in %s: %v", name, nsPath, err)
	}
	return l.Attrs().Flags&net.FlagUp != 0
}

func TestSetupTeardownBridge(t *testing.T) {
	e := newCNIEnv(t, "")
	if err := e.m.Status(); err != nil {
		t.Fatalf("Status with a bridge config: %v", err)
	}

	const containerPort, hostPort = 8080, 18080
	podA := e.newPod("pod-a")
	podB := e.newPod("pod-b")
	podB.PortMappings = []PortMapping{
		{HostPort: hostPort, ContainerPort: containerPort, Protocol: "TCP"},
		{HostPort: 0, ContainerPort: 9999}, // no hostPort: not mapped
	}

	resA, err := e.setup(podA)
	if err != nil {
		t.Fatalf("Setup pod A: %v", err)
	}
	resB, err := e.setup(podB)
	if err != nil {
		t.Fatalf("Setup pod B: %v", err)
	}
	ipA, ipB := podIPv4(t, resA), podIPv4(t, resB)
	if ipA.Equal(ipB) {
		t.Fatalf("both pods got %v", ipA)
	}
	t.Logf("pod A %v, pod B %v", ipA, ipB)

	t.Run("result", func(t *testing.T) {
		if resA.Network != e.netName {
			t.Errorf("Network %q, want %q", resA.Network, e.netName)
		}
		var eth0 *Interface
		for i := range resA.Interfaces {
			if resA.Interfaces[i].Name == "eth0" && resA.Interfaces[i].Sandbox != "" {
				eth0 = &resA.Interfaces[i]
			}
		}
		if eth0 == nil || len(eth0.Addrs) == 0 || !eth0.Addrs[0].IP.Equal(ipA) {
			t.Errorf("no eth0 in the sandbox with %v: %+v", ipA, resA.Interfaces)
		}
		if eth0 != nil && eth0.Sandbox != podA.NetNSPath {
			t.Errorf("eth0 sandbox %q, want %q", eth0.Sandbox, podA.NetNSPath)
		}
		for _, ip := range resA.IPs {
			if ip.Equal(net.ParseIP("10.234.0.1")) {
				t.Errorf("the gateway (bridge) address is reported as a pod IP: %v", resA.IPs)
			}
		}
	})

	t.Run("loopback up", func(t *testing.T) {
		for _, p := range []PodNetwork{podA, podB} {
			if !linkUp(t, p.NetNSPath, "lo") {
				t.Errorf("lo is down in %s", p.NetNSPath)
			}
		}
	})

	serve(t, podB.NetNSPath, containerPort, "hello from B")
	serve(t, podB.NetNSPath, 7000, "direct B")

	t.Run("pod to pod TCP", func(t *testing.T) {
		got, err := dial(podA.NetNSPath, net.JoinHostPort(ipB.String(), "7000"))
		if err != nil || got != "direct B" {
			t.Fatalf("A -> B:7000 = %q, %v", got, err)
		}
	})

	t.Run("pod to pod ping", func(t *testing.T) {
		busybox, err := exec.LookPath("busybox")
		if err != nil {
			t.Skip("busybox not installed (apt-get install -y busybox-static)")
		}
		nsenter, err := exec.LookPath("nsenter")
		if err != nil {
			t.Skip("nsenter not installed")
		}
		out, err := exec.Command(nsenter, "--net="+podA.NetNSPath, busybox, "ping", "-c", "2", "-W", "3", ipB.String()).CombinedOutput()
		if err != nil {
			t.Fatalf("ping A -> B: %v\n%s", err, out)
		}
	})

	t.Run("hostPort on 127.0.0.1", func(t *testing.T) {
		got, err := dial(e.node, fmt.Sprintf("127.0.0.1:%d", hostPort))
		if err != nil || got != "hello from B" {
			t.Fatalf("node 127.0.0.1:%d = %q, %v", hostPort, got, err)
		}
	})

	t.Run("hostPort from another pod", func(t *testing.T) {
		// Through the bridge address, the node's IP as seen from pods.
		got, err := dial(podA.NetNSPath, fmt.Sprintf("10.234.0.1:%d", hostPort))
		if err != nil || got != "hello from B" {
			t.Fatalf("A -> node:%d = %q, %v", hostPort, got, err)
		}
	})

	t.Run("check and cached result", func(t *testing.T) {
		err := inNetNS(e.node, func() error { return e.m.Check(context.Background(), podA) })
		if err != nil {
			t.Errorf("Check pod A: %v", err)
		}
		// portmap up to v1.2 (Debian 12 ships 1.1.1) fails CHECK of an
		// IPv4-only mapping when ip6tables exists: it looks for the DNAT
		// chain in the IPv6 table too. Not ours to fix; only log it.
		err = inNetNS(e.node, func() error { return e.m.Check(context.Background(), podB) })
		if err != nil && !strings.Contains(err.Error(), "could not check ipv6 dnat") {
			t.Errorf("Check pod B: %v", err)
		} else if err != nil {
			t.Logf("Check pod B: known portmap CHECK bug: %v", err)
		}
		// A second Manager on the same cache, as after a restart of noded.
		m2, err := New(Options{ConfDir: e.confDir, PluginDirs: []string{cniPluginDir}, CacheDir: e.cacheDir})
		if err != nil {
			t.Fatal(err)
		}
		cached, err := m2.CachedResult(podB.ID)
		if err != nil {
			t.Fatalf("CachedResult: %v", err)
		}
		if len(cached.IPs) == 0 || !cached.IPs[0].Equal(resB.IPs[0]) {
			t.Errorf("cached IPs %v, want %v", cached.IPs, resB.IPs)
		}
	})

	if !e.iptablesMentions(podB.ID) {
		t.Fatalf("no portmap rules for pod B in the nat table")
	}

	t.Run("teardown twice", func(t *testing.T) {
		for i := range 2 {
			if err := e.teardown(podB); err != nil {
				t.Fatalf("Teardown #%d: %v", i+1, err)
			}
		}
		if e.ipamHolds(podB.ID) {
			t.Error("host-local still holds pod B's address")
		}
		if e.iptablesMentions(podB.ID) {
			t.Error("portmap rules for pod B remain")
		}
		if _, err := dial(e.node, fmt.Sprintf("127.0.0.1:%d", hostPort)); err == nil {
			t.Error("hostPort still answers after teardown")
		}
		if _, err := e.m.CachedResult(podB.ID); !errdefs.IsNotFound(err) {
			t.Errorf("CachedResult after teardown = %v, want NotFound", err)
		}
		err := inNetNS(e.node, func() error { return e.m.Check(context.Background(), podB) })
		if !errdefs.IsNotFound(err) {
			t.Errorf("Check after teardown = %v, want NotFound", err)
		}
	})

	t.Run("teardown after the netns is gone", func(t *testing.T) {
		if err := RemoveNetNS(podA.NetNSPath); err != nil {
			t.Fatal(err)
		}
		for i := range 2 {
			if err := e.teardown(podA); err != nil {
				t.Fatalf("Teardown #%d without netns: %v", i+1, err)
			}
		}
		if e.ipamHolds(podA.ID) {
			t.Error("host-local still holds pod A's address")
		}
		if _, err := e.m.CachedResult(podA.ID); !errdefs.IsNotFound(err) {
			t.Errorf("CachedResult after teardown = %v, want NotFound", err)
		}
	})

	t.Run("address reused after release", func(t *testing.T) {
		podC := e.newPod("pod-c")
		resC, err := e.setup(podC)
		if err != nil {
			t.Fatalf("Setup pod C: %v", err)
		}
		podIPv4(t, resC)
		if err := e.teardown(podC); err != nil {
			t.Fatal(err)
		}
	})
}

// TestSetupTeardownConfigRemoved tears a pod down after its network config
// file was deleted: the config cached at ADD is used.
func TestSetupTeardownConfigRemoved(t *testing.T) {
	e := newCNIEnv(t, "")
	pod := e.newPod("pod")
	pod.PortMappings = []PortMapping{{HostPort: 18081, ContainerPort: 80}}
	if _, err := e.setup(pod); err != nil {
		t.Fatal(err)
	}
	if err := os.Remove(filepath.Join(e.confDir, "10-test.conflist")); err != nil {
		t.Fatal(err)
	}
	if err := e.m.Status(); err == nil {
		t.Error("Status is ready with no config left")
	}
	if err := e.teardown(pod); err != nil {
		t.Fatalf("Teardown with the config removed: %v", err)
	}
	if e.ipamHolds(pod.ID) {
		t.Error("host-local still holds the pod's address")
	}
	if e.iptablesMentions(pod.ID) {
		t.Error("portmap rules for the pod remain")
	}
}

// TestSetupFailureRollsBack makes the last plugin fail and checks that the
// address the bridge plugin took is given back.
func TestSetupFailureRollsBack(t *testing.T) {
	e := newCNIEnv(t, `,
    {"type": "tuning", "sysctl": {"net.ipv4.conf.eth0.no_such_sysctl": "1"}}`)
	pod := e.newPod("pod")
	_, err := e.setup(pod)
	if err == nil {
		t.Fatal("Setup succeeded with a failing tuning plugin")
	}
	t.Logf("Setup error (expected): %v", err)
	if e.ipamHolds(pod.ID) {
		t.Error("host-local still holds the address of the failed pod")
	}
	if err := e.teardown(pod); err != nil {
		t.Errorf("Teardown after a failed Setup: %v", err)
	}
}

func TestSetupCancelled(t *testing.T) {
	e := newCNIEnv(t, "")
	pod := e.newPod("pod")
	ctx, cancel := context.WithCancel(context.Background())
	cancel()
	err := inNetNS(e.node, func() error {
		_, err := e.m.Setup(ctx, pod)
		return err
	})
	if !errors.Is(err, context.Canceled) {
		t.Errorf("Setup with a cancelled context = %v, want context.Canceled", err)
	}
	if e.ipamHolds(pod.ID) {
		t.Error("host-local holds an address for a cancelled Setup")
	}
}
