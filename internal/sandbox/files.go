package sandbox

import (
	"fmt"
	"os"
	"path/filepath"
	"strings"

	runtimeapi "k8s.io/cri-api/pkg/apis/runtime/v1"

	"github.com/noded-dev/noded/internal/errdefs"
	"github.com/noded-dev/noded/internal/specgen"
)

// defaultShmSize is the pod /dev/shm size, Docker's and containerd's default.
const defaultShmSize = 64 << 20

// hostFiles are the host files a pod copies when it shares the host's view.
type hostFiles struct {
	Hosts      string
	ResolvConf string
}

var realHostFiles = hostFiles{Hosts: "/etc/hosts", ResolvConf: "/etc/resolv.conf"}

// podFiles writes the files a pod shares with its containers under dir and
// mounts its /dev/shm. On error the caller removes them with
// removePodFiles (it is safe on a half-made directory).
func podFiles(h host, dir string, cfg *runtimeapi.PodSandboxConfig, hf hostFiles) (specgen.SandboxFiles, error) {
	files := sandboxFiles(dir, cfg)
	if err := os.MkdirAll(dir, 0o711); err != nil {
		return files, err
	}
	hostNetwork := cfg.GetLinux().GetSecurityContext().GetNamespaceOptions().GetNetwork() == runtimeapi.NamespaceMode_NODE

	hosts, err := hostsContent(hostNetwork, hf.Hosts)
	if err != nil {
		return files, err
	}
	resolv, err := resolvContent(cfg.GetDnsConfig(), hf.ResolvConf)
	if err != nil {
		return files, err
	}
	hostname, err := podHostname(cfg)
	if err != nil {
		return files, err
	}
	for path, content := range map[string]string{files.Hosts: hosts, files.ResolvConf: resolv, files.Hostname: hostname + "\n"} {
		if err := os.WriteFile(path, []byte(content), 0o644); err != nil {
			return files, err
		}
	}

	if files.Shm == "/dev/shm" {
		return files, nil
	}
	if err := os.MkdirAll(files.Shm, 0o700); err != nil {
		return files, err
	}
	if err := h.MountShm(files.Shm, defaultShmSize); err != nil {
		return files, fmt.Errorf("mounting pod /dev/shm: %w", err)
	}
	return files, nil
}

// sandboxFiles names the files a pod in dir shares with its containers.
// A pod in the host's IPC namespace uses the host's /dev/shm.
func sandboxFiles(dir string, cfg *runtimeapi.PodSandboxConfig) specgen.SandboxFiles {
	files := specgen.SandboxFiles{
		Hosts:      filepath.Join(dir, "hosts"),
		ResolvConf: filepath.Join(dir, "resolv.conf"),
		Hostname:   filepath.Join(dir, "hostname"),
		Shm:        filepath.Join(dir, "shm"),
	}
	if cfg.GetLinux().GetSecurityContext().GetNamespaceOptions().GetIpc() == runtimeapi.NamespaceMode_NODE {
		files.Shm = "/dev/shm"
	}
	return files
}

// removePodFiles unmounts the pod's /dev/shm and deletes its directory.
// Idempotent: a missing directory or mount is fine.
func removePodFiles(h host, dir string) error {
	if err := h.UnmountShm(filepath.Join(dir, "shm")); err != nil {
		return err
	}
	return os.RemoveAll(dir)
}

// hostsContent is the pod's /etc/hosts: the host's with host networking (as
// the pod shares the host's names), else loopback entries. The kubelet
// mounts its own managed hosts file over it for regular pods.
func hostsContent(hostNetwork bool, hostPath string) (string, error) {
	if hostNetwork {
		b, err := os.ReadFile(hostPath)
		if err != nil && !os.IsNotExist(err) {
			return "", err
		}
		return string(b), nil
	}
	return "127.0.0.1\tlocalhost\n::1\tlocalhost ip6-localhost ip6-loopback\nfe00::0\tip6-localnet\nff00::0\tip6-mcastprefix\nff02::1\tip6-allnodes\nff02::2\tip6-allrouters\n", nil
}

// resolvContent follows the kubelet's DNS config; with none, the pod uses
// the host's resolver configuration.
func resolvContent(dns *runtimeapi.DNSConfig, hostPath string) (string, error) {
	if dns == nil {
		b, err := os.ReadFile(hostPath)
		if err != nil && !os.IsNotExist(err) {
			return "", err
		}
		return string(b), nil
	}
	var b strings.Builder
	if len(dns.GetSearches()) > 0 {
		b.WriteString("search " + strings.Join(dns.GetSearches(), " ") + "\n")
	}
	for _, s := range dns.GetServers() {
		b.WriteString("nameserver " + s + "\n")
	}
	if len(dns.GetOptions()) > 0 {
		b.WriteString("options " + strings.Join(dns.GetOptions(), " ") + "\n")
	}
	return b.String(), nil
}

// podHostname is the configured hostname, else the node's (host network
// pods, and pods the kubelet gave no hostname), as in containerd.
func podHostname(cfg *runtimeapi.PodSandboxConfig) (string, error) {
	if h := cfg.GetHostname(); h != "" {
		if strings.ContainsAny(h, "/\n\x00") || len(h) > 64 {
			return "", errdefs.InvalidArgument("invalid hostname %q", h)
		}
		return h, nil
	}
	return os.Hostname()
}
