// Package peer starts the runtimes the benchmarks compare noded with, on
// private directories, one configuration for every benchmark so that each
// compares the same containerd: Debian's containerd 1.6.20 (its CRI
// plugin, with Debian's runc) and containerd 2 with runc 1.4 built from the
// Go module proxy (build-containerd2.sh). runtimes.go puts noded, the peers
// or any CRI endpoint behind one Runtime for the benchmarks' one client.
package peer

import (
	"context"
	"errors"
	"fmt"
	"maps"
	"os"
	"os/exec"
	"path/filepath"
	"slices"
	"strconv"
	"strings"
	"syscall"
	"time"

	"google.golang.org/grpc"
	"google.golang.org/grpc/credentials/insecure"
	runtimeapi "k8s.io/cri-api/pkg/apis/runtime/v1"

	"github.com/noded-dev/noded/test/testenv"
	"github.com/noded-dev/noded/test/testimages"
)

// PauseImage is containerd's sandbox image, served by the offline registry.
const PauseImage = "registry.k8s.io/pause:3.9"

// Containerd is one containerd daemon of a benchmark.
type Containerd struct {
	Cmd     *exec.Cmd
	RT      runtimeapi.RuntimeServiceClient
	Img     runtimeapi.ImageServiceClient
	LogPath string

	done    chan error
	conn    *grpc.ClientConn
	dir     string
	sock    string
	bridge  string
	logFile *os.File
	// madeRun are the host directories containerd 1.6 uses whatever its
	// configuration, if this run created them: /run/containerd/s (its
	// shims' sockets) and /var/lib/cni/results (libcni's cache: the CRI
	// plugin sets no cache directory). Removed at the end when empty.
	madeRun []string
}

// Dist is one containerd distribution: containerd, its runc v2 shim (in
// Bin, found on PATH) and the runc it runs.
type Dist struct {
	Bin, Containerd, Runc          string
	ContainerdVersion, RuncVersion string
	// V2 is containerd 2.x: its configuration lacks 1.x's opt plugin and
	// has NRI, which must stay off the host's NRI socket.
	V2 bool
}

// DebianPackages downloads (apt-get download) and unpacks (dpkg-deb -x)
// Debian's containerd and runc below dir, unless already there.
func DebianPackages(ctx context.Context, dir string) (*Dist, error) {
	root := filepath.Join(dir, "pkg")
	p := &Dist{Bin: filepath.Join(root, "usr", "bin"), Containerd: filepath.Join(root, "usr", "bin", "containerd"), Runc: filepath.Join(root, "usr", "sbin", "runc")}
	_, err1 := os.Stat(p.Containerd)
	_, err2 := os.Stat(p.Runc)
	_, err3 := os.Stat(filepath.Join(p.Bin, "containerd-shim-runc-v2"))
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
	return p, p.versions(ctx)
}

// versions fills in the versions the binaries print.
func (p *Dist) versions(ctx context.Context) error {
	out, err := exec.CommandContext(ctx, p.Containerd, "--version").Output()
	if err != nil {
		return fmt.Errorf("%s --version: %w", p.Containerd, err)
	}
	p.ContainerdVersion = strings.TrimSpace(string(out))
	out, err = exec.CommandContext(ctx, p.Runc, "--version").Output()
	if err != nil {
		return fmt.Errorf("%s --version: %w", p.Runc, err)
	}
	p.RuncVersion, _, _ = strings.Cut(strings.TrimSpace(string(out)), "\n")
	return nil
}

// Containerd2 is containerd 2 and runc 1.4 as build-containerd2.sh builds
// them from the Go module proxy into the cache (/var/cache/noded-test);
// it runs the script (minutes, once per version) when they are missing.
func Containerd2(ctx context.Context, repo string) (*Dist, error) {
	script := filepath.Join(repo, "test", "bench", "peer", "build-containerd2.sh")
	cmd := exec.CommandContext(ctx, "bash", script)
	cmd.Stderr = os.Stderr
	out, err := cmd.Output()
	if err != nil {
		return nil, fmt.Errorf("%s: %w", script, err)
	}
	dirs := strings.Fields(string(out))
	if len(dirs) != 2 {
		return nil, fmt.Errorf("%s printed %q, want two directories", script, out)
	}
	p := &Dist{Bin: dirs[0], Containerd: filepath.Join(dirs[0], "containerd"), Runc: filepath.Join(dirs[1], "runc"), V2: true}
	return p, p.versions(ctx)
}

