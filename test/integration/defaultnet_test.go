//go:build integration

package integration

import (
	"bytes"
	"context"
	"fmt"
	"net"
	"os"
	"os/exec"
	"path/filepath"
	"strings"
	"testing"

	runtimeapi "k8s.io/cri-api/pkg/apis/runtime/v1"

	"github.com/noded-dev/noded/internal/netcni"
	"github.com/noded-dev/noded/test/testenv"
)

// TestDefaultCNINetwork starts noded with cni-default-network on (the
// built-in default; the harness turns it off): an empty CNI config
// directory gets noded's default bridge network, a pod gets its address
// from it, and a restart leaves the file alone; a directory that holds a
// network is left exactly as it was.
func TestDefaultCNINetwork(t *testing.T) {
	if _, err := os.Stat("/usr/lib/cni/bridge"); err != nil {
		if _, err2 := os.Stat("/opt/cni/bin/bridge"); err2 != nil {
			t.Skip("CNI plugins not installed: run scripts/install-test-deps.sh")
		}
	}
	ctx := context.Background()

	t.Run("empty directory", func(t *testing.T) {
		restoreDefaultNetworkHost(t)
		cgroup := fmt.Sprintf("noded-it-defnet-%d", os.Getpid())
		t.Cleanup(func() {
			if err := testenv.RemoveCgroupTree(cgroup); err != nil {
				t.Errorf("pod cgroups left: %v", err)
			}
		})
		d := StartDaemon(t, DaemonOptions{Args: []string{"--cni-default-network", "true"}})
		file := filepath.Join(d.CNIDir, netcni.DefaultNetworkFile)
		got, err := os.ReadFile(file)
		if err != nil {
			t.Fatalf("no default network written: %v\n%s", err, d.Log)
		}
		ipv6 := netcni.HostIPv6()
		if want := netcni.DefaultNetwork(ipv6); !bytes.Equal(got, want) {
			t.Fatalf("%s =\n%s\nwant\n%s", file, got, want)
		}
		before, err := os.Stat(file)
		if err != nil {
			t.Fatal(err)
		}

		rt := d.Runtime(t)
		st, err := rt.Status(ctx, &runtimeapi.StatusRequest{})
		if err != nil {
			t.Fatal(err)
		}
		for _, c := range st.GetStatus().GetConditions() {
			if c.GetType() == runtimeapi.NetworkReady && !c.GetStatus() {
				t.Fatalf("NetworkReady is false with the default network: %+v", c)
			}
		}
		pod, err := rt.RunPodSandbox(ctx, &runtimeapi.RunPodSandboxRequest{Config: &runtimeapi.PodSandboxConfig{
			Metadata: &runtimeapi.PodSandboxMetadata{Name: "defnet", Namespace: "it", Uid: "uid-defnet"},
			Hostname: "defnet",
			Linux:    &runtimeapi.LinuxPodSandboxConfig{CgroupParent: "/" + cgroup + "/defnet"},
		}})
		if err != nil {
			t.Fatalf("RunPodSandbox on the default network: %v\n%s", err, d.Log)
		}
		id := pod.GetPodSandboxId()
		removed := false
		remove := func() {
			if !removed {
				removed = true
				if _, err := rt.RemovePodSandbox(ctx, &runtimeapi.RemovePodSandboxRequest{PodSandboxId: id}); err != nil {
					t.Errorf("RemovePodSandbox: %v", err)
				}
			}
		}
		t.Cleanup(remove) // before the daemon stops (LIFO)
		ps, err := rt.PodSandboxStatus(ctx, &runtimeapi.PodSandboxStatusRequest{PodSandboxId: id})
		if err != nil {
			t.Fatal(err)
		}
		nw := ps.GetStatus().GetNetwork()
		inSubnet(t, nw.GetIp(), netcni.DefaultSubnet)
		if ipv6 {
			if len(nw.GetAdditionalIps()) != 1 {
				t.Fatalf("the host has IPv6 but the pod has additional IPs %v", nw.GetAdditionalIps())
			}
			inSubnet(t, nw.GetAdditionalIps()[0].GetIp(), netcni.DefaultSubnet6)
		}
		t.Logf("pod %s on the default network: %s %v", id[:12], nw.GetIp(), nw.GetAdditionalIps())

		// Its masquerading rules go with it.
		remove()
		if out, err := exec.Command("iptables-save", "-t", "nat").CombinedOutput(); err != nil {
			t.Errorf("iptables-save: %v\n%s", err, out)
		} else if strings.Contains(string(out), id) {
			t.Errorf("nat rules of the removed pod are left:\n%s", grepLines(string(out), id))
		}

		// A restart finds the network and does not write it again.
		if err := d.Stop(); err != nil {
			t.Fatal(err)
		}
		d.Restart(t)
		after, err := os.Stat(file)
		if err != nil {
			t.Fatal(err)
		}
		if !after.ModTime().Equal(before.ModTime()) || !os.SameFile(before, after) {
			t.Errorf("the restart rewrote %s", file)
		}
	})

	t.Run("existing network", func(t *testing.T) {
		dir, err := os.MkdirTemp("", "noded-it-")
		if err != nil {
			t.Fatal(err)
		}
		t.Cleanup(func() { cleanupDir(t, dir) })
		cni := filepath.Join(dir, "cni")
		if err := os.MkdirAll(cni, 0o755); err != nil {
			t.Fatal(err)
		}
		// Broken on purpose: even a network noded cannot use is the
		// operator's, and is not shadowed.
		mine := filepath.Join(cni, "50-mine.conf")
		if err := os.WriteFile(mine, []byte("not a network yet\n"), 0o600); err != nil {
			t.Fatal(err)
		}
		before, err := os.Stat(mine)
		if err != nil {
			t.Fatal(err)
		}
		d := StartDaemon(t, DaemonOptions{Dir: dir, Args: []string{"--cni-default-network", "true"}})
		entries, err := os.ReadDir(cni)
		if err != nil {
			t.Fatal(err)
		}
		if len(entries) != 1 {
			t.Errorf("the CNI dir holds %v, want only %s", entries, filepath.Base(mine))
		}
		after, err := os.Stat(mine)
		if err != nil {
			t.Fatal(err)
		}
		b, _ := os.ReadFile(mine)
		if string(b) != "not a network yet\n" || after.Mode() != before.Mode() || !after.ModTime().Equal(before.ModTime()) {
			t.Errorf("%s changed: %q %v %v\n%s", mine, b, after.Mode(), after.ModTime(), d.Log)
		}
	})
}

