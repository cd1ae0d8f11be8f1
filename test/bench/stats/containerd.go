package main

// Debian's containerd 1.6.20 on private directories, as test/bench/exec
// starts it (the same configuration, so the two benchmarks compare the
// same containerd).

import (
	"context"
	"errors"
	"fmt"
	"os"
	"os/exec"
	"path/filepath"
	"strconv"
	"strings"
	"syscall"
	"time"

	"google.golang.org/grpc"
	"google.golang.org/grpc/credentials/insecure"
	runtimeapi "k8s.io/cri-api/pkg/apis/runtime/v1"

	"github.com/noded-dev/noded/test/testenv"
)

const pauseImage = "registry.k8s.io/pause:3.9"

// containerd is one containerd daemon of this benchmark.
type containerd struct {
	cmd     *exec.Cmd
	done    chan error
	conn    *grpc.ClientConn
	rt      runtimeapi.RuntimeServiceClient
	img     runtimeapi.ImageServiceClient
	dir     string
	sock    string
	logPath string
	bridge  string
	logFile *os.File
	// madeRun are the host directories containerd 1.6 uses whatever its
	// configuration, if this run created them: /run/containerd/s (its
	// shims' sockets) and /var/lib/cni/results (libcni's cache: the CRI
	// plugin sets no cache directory). Removed at the end when empty.
	madeRun []string
}

// debian is the unpacked Debian containerd and runc packages.
type debian struct {
	bin, containerd, runc          string
	containerdVersion, runcVersion string
}

// debianPackages downloads (apt-get download) and unpacks (dpkg-deb -x)
// Debian's containerd and runc below dir, unless already there.
func debianPackages(ctx context.Context, dir string) (*debian, error) {
	root := filepath.Join(dir, "pkg")
	p := &debian{bin: filepath.Join(root, "usr", "bin"), containerd: filepath.Join(root, "usr", "bin", "containerd"), runc: filepath.Join(root, "usr", "sbin", "runc")}
	_, err1 := os.Stat(p.containerd)
	_, err2 := os.Stat(p.runc)
	_, err3 := os.Stat(filepath.Join(p.bin, "containerd-shim-runc-v2"))
	if err1 != nil || err2 != nil || err3 != nil {
		if err := os.MkdirAll(dir, 0o755); err != nil {
			return nil, err
		}
		debs, _ := filepath.Glob(filepath.Join(dir, "*.deb"))
		if len(debs) < 2 {
			cmd := exec.CommandContext(ctx, "apt-get", "download", "containerd", "runc")
			cmd.Dir = dir
			if out, err := cmd.CombinedOutput(); err != nil {
				return nil, fmt.Errorf("apt-get download containerd runc: %w\n%s", err, out)
			}
			debs, _ = filepath.Glob(filepath.Join(dir, "*.deb"))
		}
		for _, deb := range debs {
			if out, err := exec.CommandContext(ctx, "dpkg-deb", "-x", deb, root).CombinedOutput(); err != nil {
				return nil, fmt.Errorf("dpkg-deb -x %s: %w\n%s", deb, err, out)
			}
		}
	}
	out, err := exec.CommandContext(ctx, p.containerd, "--version").Output()
	if err != nil {
		return nil, fmt.Errorf("%s --version: %w", p.containerd, err)
	}
	p.containerdVersion = strings.TrimSpace(string(out))
	out, err = exec.CommandContext(ctx, p.runc, "--version").Output()
	if err != nil {
		return nil, fmt.Errorf("%s --version: %w", p.runc, err)
	}
	p.runcVersion, _, _ = strings.Cut(strings.TrimSpace(string(out)), "\n")
	return p, nil
}