// StartContainerd runs containerd with its CRI plugin on private
// directories below dir: the distribution's runc, the cgroupfs driver, a
// CNI bridge of its own (the network named network), the offline registry
// at regAddr over plain HTTP, both under its own name and as the mirror of
// the upstream registries it serves (testimages' path-prefixed mirrors, as
// noded's registries.conf has them), and its pause image as the sandbox
// image.
func StartContainerd(ctx context.Context, pkg *Dist, dir, network, regAddr, bridge, subnet string) (*Containerd, error) {
	mirrors := map[string]string{regAddr: "http://" + regAddr}
	for _, r := range testimages.AlwaysMirrored {
		mirrors[r] = "http://" + regAddr + "/v2/" + r
	}
	return startContainerd(ctx, pkg, dir, network, bridge, subnet, regAddr+"/"+PauseImage, mirrors)
}

func startContainerd(ctx context.Context, pkg *Dist, dir, network, bridge, subnet, sandboxImage string, mirrors map[string]string) (*Containerd, error) {
	c := &Containerd{dir: dir, sock: filepath.Join(dir, "containerd.sock"), LogPath: filepath.Join(dir, "containerd.log"), bridge: bridge}
	for _, sub := range []string{"cni", "opt"} {
		if err := os.MkdirAll(filepath.Join(dir, sub), 0o755); err != nil {
			return nil, err
		}
	}
	conf := testenv.BridgeConf(network, bridge, subnet, filepath.Join(dir, "ipam"))
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
%[4]s
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
%[10]s`, filepath.Join(dir, "root"), filepath.Join(dir, "state"), c.sock, versionPlugins(pkg, dir),
		sandboxImage, pkg.Runc, filepath.Join(dir, "runc"), cniBinDir(), filepath.Join(dir, "cni"),
		mirrorConf(mirrors))
	confPath := filepath.Join(dir, "config.toml")
	if err := os.WriteFile(confPath, []byte(toml), 0o644); err != nil {
		return nil, err
	}
	logFile, err := os.Create(c.LogPath)
	if err != nil {
		return nil, err
	}
	c.logFile = logFile
	c.Cmd = exec.Command(pkg.Containerd, "-c", confPath)
	c.Cmd.Env = append(os.Environ(), "PATH="+pkg.Bin+":"+os.Getenv("PATH"))
	c.Cmd.Stdout, c.Cmd.Stderr = logFile, logFile
	if err := c.Cmd.Start(); err != nil {
		_ = logFile.Close()
		return nil, err
	}
	c.done = make(chan error, 1)
	go func() { c.done <- c.Cmd.Wait() }()
	conn, err := grpc.NewClient("unix://"+c.sock, grpc.WithTransportCredentials(insecure.NewCredentials()))
	if err != nil {
		_ = c.Stop()
		return nil, err
	}
	c.conn = conn
	c.RT = runtimeapi.NewRuntimeServiceClient(conn)
	c.Img = runtimeapi.NewImageServiceClient(conn)
	wctx, cancel := context.WithTimeout(ctx, 30*time.Second)
	defer cancel()
	for {
		if st, err := c.RT.Status(wctx, &runtimeapi.StatusRequest{}); err == nil && Ready(st) {
			return c, nil
		}
		select {
		case err := <-c.done:
			c.done <- err
			_ = c.Stop()
			return nil, fmt.Errorf("containerd exited during start-up: %w\n%s", err, readFile(c.LogPath))
		case <-wctx.Done():
			_ = c.Stop()
			return nil, fmt.Errorf("containerd not ready within 30s\n%s", readFile(c.LogPath))
		case <-time.After(100 * time.Millisecond):
		}
	}
}

// versionPlugins is the configuration of the plugins one major version
// has: 1.x's opt directory (else /opt/containerd), 2.x's NRI turned off
// (else it serves the host's /var/run/nri/nri.sock).
func versionPlugins(pkg *Dist, dir string) string {
	if pkg.V2 {
		return "[plugins.\"io.containerd.nri.v1.nri\"]\n  disable = true"
	}
	return fmt.Sprintf("[plugins.\"io.containerd.internal.v1.opt\"]\n  path = %q", filepath.Join(dir, "opt"))
}

// mirrorConf is the CRI plugin's registry.mirrors section (deprecated in
// 2.x for hosts.toml files, still read by 2.4).
func mirrorConf(mirrors map[string]string) string {
	var b strings.Builder
	for _, name := range slices.Sorted(maps.Keys(mirrors)) {
		fmt.Fprintf(&b, "  [plugins.\"io.containerd.grpc.v1.cri\".registry.mirrors.%q]\n    endpoint = [%q]\n", name, mirrors[name])
	}
	return b.String()
}

// Ready reports whether the runtime and its network are ready.
func Ready(st *runtimeapi.StatusResponse) bool {
	n := 0
	for _, c := range st.GetStatus().GetConditions() {
		if c.GetStatus() && (c.GetType() == runtimeapi.RuntimeReady || c.GetType() == runtimeapi.NetworkReady) {
			n++
		}
	}
	return n == 2
}

// Stop removes every pod, stops containerd (SIGTERM, then SIGKILL after
// 20 s), kills any shim of this containerd still alive (by PID, from its
// command line naming this containerd's socket), and removes the bridge
// and the /run/containerd directories this run created.
func (c *Containerd) Stop() error {
	var errs []error
	if c.RT != nil {
		ctx, cancel := context.WithTimeout(context.Background(), time.Minute)
		if pods, err := c.RT.ListPodSandbox(ctx, &runtimeapi.ListPodSandboxRequest{}); err == nil {
			for _, p := range pods.GetItems() {
				_, _ = c.RT.StopPodSandbox(ctx, &runtimeapi.StopPodSandboxRequest{PodSandboxId: p.GetId()})
				_, _ = c.RT.RemovePodSandbox(ctx, &runtimeapi.RemovePodSandboxRequest{PodSandboxId: p.GetId()})
			}
		}
		cancel()
	}
	if c.conn != nil {
		_ = c.conn.Close()
	}
	if c.done != nil {
		_ = c.Cmd.Process.Signal(syscall.SIGTERM)
		select {
		case <-c.done: //nolint:errcheck // containerd's exit status on SIGTERM is not of interest
		case <-time.After(20 * time.Second):
			_ = c.Cmd.Process.Kill()
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

func readFile(p string) string {
	b, _ := os.ReadFile(p)
	return string(b)
}

// Bench is what a side-by-side benchmark starts from: noded's binaries
// checked, Debian's containerd unpacked, a temporary directory, the offline
// registry, and a pod cgroup parent for each runtime (removed by Close).
type Bench struct {
	Repo                          string
	Pkg                           *Dist
	Dir                           string
	Reg                           *testenv.Registry
	NodedCgroup, ContainerdCgroup string
	// Tag is unique to this run (its PID), for bridge names.
	Tag string
	// Name is the benchmark's, in cgroup and network names.
	Name string

	cgroups  []string
	runtimes []*Runtime
}

// Prepare makes a Bench for the benchmark called name; it must run as root.
func Prepare(ctx context.Context, name string) (_ *Bench, retErr error) {
	if os.Geteuid() != 0 {
		return nil, errors.New("needs root")
	}
	b := &Bench{Repo: testenv.RepoRoot(), Tag: strconv.Itoa(os.Getpid() % 10000), Name: strings.TrimPrefix(name, "bench-")}
	for _, bin := range []string{"noded", "noded-pause", "conmon-go"} {
		if _, err := os.Stat(filepath.Join(b.Repo, "bin", bin)); err != nil {
			return nil, fmt.Errorf("no bin/%s: run make build", bin)
		}
	}
	var err error
	if b.Pkg, err = DebianPackages(ctx, filepath.Join(b.Repo, "_build", "containerd")); err != nil {
		return nil, err
	}
	if b.Dir, err = os.MkdirTemp("", "noded-"+name+"-"); err != nil {
		return nil, err
	}
	defer func() {
		if retErr != nil {
			b.Close()
		}
	}()
	if b.Reg, err = testenv.StartRegistry(b.Dir); err != nil {
		return nil, err
	}
	b.NodedCgroup, b.ContainerdCgroup = "noded-"+name+"-n"+b.Tag, "noded-"+name+"-c"+b.Tag
	return b, nil
}

// Close stops the runtimes Runtimes started, removes the cgroups, stops
// the registry and removes the directory (unmounting what is below it,
// the containerd peers' network namespaces included). What it could not
// stop cleanly it reports on stderr.
func (b *Bench) Close() {
	if err := b.stopRuntimes(); err != nil {
		fmt.Fprintln(os.Stderr, "bench: stopping the runtimes:", err)
	}
	for _, cg := range b.cgroups {
		_ = testenv.RemoveCgroupTree(cg)
	}
	if b.NodedCgroup != "" {
		_ = testenv.RemoveCgroupTree(b.NodedCgroup)
		_ = testenv.RemoveCgroupTree(b.ContainerdCgroup)
	}
	if b.Reg != nil {
		b.Reg.Close()
	}
	_ = testenv.CleanupDir(b.Dir)
}

// NumCPU is the number of CPUs /proc/stat lists (the machine's, whatever
// this process's affinity), for the figures' heading.
func NumCPU() int {
	b, _ := os.ReadFile("/proc/stat")
	n := 0
	for _, l := range strings.Split(string(b), "\n") {
		if strings.HasPrefix(l, "cpu") && len(l) > 3 && l[3] >= '0' && l[3] <= '9' {
			n++
		}
	}
	return n
}

// Loadavg is the 1-minute load average, or "?": a figure taken under load
// says so.
func Loadavg() string {
	f := strings.Fields(readFile("/proc/loadavg"))
	if len(f) == 0 {
		return "?"
	}
	return f[0]
}
