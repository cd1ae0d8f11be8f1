package sandbox

import (
	"os"
	"path/filepath"
	"strings"
	"testing"

	runtimeapi "k8s.io/cri-api/pkg/apis/runtime/v1"
)

// mountChecker is a host that can say whether it mounted path.
type mountChecker struct {
	host
	mounted func(path string) bool
}

// podFileHosts are the hosts TestPodFiles runs on: the fake always, the
// real kernel when the test runs as root.
func podFileHosts(t *testing.T) map[string]mountChecker {
	fake := &fakeHost{mounts: map[string]bool{}}
	hosts := map[string]mountChecker{"fake host": {fake, func(p string) bool {
		fake.mu.Lock()
		defer fake.mu.Unlock()
		return fake.mounts[p]
	}}}
	if os.Geteuid() != 0 {
		t.Log("not root: the real /dev/shm mount is not tried (the integration tests cover it)")
		return hosts
	}
	hosts["real host"] = mountChecker{RealHost{}, func(p string) bool {
		mounts, _ := os.ReadFile("/proc/self/mountinfo")
		return strings.Contains(string(mounts), p+" ")
	}}
	return hosts
}

func TestPodFiles(t *testing.T) {
	hostDir := t.TempDir()
	host := hostFiles{Hosts: filepath.Join(hostDir, "hosts"), ResolvConf: filepath.Join(hostDir, "resolv.conf")}
	_ = os.WriteFile(host.Hosts, []byte("10.0.0.1 node1\n"), 0o644)
	_ = os.WriteFile(host.ResolvConf, []byte("nameserver 10.0.0.53\n"), 0o644)

	nodeNS := &runtimeapi.NamespaceOption{Network: runtimeapi.NamespaceMode_NODE, Ipc: runtimeapi.NamespaceMode_NODE}
	tests := []podFilesCase{
		{
			desc: "pod network with DNS config",
			cfg: &runtimeapi.PodSandboxConfig{Hostname: "web-0", DnsConfig: &runtimeapi.DNSConfig{
				Servers: []string{"10.96.0.10"}, Searches: []string{"default.svc.cluster.local", "svc.cluster.local"}, Options: []string{"ndots:5"},
			}},
			wantHosts:  "127.0.0.1\tlocalhost",
			wantResolv: "search default.svc.cluster.local svc.cluster.local\nnameserver 10.96.0.10\noptions ndots:5\n",
			wantName:   "web-0\n",
		},
		{
			desc:        "host network and IPC copy the host's files",
			cfg:         &runtimeapi.PodSandboxConfig{Linux: &runtimeapi.LinuxPodSandboxConfig{SecurityContext: &runtimeapi.LinuxSandboxSecurityContext{NamespaceOptions: nodeNS}}},
			wantHosts:   "10.0.0.1 node1",
			wantResolv:  "nameserver 10.0.0.53\n",
			wantHostShm: true,
		},
		{desc: "bad hostname", cfg: &runtimeapi.PodSandboxConfig{Hostname: "a/b"}, wantErr: true},
	}
	for hostName, h := range podFileHosts(t) {
		for _, tt := range tests {
			t.Run(hostName+"/"+tt.desc, func(t *testing.T) {
				tt.run(t, h, host)
			})
		}
	}
}

type podFilesCase struct {
	desc        string
	cfg         *runtimeapi.PodSandboxConfig
	wantHosts   string
	wantResolv  string
	wantName    string
	wantHostShm bool
	wantErr     bool
}

func (tt podFilesCase) run(t *testing.T, h mountChecker, host hostFiles) {
	dir := filepath.Join(t.TempDir(), "pod")
	t.Cleanup(func() {
		if err := removePodFiles(h, dir); err != nil {
			t.Error(err)
		}
		if h.mounted(filepath.Join(dir, "shm")) {
			t.Error("shm still mounted after removePodFiles")
		}
	})
	files, err := podFiles(h, dir, tt.cfg, host)
	if (err != nil) != tt.wantErr {
		t.Fatalf("err = %v", err)
	}
	if tt.wantErr {
		return
	}
	read := func(p string) string { b, _ := os.ReadFile(p); return string(b) }
	if !strings.Contains(read(files.Hosts), tt.wantHosts) {
		t.Errorf("hosts = %q", read(files.Hosts))
	}
	if read(files.ResolvConf) != tt.wantResolv {
		t.Errorf("resolv.conf = %q", read(files.ResolvConf))
	}
	if tt.wantName != "" && read(files.Hostname) != tt.wantName {
		t.Errorf("hostname = %q", read(files.Hostname))
	}
	if tt.wantHostShm != (files.Shm == "/dev/shm") {
		t.Errorf("shm = %q", files.Shm)
	}
	if !tt.wantHostShm && !h.mounted(files.Shm) {
		t.Errorf("%s is not mounted", files.Shm)
	}
}

func TestRemovePodFilesIdempotent(t *testing.T) {
	dir := filepath.Join(t.TempDir(), "never-made")
	for name, h := range podFileHosts(t) {
		for range 2 {
			if err := removePodFiles(h, dir); err != nil {
				t.Fatalf("%s: %v", name, err)
			}
		}
	}
}
