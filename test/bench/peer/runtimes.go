package peer

import (
	"context"
	"errors"
	"flag"
	"fmt"
	"os"
	"os/exec"
	"path/filepath"
	"strings"
	"syscall"
	"time"

	"google.golang.org/grpc"
	"google.golang.org/grpc/credentials/insecure"
	runtimeapi "k8s.io/cri-api/pkg/apis/runtime/v1"

	"github.com/noded-dev/noded/test/testenv"
)

// Flags choose the runtimes a comparing benchmark drives: the runtime
// under test (noded started here, or any CRI endpoint) and, with
// -compare, the peers started here.
type Flags struct {
	Endpoint string
	Compare  bool
	// NodedArgs (-noded-args) are added to the command line of the noded
	// started here, after the benchmark's own: to measure a setting, e.g.
	// -noded-args "--max-parallel-starts 4".
	NodedArgs string
}

// AddFlags registers -endpoint and -compare on the command line.
func AddFlags() *Flags {
	f := &Flags{}
	flag.StringVar(&f.Endpoint, "endpoint", "", "CRI socket of the runtime under test (unix:///path or a path) instead of a noded started here; "+
		"it must pull the benchmark's images by name (e.g. through a mirror of the offline test registry) and use the cgroupfs driver")
	flag.BoolVar(&f.Compare, "compare", false, "also start Debian's containerd 1.6 + runc and containerd 2 + runc 1.4 (built from the Go module proxy) on private directories, "+
		"and drive all with the same client in alternating trials")
	flag.StringVar(&f.NodedArgs, "noded-args", "", "more arguments for the noded started here (split at spaces), e.g. \"--max-parallel-starts 4\"")
	return f
}

// Runtime is one CRI runtime a benchmark drives.
type Runtime struct {
	// Name labels the runtime's column: "noded", "containerd-1.6",
	// "containerd-2.4", or the endpoint's runtime name.
	Name string
	// Subject is the runtime under test; the others are peers, and the
	// tables give subject / best peer.
	Subject bool
	RT      runtimeapi.RuntimeServiceClient
	Img     runtimeapi.ImageServiceClient
	// Version is what the runtime says it is (and its runc).
	Version string
	// Pid is the daemon's process (found through the socket for an
	// endpoint; 0 when unknown).
	Pid int
	// Cgroup is the one-component cgroup parent below which this
	// runtime's pods go (cgroupfs), removed by Bench.Close.
	Cgroup string
	// Noded is the daemon when this run started noded.
	Noded *testenv.Daemon
	// Containerd is the daemon when this run started a containerd.
	Containerd *Containerd

	stop func() error
}

// Setup is how a benchmark wants its runtimes.
type Setup struct {
	Flags
	// Peers adds Debian's containerd 1.6 even without -compare (bench-exec
	// and bench-stats compare with it by default).
	Peers bool
	// NodedArgs are added to noded's command line.
	NodedArgs []string
	// RegistriesConf is noded's registries.conf; Mirrors the containerd
	// peers' registry mirrors (name → endpoint URL), SandboxImage their
	// sandbox image. Empty: the offline test registry's.
	RegistriesConf string
	Mirrors        map[string]string
	SandboxImage   string
	// Net is the second octet of the runtimes' pod subnets: runtime i gets
	// 10.<Net+i>.0.0/22 on a bridge of its own.
	Net int
}

// Runtimes starts what s asks for: the runtime under test first, then the
// peers. Bench.Close stops them.
func (b *Bench) Runtimes(ctx context.Context, s Setup) ([]*Runtime, error) {
	if s.RegistriesConf == "" {
		s.RegistriesConf = b.Reg.RegistriesConf
	}
	var subject *Runtime
	var err error
	if s.Endpoint != "" {
		subject, err = b.endpoint(ctx, s.Endpoint)
	} else {
		subject, err = b.noded(ctx, s)
	}
	if err != nil {
		return nil, err
	}
	subject.Subject = true
	rts := []*Runtime{subject}
	if !s.Compare && !s.Peers {
		return rts, nil
	}
	dists := []*Dist{b.Pkg}
	if s.Compare {
		d2, err := Containerd2(ctx, b.Repo)
		if err != nil {
			return nil, err
		}
		dists = append(dists, d2)
	}
	for i, d := range dists {
		r, err := b.containerd(ctx, s, d, i+1)
		if err != nil {
			return nil, err
		}
		rts = append(rts, r)
	}
	return rts, nil
}

