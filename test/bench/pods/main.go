// Command pods measures pod start latency and memory with the CRI calls
// the kubelet makes for a pod of one container (RunPodSandbox,
// CreateContainer, StartContainer of a busybox `sleep`, with the pod and
// container configs the kubelet sends: test/bench/peer's Pod), against
// noded started here on private directories, or any CRI socket
// (-endpoint), and with -compare against Debian's containerd 1.6 and
// containerd 2 (test/bench/peer), all driven by this one client in
// alternating trials:
//
//   - start latency, p50 over N pods one after another, and the
//     CreateContainer part of it;
//   - N pods started at once: p50, and the time until the last one runs;
//   - the per-pod overhead with the pods running, measured the same way
//     for every runtime (peer.PodOverhead): the pause process, its parent
//     (noded's monitor, containerd's shim) and that parent's other
//     helpers, VmRSS and Pss;
//   - the daemon's RSS with the pods running and after the whole run;
//   - the machine's CPU time per pod (every process, kernel included).
//
// Each figure is the median over the trials. It prints figures; it
// asserts nothing. Run it as root: `make bench-pods`,
// `make bench-pods BENCH_ARGS=-compare`.
package main

import (
	"context"
	"flag"
	"fmt"
	"math"
	"os"
	"os/signal"
	"sync"
	"syscall"
	"time"

	"github.com/noded-dev/noded/internal/procfs"
	"github.com/noded-dev/noded/test/bench/peer"
)

const image = "registry.k8s.io/e2e-test-images/busybox:1.29-2"

type config struct {
	sequential, concurrent, trials int
	settle                         time.Duration
}

func main() {
	var cfg config
	flag.IntVar(&cfg.sequential, "sequential", 10, "pods started one after another per trial")
	flag.IntVar(&cfg.concurrent, "concurrent", 10, "pods started at once per trial")
	flag.IntVar(&cfg.trials, "trials", 3, "trials per runtime, alternating (each runtime goes first in turn)")
	flag.DurationVar(&cfg.settle, "settle", 2*time.Second, "how long the pods run before the per-pod overhead is measured (past 2m, every Go process has had the runtime's timed collection: the steady state)")
	rf := peer.AddFlags()
	flag.Parse()
	ctx, stop := signal.NotifyContext(context.Background(), os.Interrupt, syscall.SIGTERM)
	err := run(ctx, cfg, *rf)
	stop()
	if err != nil {
		fmt.Fprintln(os.Stderr, "bench-pods:", err)
		os.Exit(1)
	}
}

// samples are one runtime's figures, one per trial.
type samples struct {
	seqP50, seqCreateP50, seqCPU []float64 // ms
	parP50, parLast, parCPU      []float64 // ms
	monRSS, monPSS, totRSS       []float64 // MiB per pod
	totPSS, daemonBusy           []float64
	daemonAfter                  float64
}

func run(ctx context.Context, cfg config, rf peer.Flags) error {
	b, err := peer.Prepare(ctx, "bench-pods")
	if err != nil {
		return err
	}
	defer b.Close()
	rts, err := b.Runtimes(ctx, peer.Setup{Flags: rf, Net: 240})
	if err != nil {
		return err
	}
	peer.PrintRuntimes(rts, cfg.trials)
	fmt.Printf("image %s; per trial %d pods one after another, then %d at once\n", image, cfg.sequential, cfg.concurrent)
	res := map[*peer.Runtime]*samples{}
	for _, r := range rts {
		res[r] = &samples{}
		// Warm-up, not counted: the pull, and a first pod (noded makes its
		// built-in pause image, containerd pulls its sandbox image).
		if err := peer.PullImage(ctx, r, image); err != nil {
			return err
		}
		if _, _, err := peer.StartPod(ctx, r, b.Dir, "warm-up", image, []string{"sleep", "3600"}); err != nil {
			return err
		}
		r.RemovePods()
	}
	for t := range cfg.trials {
		for _, r := range peer.Order(rts, t) {
			if err := trial(ctx, b, cfg, r, t+1, res[r]); err != nil {
				return fmt.Errorf("%s, trial %d: %w", r.Name, t+1, err)
			}
		}
	}
	time.Sleep(2 * time.Second)
	for _, r := range rts {
		res[r].daemonAfter = rssMiB(r.Pid)
	}

	col := func(f func(s *samples) float64) []float64 {
		v := make([]float64, len(rts))
		for i, r := range rts {
			v[i] = f(res[r])
		}
		return v
	}
	med := func(f func(s *samples) []float64) []float64 {
		return col(func(s *samples) float64 { return peer.Median(f(s)) })
	}
	fmt.Printf("\nmedian of %d trials (loadavg %s)\n", cfg.trials, peer.Loadavg())
	peer.PrintTable(rts, []peer.Row{
		{Figure: fmt.Sprintf("pod start p50, %d one after another (ms)", cfg.sequential), Values: med(func(s *samples) []float64 { return s.seqP50 }), Format: "%.0f"},
		{Figure: "  of which CreateContainer p50 (ms)", Values: med(func(s *samples) []float64 { return s.seqCreateP50 }), Format: "%.1f"},
		{Figure: "  machine CPU per pod (ms)", Values: med(func(s *samples) []float64 { return s.seqCPU }), Format: "%.0f"},
		{Figure: fmt.Sprintf("%d pods at once, p50 (ms)", cfg.concurrent), Values: med(func(s *samples) []float64 { return s.parP50 }), Format: "%.0f"},
		{Figure: fmt.Sprintf("%d pods at once, until the last runs (ms)", cfg.concurrent), Values: med(func(s *samples) []float64 { return s.parLast }), Format: "%.0f"},
		{Figure: "  machine CPU per pod (ms)", Values: med(func(s *samples) []float64 { return s.parCPU }), Format: "%.0f"},
		{Figure: "per pod: monitor/shim + pause VmRSS (MiB)", Values: med(func(s *samples) []float64 { return s.totRSS }), Format: "%.2f"},
		{Figure: "per pod: monitor/shim + pause Pss (MiB)", Values: med(func(s *samples) []float64 { return s.totPSS }), Format: "%.2f"},
		{Figure: "  of which monitor/shim VmRSS (MiB)", Values: med(func(s *samples) []float64 { return s.monRSS }), Format: "%.2f"},
		{Figure: "  of which monitor/shim Pss (MiB)", Values: med(func(s *samples) []float64 { return s.monPSS }), Format: "%.2f"},
		{Figure: fmt.Sprintf("daemon RSS, %d pods running (MiB)", cfg.sequential), Values: med(func(s *samples) []float64 { return s.daemonBusy }), Format: "%.1f"},
		{Figure: "daemon RSS after the run's pulls and pods (MiB)", Values: col(func(s *samples) float64 { return s.daemonAfter }), Format: "%.1f"},
	})
	return nil
}

