// Command stats measures the stats RPCs of noded against Debian's
// containerd 1.6.20 (its CRI plugin, with Debian's runc 1.1.5), both
// started here on private directories with the same number of running
// pods and driven by the same CRI client, in alternating trials:
//
//   - ListPodSandboxStats and ListContainerStats, one call after another
//     as the kubelet's housekeeping makes them: latency p50/p95, the
//     daemon's own CPU time per call (/proc/PID/stat utime+stime) and the
//     machine's (which counts containerd's shims, asked for each
//     container's metrics). A runtime answering ListPodSandboxStats with
//     Unimplemented shows n/a (containerd 1.6.20 does answer it).
//
// containerd and runc are not installed: their Debian packages are
// fetched with apt-get download into _build/containerd and unpacked there
// with dpkg-deb -x (reused when present), as test/bench/exec does.
//
// It prints figures; it asserts nothing. Run it as root on an otherwise
// idle machine: `make bench-stats`.
package main

import (
	"context"
	"flag"
	"fmt"
	"os"
	"os/exec"
	"os/signal"
	"path/filepath"
	"slices"
	"strconv"
	"strings"
	"sync"
	"syscall"
	"time"

	"google.golang.org/grpc/codes"
	"google.golang.org/grpc/status"
	runtimeapi "k8s.io/cri-api/pkg/apis/runtime/v1"

	"github.com/noded-dev/noded/internal/procfs"
	"github.com/noded-dev/noded/test/bench/peer"
	"github.com/noded-dev/noded/test/testenv"
)

// image is the busybox image of the offline registry (test/testimages),
// served under its upstream name and, for containerd, under ADDR/name.
const image = "registry.k8s.io/e2e-test-images/busybox:1.29-2"

type config struct {
	pods, trials, calls int
	printLogs           bool
	// containerd false runs noded alone (a quick look at noded's own
	// figures, e.g. under a profiler).
	containerd bool
}

func main() {
	var cfg config
	flag.IntVar(&cfg.pods, "pods", 50, "running pods per runtime, one busybox container each")
	flag.IntVar(&cfg.trials, "trials", 4, "trials per runtime, alternating (even: each runtime goes first as often)")
	flag.IntVar(&cfg.calls, "calls", 50, "calls of each RPC per trial")
	flag.BoolVar(&cfg.printLogs, "print-logs", false, "print both daemons' logs on failure")
	flag.BoolVar(&cfg.containerd, "containerd", true, "compare with containerd (false: noded alone)")
	flag.Parse()
	ctx, stop := signal.NotifyContext(context.Background(), os.Interrupt, syscall.SIGTERM)
	err := run(ctx, cfg)
	stop()
	if err != nil {
		fmt.Fprintln(os.Stderr, "bench-stats:", err)
		os.Exit(1)
	}
}

// rtm is one runtime under test.
type rtm struct {
	name    string
	rt      runtimeapi.RuntimeServiceClient
	img     runtimeapi.ImageServiceClient
	pid     int    // the daemon, whose CPU time is measured
	image   string // the busybox reference this runtime pulls
	cgroup  string // pod cgroup parent directory, removed at the end
	logDir  string
	version string
	// podStats says the runtime has ListPodSandboxStats.
	podStats bool
}

// samples are one runtime's figures over all trials.
type samples struct {
	listPod, listCtr         []time.Duration
	podDaemonCPU, podCPU     time.Duration // totals
	ctrDaemonCPU, ctrCPU     time.Duration
	podCalls, ctrCalls       int
	podEntries, ctrEntries   int // of the last answer
	podContainers, ctrValues int // sanity: what the answers held
}