func (b *Bench) subnet(s Setup, i int) string { return fmt.Sprintf("10.%d.0.0/22", s.Net+i) }

// cgroup names runtime kind's pod cgroup parent and has Close remove it.
func (b *Bench) cgroup(kind string) string {
	cg := "noded-" + b.Name + "-" + kind + b.Tag
	b.cgroups = append(b.cgroups, cg)
	return cg
}

func (b *Bench) noded(ctx context.Context, s Setup) (*Runtime, error) {
	dir := filepath.Join(b.Dir, "noded")
	bridge := "nbn" + b.Tag
	if err := os.MkdirAll(filepath.Join(dir, "cni"), 0o755); err != nil {
		return nil, err
	}
	conf := testenv.BridgeConf("noded-"+b.Name, bridge, b.subnet(s, 0), filepath.Join(dir, "ipam"))
	if err := os.WriteFile(filepath.Join(dir, "cni", "10-bench.conflist"), []byte(conf), 0o644); err != nil {
		return nil, err
	}
	policy := filepath.Join(b.Dir, "policy.json")
	if err := os.WriteFile(policy, []byte(testenv.InsecurePolicy), 0o644); err != nil {
		return nil, err
	}
	args := append([]string{"--registries-conf", s.RegistriesConf, "--signature-policy", policy, "--log-level", "info"}, s.NodedArgs...)
	args = append(args, strings.Fields(s.Flags.NodedArgs)...)
	d, err := testenv.Start(testenv.Options{Dir: dir, Args: args})
	if err != nil {
		_ = exec.Command("ip", "link", "del", bridge).Run()
		return nil, err
	}
	r := &Runtime{Name: "noded", RT: d.Runtime(), Img: d.Images(), Pid: d.Pid(), Cgroup: b.cgroup("n"), Noded: d}
	r.stop = func() error {
		err := d.Stop()
		_ = exec.Command("ip", "link", "del", bridge).Run()
		return err
	}
	b.runtimes = append(b.runtimes, r)
	return r, r.version(ctx, "")
}

func (b *Bench) containerd(ctx context.Context, s Setup, d *Dist, i int) (*Runtime, error) {
	name := "containerd-1.6"
	if d.V2 {
		name = "containerd-2"
	}
	if f := strings.Fields(d.ContainerdVersion); len(f) >= 3 {
		// "containerd github.com/containerd/containerd v1.6.20~ds1 ..."
		v := strings.TrimPrefix(f[2], "v")
		if parts := strings.SplitN(v, ".", 3); len(parts) >= 2 {
			name = "containerd-" + parts[0] + "." + parts[1]
		}
	}
	mirrors, sandbox := s.Mirrors, s.SandboxImage
	var c *Containerd
	var err error
	dir := filepath.Join(b.Dir, name)
	bridge := fmt.Sprintf("nbc%d%s", i, b.Tag)
	if mirrors == nil {
		c, err = StartContainerd(ctx, d, dir, name+"-"+b.Name, b.Reg.Addr, bridge, b.subnet(s, i))
	} else {
		if sandbox == "" {
			sandbox = PauseImage
		}
		c, err = startContainerd(ctx, d, dir, name+"-"+b.Name, bridge, b.subnet(s, i), sandbox, mirrors)
	}
	if err != nil {
		return nil, fmt.Errorf("%s: %w", name, err)
	}
	r := &Runtime{Name: name, RT: c.RT, Img: c.Img, Pid: c.Cmd.Process.Pid, Cgroup: b.cgroup(fmt.Sprintf("c%d", i)), Containerd: c, stop: c.Stop}
	b.runtimes = append(b.runtimes, r)
	return r, r.version(ctx, ", "+d.RuncVersion)
}