// startContainerd runs containerd with its CRI plugin on private
// directories below dir: runc from the Debian package, the cgroupfs
// driver, a CNI bridge of its own, the offline registry over plain HTTP
// and its pause image as the sandbox image.
func startContainerd(ctx context.Context, pkg *debian, dir, regAddr, bridge, subnet string) (*containerd, error) {
	c := &containerd{dir: dir, sock: filepath.Join(dir, "containerd.sock"), logPath: filepath.Join(dir, "containerd.log"), bridge: bridge}
	for _, sub := range []string{"cni", "opt"} {
		if err := os.MkdirAll(filepath.Join(dir, sub), 0o755); err != nil {
			return nil, err
		}
	}
	conf := testenv.BridgeConf("containerd-bench-stats", bridge, subnet, filepath.Join(dir, "ipam"))
	if err := os.WriteFile(filepath.Join(dir, "cni", "10-bench.conflist"), []byte(conf), 0o644); err != nil {
		return nil, err
	}
	for _, d := range []string{"/run/containerd", "/run/containerd/s", "/var/lib/cni", "/var/lib/cni/results"} {
		if _, err := os.Stat(d); os.IsNotExist(err) {
			c.madeRun = append(c.madeRun, d)
		}
	}
	toml := fmt.Sprintf(`version = 2
root = %[1]q
state = %[2]q
disabled_plugins = ["io.containerd.snapshotter.v1.btrfs", "io.containerd.snapshotter.v1.zfs", "io.containerd.snapshotter.v1.devmapper", "io.containerd.snapshotter.v1.aufs"]
[grpc]
  address = %[3]q
[plugins."io.containerd.internal.v1.opt"]
  path = %[4]q
[plugins."io.containerd.grpc.v1.cri"]
  sandbox_image = %[5]q
  stream_server_address = "127.0.0.1"
  stream_server_port = "0"
  netns_mounts_under_state_dir = true
  # This machine may not lower oom_score_adj (no CAP_SYS_RESOURCE): the
  # sandbox's -998 is clamped to containerd's own, as noded clamps.
  restrict_oom_score_adj = true
  [plugins."io.containerd.grpc.v1.cri".containerd]
    snapshotter = "overlayfs"
    default_runtime_name = "runc"
    [plugins."io.containerd.grpc.v1.cri".containerd.runtimes.runc]
      runtime_type = "io.containerd.runc.v2"
      [plugins."io.containerd.grpc.v1.cri".containerd.runtimes.runc.options]
        BinaryName = %[6]q
        Root = %[7]q
        SystemdCgroup = false
  [plugins."io.containerd.grpc.v1.cri".cni]
    bin_dir = %[8]q
    conf_dir = %[9]q
  [plugins."io.containerd.grpc.v1.cri".registry.mirrors.%[10]q]
    endpoint = [%[11]q]
`, filepath.Join(dir, "root"), filepath.Join(dir, "state"), c.sock, filepath.Join(dir, "opt"),
		regAddr+"/"+pauseImage, pkg.runc, filepath.Join(dir, "runc"), cniBinDir(), filepath.Join(dir, "cni"),
		regAddr, "http://"+regAddr)
	confPath := filepath.Join(dir, "config.toml")
	if err := os.WriteFile(confPath, []byte(toml), 0o644); err != nil {
		return nil, err
	}
	logFile, err := os.Create(c.logPath)
	if err != nil {
		return nil, err
	}
	c.logFile = logFile
	c.cmd = exec.Command(pkg.containerd, "-c", confPath)
	c.cmd.Env = append(os.Environ(), "PATH="+pkg.bin+":"+os.Getenv("PATH"))
	c.cmd.Stdout, c.cmd.Stderr = logFile, logFile
	if err := c.cmd.Start(); err != nil {
		_ = logFile.Close()
		return nil, err
	}
	c.done = make(chan error, 1)
	go func() { c.done <- c.cmd.Wait() }()
	conn, err := grpc.NewClient("unix://"+c.sock, grpc.WithTransportCredentials(insecure.NewCredentials()))
	if err != nil {
		_ = c.stop()
		return nil, err
	}
	c.conn = conn
	c.rt = runtimeapi.NewRuntimeServiceClient(conn)
	c.img = runtimeapi.NewImageServiceClient(conn)
	wctx, cancel := context.WithTimeout(ctx, 30*time.Second)
	defer cancel()
	for {
		if st, err := c.rt.Status(wctx, &runtimeapi.StatusRequest{}); err == nil && ready(st) {
			return c, nil
		}
		select {
		case err := <-c.done:
			c.done <- err
			_ = c.stop()
			return nil, fmt.Errorf("containerd exited during start-up: %w\n%s", err, readFile(c.logPath))
		case <-wctx.Done():
			_ = c.stop()
			return nil, fmt.Errorf("containerd not ready within 30s\n%s", readFile(c.logPath))
		case <-time.After(100 * time.Millisecond):
		}
	}
}