func trial(ctx context.Context, b *peer.Bench, cfg config, r *peer.Runtime, n int, s *samples) error {
	var total, create []time.Duration
	cpu0 := busyCPU()
	for i := range cfg.sequential {
		t, _, err := peer.StartPod(ctx, r, b.Dir, fmt.Sprintf("seq-%d-%d", n, i), image, []string{"sleep", "3600"})
		if err != nil {
			return err
		}
		total, create = append(total, t.Total), append(create, t.Create)
	}
	seqCPU := (busyCPU() - cpu0) / time.Duration(cfg.sequential)
	s.seqP50 = append(s.seqP50, peer.Ms(peer.Pct(total, 0.5)))
	s.seqCreateP50 = append(s.seqCreateP50, peer.Ms(peer.Pct(create, 0.5)))
	s.seqCPU = append(s.seqCPU, peer.Ms(seqCPU))

	time.Sleep(cfg.settle) // let monitors and shims settle before measuring
	o, err := peer.PodOverhead(r.Cgroup)
	if err != nil {
		return err
	}
	tot := o.Total()
	nan := math.NaN()
	monRSS, monPSS := nan, nan
	if o.Pods > 0 {
		monRSS, monPSS = peer.MiB(o.Monitor.RSS)/float64(o.Pods), peer.MiB(o.Monitor.PSS)/float64(o.Pods)
	}
	s.monRSS, s.monPSS = append(s.monRSS, monRSS), append(s.monPSS, monPSS)
	s.totRSS, s.totPSS = append(s.totRSS, peer.MiB(tot.RSS)), append(s.totPSS, peer.MiB(tot.PSS))
	s.daemonBusy = append(s.daemonBusy, rssMiB(r.Pid))
	r.RemovePods()

	var mu sync.Mutex
	var par []time.Duration
	errs := make([]error, cfg.concurrent)
	var wg sync.WaitGroup
	cpu0 = busyCPU()
	start := time.Now()
	for i := range cfg.concurrent {
		wg.Go(func() {
			t, _, err := peer.StartPod(ctx, r, b.Dir, fmt.Sprintf("par-%d-%d", n, i), image, []string{"sleep", "3600"})
			errs[i] = err
			mu.Lock()
			par = append(par, t.Total)
			mu.Unlock()
		})
	}
	wg.Wait()
	last := time.Since(start)
	parCPU := (busyCPU() - cpu0) / time.Duration(cfg.concurrent)
	for _, err := range errs {
		if err != nil {
			return err
		}
	}
	s.parP50 = append(s.parP50, peer.Ms(peer.Pct(par, 0.5)))
	s.parLast = append(s.parLast, peer.Ms(last))
	s.parCPU = append(s.parCPU, peer.Ms(parCPU))
	r.RemovePods()
	fmt.Printf("trial %d %-15s one after another p50 %.0f ms (create %.1f ms) | at once p50 %.0f ms, last %.0f ms | per pod %.2f MiB VmRSS %.2f MiB Pss (%d pods, %d helpers) | loadavg %s\n",
		n, r.Name, peer.Ms(peer.Pct(total, 0.5)), peer.Ms(peer.Pct(create, 0.5)), peer.Ms(peer.Pct(par, 0.5)), peer.Ms(last),
		peer.MiB(tot.RSS), peer.MiB(tot.PSS), o.Pods, o.Others, peer.Loadavg())
	return nil
}

func rssMiB(pid int) float64 {
	if pid <= 0 {
		return math.NaN()
	}
	m, err := peer.MemOf(pid)
	if err != nil {
		return math.NaN()
	}
	return peer.MiB(m.RSS)
}

// busyCPU returns the machine's non-idle CPU time so far, from /proc/stat
// (every process counts: the runtime, its monitors or shims, runc or the
// helpers, the CNI plugins, the kernel's work for them, and this
// program's gRPC calls).
func busyCPU() time.Duration {
	d, _ := procfs.BusyCPU() // 0 if unreadable: the figures then say so
	return d
}