func run(ctx context.Context, cfg config) (retErr error) {
	b, err := peer.Prepare(ctx, "bench-stats")
	if err != nil {
		return err
	}
	defer b.Close()
	pkg, dir, reg, tag := b.Pkg, b.Dir, b.Reg, b.Tag
	nodedCg, ctrdCg := b.NodedCgroup, b.ContainerdCgroup

	var runtimes []*rtm
	if cfg.containerd {
		// containerd, on its own bridge and subnet (a /22: room for the
		// pods).
		cd, err := peer.StartContainerd(ctx, pkg, filepath.Join(dir, "containerd"), "containerd-bench-stats", reg.Addr, "nbsc"+tag, "10.238.0.0/22")
		if err != nil {
			return err
		}
		defer func() {
			if err := cd.Stop(); err != nil && retErr == nil {
				retErr = err
			}
			if retErr != nil && cfg.printLogs {
				fmt.Fprintf(os.Stderr, "containerd log:\n%s\n", readFile(cd.LogPath))
			}
		}()
		runtimes = append(runtimes, &rtm{name: "containerd", rt: cd.RT, img: cd.Img, pid: cd.Cmd.Process.Pid,
			image: reg.Addr + "/" + image, cgroup: ctrdCg, logDir: filepath.Join(dir, "logs-c")})
	}

	// noded, on another.
	ndir := filepath.Join(dir, "noded")
	nbridge := "nbsn" + tag
	if err := os.MkdirAll(filepath.Join(ndir, "cni"), 0o755); err != nil {
		return err
	}
	conf := testenv.BridgeConf("noded-bench-stats", nbridge, "10.239.0.0/22", filepath.Join(ndir, "ipam"))
	if err := os.WriteFile(filepath.Join(ndir, "cni", "10-bench.conflist"), []byte(conf), 0o644); err != nil {
		return err
	}
	defer func() { _ = exec.Command("ip", "link", "del", nbridge).Run() }()
	policy := filepath.Join(dir, "policy.json")
	if err := os.WriteFile(policy, []byte(testenv.InsecurePolicy), 0o644); err != nil {
		return err
	}
	d, err := testenv.Start(testenv.Options{Dir: ndir, Args: []string{
		"--registries-conf", reg.RegistriesConf, "--signature-policy", policy, "--log-level", "info",
	}})
	if err != nil {
		return err
	}
	defer func() {
		_ = d.Stop()
		if retErr != nil && cfg.printLogs {
			fmt.Fprintf(os.Stderr, "noded log:\n%s\n", d.Log.String())
		}
	}()

	runtimes = append(runtimes, &rtm{name: "noded", rt: d.Runtime(), img: d.Images(), pid: d.Pid(), image: image, cgroup: nodedCg, logDir: filepath.Join(dir, "logs-n")})
	for _, r := range runtimes {
		defer r.removePods()
		if err := r.setup(ctx, cfg.pods); err != nil {
			return fmt.Errorf("%s: %w", r.name, err)
		}
	}
	if cfg.containerd {
		fmt.Printf("containerd: %s (%s); runc: %s\n", runtimes[0].version, pkg.ContainerdVersion, pkg.RuncVersion)
	}
	fmt.Printf("noded:      %s (pid %d)\n", runtimes[len(runtimes)-1].version, d.Pid())
	fmt.Printf("%d pods running per runtime (one busybox sleep each); %d trials alternating, %d calls per RPC per trial; %d CPUs; loadavg %s\n",
		cfg.pods, cfg.trials, cfg.calls, peer.NumCPU(), peer.Loadavg())

	// Warm-up, not counted: the first calls fill caches (device names,
	// the previous CPU samples for the rates).
	for _, r := range runtimes {
		if _, err := r.trial(ctx, 3, &samples{}); err != nil {
			return fmt.Errorf("%s: %w", r.name, err)
		}
	}
	res := map[string]*samples{"containerd": {}, "noded": {}}
	for t := range cfg.trials {
		order := runtimes
		if t%2 == 1 {
			order = slices.Clone(runtimes)
			slices.Reverse(order)
		}
		for _, r := range order {
			if _, err := r.trial(ctx, cfg.calls, res[r.name]); err != nil {
				return fmt.Errorf("%s, trial %d: %w", r.name, t+1, err)
			}
		}
	}
	printTable(cfg, res["containerd"], res["noded"])
	return nil
}