// ready reports whether the runtime and its network are ready.
func ready(st *runtimeapi.StatusResponse) bool {
	n := 0
	for _, c := range st.GetStatus().GetConditions() {
		if c.GetStatus() && (c.GetType() == runtimeapi.RuntimeReady || c.GetType() == runtimeapi.NetworkReady) {
			n++
		}
	}
	return n == 2
}

// stop removes every pod, stops containerd (SIGTERM, then SIGKILL after
// 20 s), kills any shim of this containerd still alive (by PID, from its
// command line naming this containerd's socket), and removes the bridge
// and the /run/containerd directories this run created.
func (c *containerd) stop() error {
	var errs []error
	if c.rt != nil {
		ctx, cancel := context.WithTimeout(context.Background(), time.Minute)
		if pods, err := c.rt.ListPodSandbox(ctx, &runtimeapi.ListPodSandboxRequest{}); err == nil {
			for _, p := range pods.GetItems() {
				_, _ = c.rt.StopPodSandbox(ctx, &runtimeapi.StopPodSandboxRequest{PodSandboxId: p.GetId()})
				_, _ = c.rt.RemovePodSandbox(ctx, &runtimeapi.RemovePodSandboxRequest{PodSandboxId: p.GetId()})
			}
		}
		cancel()
	}
	if c.conn != nil {
		_ = c.conn.Close()
	}
	if c.done != nil {
		_ = c.cmd.Process.Signal(syscall.SIGTERM)
		select {
		case <-c.done: //nolint:errcheck // containerd's exit status on SIGTERM is not of interest
		case <-time.After(20 * time.Second):
			_ = c.cmd.Process.Kill()
			<-c.done //nolint:errcheck // only reaps the process after the SIGKILL
			errs = append(errs, errors.New("containerd did not stop on SIGTERM within 20s"))
		}
		c.done = nil
	}
	for _, pid := range processesNaming(c.sock) {
		_ = syscall.Kill(pid, syscall.SIGKILL)
		errs = append(errs, fmt.Errorf("killed leftover containerd shim %d", pid))
	}
	_ = exec.Command("ip", "link", "del", c.bridge).Run()
	for i := len(c.madeRun) - 1; i >= 0; i-- {
		_ = os.Remove(c.madeRun[i]) // only if empty
	}
	if c.logFile != nil {
		_ = c.logFile.Close()
	}
	return errors.Join(errs...)
}

// processesNaming lists the processes whose command line contains s.
func processesNaming(s string) []int {
	entries, _ := os.ReadDir("/proc")
	var pids []int
	for _, e := range entries {
		pid, err := strconv.Atoi(e.Name())
		if err != nil || pid == os.Getpid() {
			continue
		}
		cmdline, _ := os.ReadFile(filepath.Join("/proc", e.Name(), "cmdline"))
		if strings.Contains(string(cmdline), s) {
			pids = append(pids, pid)
		}
	}
	return pids
}

func cniBinDir() string {
	for _, d := range []string{"/opt/cni/bin", "/usr/lib/cni"} {
		if _, err := os.Stat(filepath.Join(d, "bridge")); err == nil {
			return d
		}
	}
	return "/opt/cni/bin"
}