func (b *Bench) endpoint(ctx context.Context, ep string) (*Runtime, error) {
	path := strings.TrimPrefix(ep, "unix://")
	conn, err := grpc.NewClient("unix://"+path, grpc.WithTransportCredentials(insecure.NewCredentials()),
		grpc.WithDefaultCallOptions(grpc.MaxCallRecvMsgSize(16<<20)))
	if err != nil {
		return nil, err
	}
	r := &Runtime{RT: runtimeapi.NewRuntimeServiceClient(conn), Img: runtimeapi.NewImageServiceClient(conn), Cgroup: b.cgroup("e"), Pid: SocketOwner(path)}
	r.stop = func() error { r.RemovePods(); return conn.Close() }
	b.runtimes = append(b.runtimes, r)
	if err := r.version(ctx, ""); err != nil {
		return nil, fmt.Errorf("%s: %w", ep, err)
	}
	v, _ := r.RT.Version(ctx, &runtimeapi.VersionRequest{})
	r.Name = v.GetRuntimeName()
	return r, nil
}

func (r *Runtime) version(ctx context.Context, extra string) error {
	v, err := r.RT.Version(ctx, &runtimeapi.VersionRequest{})
	if err != nil {
		return err
	}
	r.Version = v.GetRuntimeName() + " " + v.GetRuntimeVersion() + " (CRI " + v.GetRuntimeApiVersion() + ")" + extra
	return nil
}

// RemovePods stops and removes every pod of the runtime.
func (r *Runtime) RemovePods() {
	ctx, cancel := context.WithTimeout(context.Background(), 2*time.Minute)
	defer cancel()
	pods, err := r.RT.ListPodSandbox(ctx, &runtimeapi.ListPodSandboxRequest{})
	if err != nil {
		return
	}
	for _, p := range pods.GetItems() {
		_, _ = r.RT.StopPodSandbox(ctx, &runtimeapi.StopPodSandboxRequest{PodSandboxId: p.GetId()})
		_, _ = r.RT.RemovePodSandbox(ctx, &runtimeapi.RemovePodSandboxRequest{PodSandboxId: p.GetId()})
	}
}

// Order is the runtimes in trial t's order: each goes first in turn.
func Order(rts []*Runtime, t int) []*Runtime {
	k := t % len(rts)
	return append(append([]*Runtime{}, rts[k:]...), rts[:k]...)
}

// PrintRuntimes prints what runs, and the machine's load.
func PrintRuntimes(rts []*Runtime, trials int) {
	for _, r := range rts {
		fmt.Printf("%-15s %s (pid %d)\n", r.Name+":", r.Version, r.Pid)
	}
	fmt.Printf("%d trials alternating; %d CPUs; loadavg %s\n", trials, NumCPU(), Loadavg())
}

// stopRuntimes stops the runtimes this run started, last first, and
// checks that no process naming the run's directory is left (a shim, a
// monitor, a pause): any such is killed by PID and reported.
func (b *Bench) stopRuntimes() error {
	var errs []error
	for i := len(b.runtimes) - 1; i >= 0; i-- {
		r := b.runtimes[i]
		if r.Containerd == nil {
			r.RemovePods()
		}
		if err := r.stop(); err != nil {
			errs = append(errs, fmt.Errorf("%s: %w", r.Name, err))
		}
	}
	b.runtimes = nil
	if b.Dir != "" {
		for _, pid := range processesNaming(b.Dir) {
			_ = syscall.Kill(pid, syscall.SIGKILL)
			errs = append(errs, fmt.Errorf("killed leftover process %d of this run", pid))
		}
	}
	return errors.Join(errs...)
}