// setup pulls the image and starts n pods of one busybox `sleep` each,
// a few at a time.
func (r *rtm) setup(ctx context.Context, n int) error {
	v, err := r.rt.Version(ctx, &runtimeapi.VersionRequest{})
	if err != nil {
		return err
	}
	r.version = v.GetRuntimeName() + " " + v.GetRuntimeVersion() + " (CRI " + v.GetRuntimeApiVersion() + ")"
	if _, err := r.img.PullImage(ctx, &runtimeapi.PullImageRequest{Image: &runtimeapi.ImageSpec{Image: r.image}}); err != nil {
		return err
	}
	_, err = r.rt.ListPodSandboxStats(ctx, &runtimeapi.ListPodSandboxStatsRequest{})
	switch status.Code(err) {
	case codes.OK:
		r.podStats = true
	case codes.Unimplemented:
	default:
		return fmt.Errorf("ListPodSandboxStats: %w", err)
	}
	sem := make(chan struct{}, 4)
	errs := make(chan error, n)
	var wg sync.WaitGroup
	for i := range n {
		wg.Add(1)
		sem <- struct{}{}
		go func() {
			defer func() { <-sem; wg.Done() }()
			if err := r.startPod(ctx, i); err != nil {
				errs <- err
			}
		}()
	}
	wg.Wait()
	close(errs)
	return <-errs
}

func (r *rtm) startPod(ctx context.Context, i int) error {
	name := fmt.Sprintf("bench-stats-%d-%d", time.Now().UnixNano(), i)
	pcfg := &runtimeapi.PodSandboxConfig{
		Metadata:     &runtimeapi.PodSandboxMetadata{Name: name, Namespace: "bench", Uid: name},
		LogDirectory: filepath.Join(r.logDir, name),
		Labels:       map[string]string{"bench": "stats"},
		Linux:        &runtimeapi.LinuxPodSandboxConfig{CgroupParent: "/" + r.cgroup + "/" + name},
	}
	if err := os.MkdirAll(pcfg.LogDirectory, 0o755); err != nil {
		return err
	}
	pod, err := r.rt.RunPodSandbox(ctx, &runtimeapi.RunPodSandboxRequest{Config: pcfg})
	if err != nil {
		return err
	}
	c, err := r.rt.CreateContainer(ctx, &runtimeapi.CreateContainerRequest{
		PodSandboxId: pod.GetPodSandboxId(), SandboxConfig: pcfg,
		Config: &runtimeapi.ContainerConfig{
			Metadata: &runtimeapi.ContainerMetadata{Name: "sleep"},
			Image:    &runtimeapi.ImageSpec{Image: r.image},
			Command:  []string{"sleep", "3600"},
			LogPath:  "sleep.log",
			Linux: &runtimeapi.LinuxContainerConfig{SecurityContext: &runtimeapi.LinuxContainerSecurityContext{
				Seccomp: &runtimeapi.SecurityProfile{ProfileType: runtimeapi.SecurityProfile_Unconfined},
			}},
		},
	})
	if err != nil {
		return err
	}
	_, err = r.rt.StartContainer(ctx, &runtimeapi.StartContainerRequest{ContainerId: c.GetContainerId()})
	return err
}

func (r *rtm) removePods() { (&peer.Runtime{RT: r.rt}).RemovePods() }

// trial makes n ListPodSandboxStats calls (where the runtime has them),
// then n ListContainerStats calls, each one after another.
func (r *rtm) trial(ctx context.Context, n int, s *samples) (int, error) {
	if r.podStats {
		d0, m0 := daemonCPU(r.pid), busyCPU()
		for range n {
			start := time.Now()
			resp, err := r.rt.ListPodSandboxStats(ctx, &runtimeapi.ListPodSandboxStatsRequest{})
			if err != nil {
				return 0, fmt.Errorf("ListPodSandboxStats: %w", err)
			}
			s.listPod = append(s.listPod, time.Since(start))
			s.podEntries = len(resp.GetStats())
			s.podContainers = 0
			for _, p := range resp.GetStats() {
				s.podContainers += len(p.GetLinux().GetContainers())
			}
		}
		s.podDaemonCPU += daemonCPU(r.pid) - d0
		s.podCPU += busyCPU() - m0
		s.podCalls += n
	}
	d0, m0 := daemonCPU(r.pid), busyCPU()
	for range n {
		start := time.Now()
		resp, err := r.rt.ListContainerStats(ctx, &runtimeapi.ListContainerStatsRequest{})
		if err != nil {
			return 0, fmt.Errorf("ListContainerStats: %w", err)
		}
		s.listCtr = append(s.listCtr, time.Since(start))
		s.ctrEntries = len(resp.GetStats())
		s.ctrValues = 0
		for _, c := range resp.GetStats() {
			if c.GetMemory().GetWorkingSetBytes() != nil {
				s.ctrValues++
			}
		}
	}
	s.ctrDaemonCPU += daemonCPU(r.pid) - d0
	s.ctrCPU += busyCPU() - m0
	s.ctrCalls += n
	return n, nil
}