func inSubnet(t *testing.T, ip, subnet string) {
	t.Helper()
	_, n, err := net.ParseCIDR(subnet)
	if err != nil {
		t.Fatal(err)
	}
	if a := net.ParseIP(ip); a == nil || !n.Contains(a) {
		t.Fatalf("pod IP %q is not in %s", ip, subnet)
	}
}

func grepLines(s, sub string) string {
	var out []string
	for _, l := range strings.Split(s, "\n") {
		if strings.Contains(l, sub) {
			out = append(out, l)
		}
	}
	return strings.Join(out, "\n")
}

// restoreDefaultNetworkHost gives back, at the end of the test, what the
// default network changes on the host itself: the bridge (when this test
// made it and no pod is left on it), host-local's lease directory (when it
// made it and it holds no lease) and the forwarding sysctls the bridge
// plugin turns on for its gateway.
func restoreDefaultNetworkHost(t *testing.T) {
	t.Helper()
	bridge := "/sys/class/net/" + netcni.DefaultBridge
	leases := "/var/lib/cni/networks/" + netcni.DefaultNetworkName
	_, bridgeErr := os.Stat(bridge)
	_, leasesErr := os.Stat(leases)
	sysctls := map[string][]byte{}
	for _, s := range []string{"/proc/sys/net/ipv4/ip_forward", "/proc/sys/net/ipv6/conf/all/forwarding"} {
		if b, err := os.ReadFile(s); err == nil {
			sysctls[s] = b
		}
	}
	t.Cleanup(func() {
		if os.IsNotExist(bridgeErr) {
			if ports, _ := os.ReadDir(bridge + "/brif"); len(ports) == 0 {
				if out, err := exec.Command("ip", "link", "del", netcni.DefaultBridge).CombinedOutput(); err != nil {
					t.Errorf("deleting %s: %v %s", netcni.DefaultBridge, err, out)
				}
			}
		}
		if os.IsNotExist(leasesErr) {
			entries, _ := os.ReadDir(leases)
			held := false
			for _, e := range entries {
				if net.ParseIP(e.Name()) != nil {
					held = true
				}
			}
			if !held {
				_ = os.RemoveAll(leases)
			}
		}
		for s, v := range sysctls {
			if now, _ := os.ReadFile(s); !bytes.Equal(now, v) {
				if err := os.WriteFile(s, v, 0o644); err != nil {
					t.Errorf("restoring %s: %v", s, err)
				}
			}
		}
	})
}
