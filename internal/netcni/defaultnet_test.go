package netcni

import (
	"encoding/json"
	"os"
	"path/filepath"
	"testing"
)

func TestWriteDefaultNetwork(t *testing.T) {
	for _, tc := range []struct {
		name     string
		existing map[string]string // file name -> content in the dir beforehand
		noDir    bool
		ipv6     bool
		want     bool // the default network is written
	}{
		{name: "empty dir", want: true},
		{name: "missing dir", noDir: true, want: true},
		{name: "empty dir, IPv6", ipv6: true, want: true},
		{name: "disabled and unrelated files only", existing: map[string]string{
			"10-crio-bridge.conflist.disabled": "{}", "README": "x",
		}, want: true},
		{name: "a network", existing: map[string]string{"10-flannel.conflist": `{"cniVersion":"1.0.0","name":"f","plugins":[{"type":"flannel"}]}`}},
		{name: "a single-plugin network", existing: map[string]string{"87-podman.conf": `{"cniVersion":"0.4.0","name":"p","type":"bridge"}`}},
		{name: "a broken network", existing: map[string]string{"50-broken.json": "not json"}},
		{name: "an older default network", existing: map[string]string{DefaultNetworkFile: "{}"}},
	} {
		t.Run(tc.name, func(t *testing.T) {
			dir := filepath.Join(t.TempDir(), "net.d")
			if !tc.noDir {
				if err := os.Mkdir(dir, 0o755); err != nil {
					t.Fatal(err)
				}
			}
			for name, content := range tc.existing {
				if err := os.WriteFile(filepath.Join(dir, name), []byte(content), 0o644); err != nil {
					t.Fatal(err)
				}
			}
			path, err := WriteDefaultNetwork(dir, tc.ipv6)
			if err != nil {
				t.Fatal(err)
			}
			entries, err := os.ReadDir(dir)
			if err != nil {
				t.Fatal(err)
			}
			if !tc.want {
				if path != "" {
					t.Errorf("wrote %s next to an existing network", path)
				}
				if len(entries) != len(tc.existing) {
					t.Errorf("dir holds %d files, want the %d it had", len(entries), len(tc.existing))
				}
				for name, content := range tc.existing {
					if b, err := os.ReadFile(filepath.Join(dir, name)); err != nil || string(b) != content {
						t.Errorf("%s changed: %q, %v", name, b, err)
					}
				}
				return
			}
			if path != filepath.Join(dir, DefaultNetworkFile) {
				t.Fatalf("path = %q, want %s", path, DefaultNetworkFile)
			}
			if len(entries) != len(tc.existing)+1 {
				t.Errorf("dir holds %d files, want %d (no temporary file left)", len(entries), len(tc.existing)+1)
			}
			// What noded reads back is the network, with the subnets asked for.
			list, err := loadConfFile(path)
			if err != nil {
				t.Fatal(err)
			}
			if list.Name != DefaultNetworkName || len(list.Plugins) != 2 ||
				list.Plugins[0].Network.Type != "bridge" || list.Plugins[1].Network.Type != "portmap" {
				t.Fatalf("network = %s", list.Bytes)
			}
			var bridge struct {
				Bridge string `json:"bridge"`
				IPAM   struct {
					Ranges [][]struct {
						Subnet string `json:"subnet"`
					} `json:"ranges"`
				} `json:"ipam"`
			}
			if err := json.Unmarshal(list.Plugins[0].Bytes, &bridge); err != nil {
				t.Fatal(err)
			}
			var subnets []string
			for _, r := range bridge.IPAM.Ranges {
				for _, s := range r {
					subnets = append(subnets, s.Subnet)
				}
			}
			want := []string{DefaultSubnet}
			if tc.ipv6 {
				want = append(want, DefaultSubnet6)
			}
			if bridge.Bridge != DefaultBridge || len(subnets) != len(want) || subnets[0] != want[0] || subnets[len(subnets)-1] != want[len(want)-1] {
				t.Errorf("bridge %q with subnets %v, want %s with %v", bridge.Bridge, subnets, DefaultBridge, want)
			}
			// A second start finds it and leaves it alone.
			if again, err := WriteDefaultNetwork(dir, tc.ipv6); err != nil || again != "" {
				t.Errorf("second write = %q, %v; want nothing", again, err)
			}
		})
	}
}

func TestHostIPv6(t *testing.T) {
	for _, tc := range []struct {
		name             string
		ifInet6          bool
		all, defaultConf string // disable_ipv6 values; "" is a missing file
		want             bool
	}{
		{name: "enabled", ifInet6: true, all: "0", defaultConf: "0", want: true},
		{name: "no IPv6 in the kernel", all: "0", defaultConf: "0"},
		{name: "disabled on all", ifInet6: true, all: "1", defaultConf: "0"},
		{name: "disabled for new interfaces", ifInet6: true, all: "0", defaultConf: "1"},
		{name: "no sysctl", ifInet6: true},
	} {
		t.Run(tc.name, func(t *testing.T) {
			proc := t.TempDir()
			if tc.ifInet6 {
				writeFile(t, filepath.Join(proc, "net", "if_inet6"), "")
			}
			for conf, v := range map[string]string{"all": tc.all, "default": tc.defaultConf} {
				if v != "" {
					writeFile(t, filepath.Join(proc, "sys", "net", "ipv6", "conf", conf, "disable_ipv6"), v+"\n")
				}
			}
			if got := hostIPv6(proc); got != tc.want {
				t.Errorf("hostIPv6 = %v, want %v", got, tc.want)
			}
		})
	}
}

func writeFile(t *testing.T, path, content string) {
	t.Helper()
	if err := os.MkdirAll(filepath.Dir(path), 0o755); err != nil {
		t.Fatal(err)
	}
	if err := os.WriteFile(path, []byte(content), 0o644); err != nil {
		t.Fatal(err)
	}
}