func printTable(cfg config, c, n *samples) {
	type row struct {
		figure string
		c, n   string
		ratio  string
	}
	msOf := func(d time.Duration) float64 { return float64(d) / float64(time.Millisecond) }
	perCall := func(d time.Duration, calls int) float64 { return msOf(d) / float64(max(1, calls)) }
	num := func(calls int, v float64) string {
		if calls == 0 {
			return "n/a"
		}
		return fmt.Sprintf("%.2f", v)
	}
	mk := func(figure string, cc, nc int, cv, nv float64) row {
		r := row{figure: figure, c: num(cc, cv), n: num(nc, nv), ratio: "-"}
		if cc > 0 && nc > 0 && cv > 0 {
			r.ratio = fmt.Sprintf("%.2f", nv/cv)
		}
		return r
	}
	rows := []row{
		mk("ListPodSandboxStats p50 (ms)", c.podCalls, n.podCalls, msOf(peer.Pct(c.listPod, 0.5)), msOf(peer.Pct(n.listPod, 0.5))),
		mk("ListPodSandboxStats p95 (ms)", c.podCalls, n.podCalls, msOf(peer.Pct(c.listPod, 0.95)), msOf(peer.Pct(n.listPod, 0.95))),
		mk("ListPodSandboxStats daemon CPU per call (ms)", c.podCalls, n.podCalls, perCall(c.podDaemonCPU, c.podCalls), perCall(n.podDaemonCPU, n.podCalls)),
		mk("ListPodSandboxStats machine CPU per call (ms)", c.podCalls, n.podCalls, perCall(c.podCPU, c.podCalls), perCall(n.podCPU, n.podCalls)),
		mk("ListContainerStats p50 (ms)", c.ctrCalls, n.ctrCalls, msOf(peer.Pct(c.listCtr, 0.5)), msOf(peer.Pct(n.listCtr, 0.5))),
		mk("ListContainerStats p95 (ms)", c.ctrCalls, n.ctrCalls, msOf(peer.Pct(c.listCtr, 0.95)), msOf(peer.Pct(n.listCtr, 0.95))),
		mk("ListContainerStats daemon CPU per call (ms)", c.ctrCalls, n.ctrCalls, perCall(c.ctrDaemonCPU, c.ctrCalls), perCall(n.ctrDaemonCPU, n.ctrCalls)),
		mk("ListContainerStats machine CPU per call (ms)", c.ctrCalls, n.ctrCalls, perCall(c.ctrCPU, c.ctrCalls), perCall(n.ctrCPU, n.ctrCalls)),
	}
	fmt.Printf("\nevery call of every trial; CPU: total over the trials / calls\n")
	fmt.Printf("%-46s %12s %12s %16s\n", "figure", "containerd", "noded", "noded/containerd")
	for _, r := range rows {
		fmt.Printf("%-46s %12s %12s %16s\n", r.figure, r.c, r.n, r.ratio)
	}
	fmt.Printf("last answers: noded %d pod stats (%d containers inside), %d container stats (%d with memory); containerd %d container stats (%d with memory)\n",
		n.podEntries, n.podContainers, n.ctrEntries, n.ctrValues, c.ctrEntries, c.ctrValues)
	_ = cfg
}

// daemonCPU is the process's user and system time so far, all threads
// (/proc/PID/stat utime + stime, in USER_HZ ticks of 10 ms).
func daemonCPU(pid int) time.Duration {
	s := readFile(fmt.Sprintf("/proc/%d/stat", pid))
	i := strings.LastIndexByte(s, ')')
	if i < 0 {
		return 0
	}
	f := strings.Fields(s[i+1:])
	if len(f) < 13 {
		return 0
	}
	utime, _ := strconv.ParseUint(f[11], 10, 64)
	stime, _ := strconv.ParseUint(f[12], 10, 64)
	return time.Duration(utime+stime) * 10 * time.Millisecond
}

// busyCPU returns the machine's non-idle CPU time so far, from /proc/stat.
func busyCPU() time.Duration {
	d, _ := procfs.BusyCPU() // 0 if unreadable: the figures then say so
	return d
}

func readFile(p string) string {
	b, _ := os.ReadFile(p)
	return string(b)
}
