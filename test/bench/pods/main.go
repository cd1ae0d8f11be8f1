// Command pods measures pod start latency and memory of a real noded, with
// the same CRI calls crictl makes for `crictl runp` + `create` + `start`:
//
//   - start latency (RunPodSandbox + CreateContainer + StartContainer of a
//     busybox `sleep`), p50 and p95 over 20 pods one after another, and over
//     10 pods started at once;
//   - noded's idle RSS (before any pod, after an image pull);
//   - the per-pod overhead, monitor + pause, as VmRSS and Pss, with 20 pods
//     running.
//
// It prints figures; it asserts nothing. Run it as root on an otherwise
// idle machine: `make bench-pods`.
package main

import (
	"bufio"
	"context"
	"flag"
	"fmt"
	"os"
	"os/exec"
	"path/filepath"
	"slices"
	"strconv"
	"strings"
	"sync"
	"time"

	runtimeapi "k8s.io/cri-api/pkg/apis/runtime/v1"

	"github.com/noded-dev/noded/internal/procfs"
	"github.com/noded-dev/noded/test/testenv"
)

const image = "registry.k8s.io/e2e-test-images/busybox:1.29-2"

func main() {
	sequential := flag.Int("sequential", 20, "pods started one after another")
	concurrent := flag.Int("concurrent", 10, "pods started at once")
	logLevel := flag.String("log-level", "info", "noded's log level")
	daemonLog := flag.String("daemon-log", "", "write noded's log to this file")
	flag.Parse()
	if err := run(*sequential, *concurrent, *logLevel, *daemonLog); err != nil {
		fmt.Fprintln(os.Stderr, "bench-pods:", err)
		os.Exit(1)
	}
}

type bench struct {
	d      *testenv.Daemon
	rt     runtimeapi.RuntimeServiceClient
	logDir string
	n      int
}

func run(sequential, concurrent int, logLevel, daemonLog string) (retErr error) {
	if os.Geteuid() != 0 {
		return fmt.Errorf("needs root")
	}
	dir, err := os.MkdirTemp("", "noded-bench-")
	if err != nil {
		return err
	}
	defer func() { _ = testenv.CleanupDir(dir) }()
	reg, err := testenv.StartRegistry(dir)
	if err != nil {
		return err
	}
	defer reg.Close()
	policy := filepath.Join(dir, "policy.json")
	if err := os.WriteFile(policy, []byte(testenv.InsecurePolicy), 0o644); err != nil {
		return err
	}
	bridge := fmt.Sprintf("nbench%d", os.Getpid()%10000)
	if err := os.MkdirAll(filepath.Join(dir, "cni"), 0o755); err != nil {
		return err
	}
	conf := testenv.BridgeConf("noded-bench", bridge, "10.232.0.0/22", filepath.Join(dir, "ipam"))
	if err := os.WriteFile(filepath.Join(dir, "cni", "10-bench.conflist"), []byte(conf), 0o644); err != nil {
		return err
	}
	defer func() { _ = exec.Command("ip", "link", "del", bridge).Run() }()
	defer func() { _ = testenv.RemoveCgroupTree("noded-bench") }()

	d, err := testenv.Start(testenv.Options{Dir: dir, Args: []string{
		"--registries-conf", reg.RegistriesConf, "--signature-policy", policy, "--log-level", logLevel,
	}})
	if err != nil {
		return err
	}
	defer func() {
		_ = d.Stop()
		if daemonLog != "" {
			_ = os.WriteFile(daemonLog, []byte(d.Log.String()), 0o644)
		}
	}()
	b := &bench{d: d, rt: d.Runtime(), logDir: filepath.Join(dir, "logs")}
	defer b.removeAll()

	ctx := context.Background()
	if _, err := d.Images().PullImage(ctx, &runtimeapi.PullImageRequest{Image: &runtimeapi.ImageSpec{Image: image}}); err != nil {
		return err
	}
	// Warm-up pod: creates the built-in pause image, as on a node's first pod.
	if _, err := b.startPod(ctx); err != nil {
		return err
	}
	b.removeAll()
	time.Sleep(2 * time.Second)
	idle, _ := memOf(d.Pid())
	fmt.Printf("noded idle RSS: %.1f MiB (after one image pull and one pod)\n", mib(idle.rss))

	var seq []time.Duration
	cpu0 := busyCPU()
	for range sequential {
		dt, err := b.startPod(ctx)
		if err != nil {
			return err
		}
		seq = append(seq, dt)
	}
	report(fmt.Sprintf("start latency, %d pods one after another", sequential), seq)
	reportCPU(cpu0, sequential)

	time.Sleep(2 * time.Second) // let monitors settle before measuring
	monitors, pauses, helpers, err := podProcesses(dir)
	if err != nil {
		return err
	}
	var mon, pau, hel mem
	for _, p := range monitors {
		m, _ := memOf(p)
		mon.add(m)
	}
	for _, p := range pauses {
		m, _ := memOf(p)
		pau.add(m)
	}
	for _, p := range helpers {
		m, _ := memOf(p)
		hel.add(m)
	}
	if n := len(monitors); n > 0 {
		fmt.Printf("per-pod overhead with %d pods running (%d monitors, %d pause):\n", sequential, n, len(pauses))
		fmt.Printf("  monitor   VmRSS %.2f MiB  Pss %.2f MiB\n", mib(mon.rss)/float64(n), mib(mon.pss)/float64(n))
		if len(pauses) > 0 {
			fmt.Printf("  pause     VmRSS %.2f MiB  Pss %.2f MiB\n", mib(pau.rss)/float64(len(pauses)), mib(pau.pss)/float64(len(pauses)))
		}
		if len(helpers) > 0 {
			fmt.Printf("  helpers   %d alive, VmRSS %.2f MiB  Pss %.2f MiB in all\n", len(helpers), mib(hel.rss), mib(hel.pss))
		}
		fmt.Printf("  total     VmRSS %.2f MiB  Pss %.2f MiB per pod\n", mib(mon.rss+pau.rss+hel.rss)/float64(n), mib(mon.pss+pau.pss+hel.pss)/float64(n))
	}
	busy, _ := memOf(d.Pid())
	fmt.Printf("noded RSS with %d pods: %.1f MiB\n", sequential, mib(busy.rss))
	b.removeAll()

	var mu sync.Mutex
	var par []time.Duration
	var wg sync.WaitGroup
	errs := make(chan error, concurrent)
	start := time.Now()
	cpu0 = busyCPU()
	for range concurrent {
		wg.Add(1)
		go func() {
			defer wg.Done()
			dt, err := b.startPod(ctx)
			if err != nil {
				errs <- err
				return
			}
			mu.Lock()
			par = append(par, dt)
			mu.Unlock()
		}()
	}
	wg.Wait()
	close(errs)
	if err := <-errs; err != nil {
		return err
	}
	report(fmt.Sprintf("start latency, %d pods at once (wall %s)", concurrent, time.Since(start).Round(time.Millisecond)), par)
	reportCPU(cpu0, concurrent)
	return nil
}

// startPod runs the three calls and returns their total duration.
func (b *bench) startPod(ctx context.Context) (time.Duration, error) {
	b.n++
	name := fmt.Sprintf("bench-%d-%d", time.Now().UnixNano(), b.n)
	pcfg := &runtimeapi.PodSandboxConfig{
		Metadata:     &runtimeapi.PodSandboxMetadata{Name: name, Namespace: "bench", Uid: name},
		LogDirectory: filepath.Join(b.logDir, name),
		Linux:        &runtimeapi.LinuxPodSandboxConfig{CgroupParent: "/noded-bench/" + name},
	}
	if err := os.MkdirAll(pcfg.LogDirectory, 0o755); err != nil {
		return 0, err
	}
	start := time.Now()
	pod, err := b.rt.RunPodSandbox(ctx, &runtimeapi.RunPodSandboxRequest{Config: pcfg})
	if err != nil {
		return 0, err
	}
	c, err := b.rt.CreateContainer(ctx, &runtimeapi.CreateContainerRequest{
		PodSandboxId: pod.GetPodSandboxId(), SandboxConfig: pcfg,
		Config: &runtimeapi.ContainerConfig{
			Metadata: &runtimeapi.ContainerMetadata{Name: "sleep"},
			Image:    &runtimeapi.ImageSpec{Image: image},
			Command:  []string{"sleep", "3600"},
			LogPath:  "sleep.log",
			// What the kubelet sends by default (--seccomp-default=false),
			// so both runtimes confine the container the same way.
			Linux: &runtimeapi.LinuxContainerConfig{SecurityContext: &runtimeapi.LinuxContainerSecurityContext{
				Seccomp: &runtimeapi.SecurityProfile{ProfileType: runtimeapi.SecurityProfile_Unconfined},
			}},
		},
	})
	if err != nil {
		return 0, err
	}
	if _, err := b.rt.StartContainer(ctx, &runtimeapi.StartContainerRequest{ContainerId: c.GetContainerId()}); err != nil {
		return 0, err
	}
	return time.Since(start), nil
}

func (b *bench) removeAll() {
	ctx := context.Background()
	pods, err := b.rt.ListPodSandbox(ctx, &runtimeapi.ListPodSandboxRequest{})
	if err != nil {
		return
	}
	for _, p := range pods.GetItems() {
		_, _ = b.rt.RemovePodSandbox(ctx, &runtimeapi.RemovePodSandboxRequest{PodSandboxId: p.GetId()})
	}
}

func report(what string, d []time.Duration) {
	if len(d) == 0 {
		return
	}
	slices.Sort(d)
	pct := func(p float64) time.Duration { return d[min(len(d)-1, int(p*float64(len(d))))] }
	fmt.Printf("%s: p50 %s  p95 %s  min %s  max %s\n", what,
		pct(0.50).Round(time.Millisecond), pct(0.95).Round(time.Millisecond),
		d[0].Round(time.Millisecond), d[len(d)-1].Round(time.Millisecond))
}

// busyCPU returns the machine's non-idle CPU time so far, from /proc/stat
// (every process counts: noded, monitors, helpers, CNI plugins, the
// kernel's work for them, and this program's gRPC calls).
func busyCPU() time.Duration {
	d, _ := procfs.BusyCPU() // 0 if unreadable: the figures then say so
	return d
}

func reportCPU(since time.Duration, pods int) {
	if pods == 0 {
		return
	}
	used := busyCPU() - since
	fmt.Printf("  CPU time used, whole machine: %s per pod\n", (used / time.Duration(pods)).Round(time.Millisecond))
}

// podProcesses finds this run's monitors (their command line names the
// run's directory) and their children that are pause processes or
// libcontainer helpers (a warm helper waits for an operation; none should
// be left once the pods run).
func podProcesses(dir string) (monitors, pauses, helpers []int, err error) {
	entries, err := os.ReadDir("/proc")
	if err != nil {
		return nil, nil, nil, err
	}
	isMonitor := map[int]bool{}
	parent := map[int]int{}
	comm := map[int]string{}
	for _, e := range entries {
		pid, err := strconv.Atoi(e.Name())
		if err != nil {
			continue
		}
		cmdline, _ := os.ReadFile(filepath.Join("/proc", e.Name(), "cmdline"))
		args := strings.Split(string(cmdline), "\x00")
		if len(args) > 1 && strings.HasSuffix(args[0], "conmon-go") && args[1] == "monitor" && strings.Contains(string(cmdline), dir) {
			isMonitor[pid] = true
			monitors = append(monitors, pid)
		}
		parent[pid] = ppid(pid)
		if len(args) > 0 {
			comm[pid] = args[0]
		}
	}
	for pid, pp := range parent {
		switch {
		case !isMonitor[pp]:
		case comm[pid] == "/pause":
			pauses = append(pauses, pid)
		case comm[pid] == "conmon-go-runtime":
			helpers = append(helpers, pid)
		}
	}
	return monitors, pauses, helpers, nil
}

func ppid(pid int) int {
	b, err := os.ReadFile(fmt.Sprintf("/proc/%d/stat", pid))
	if err != nil {
		return 0
	}
	// The command may contain spaces: fields start after the last ')'.
	s := string(b)
	fields := strings.Fields(s[strings.LastIndexByte(s, ')')+1:])
	if len(fields) < 2 {
		return 0
	}
	n, _ := strconv.Atoi(fields[1])
	return n
}

type mem struct{ rss, pss uint64 } // bytes

func (m *mem) add(o mem) { m.rss += o.rss; m.pss += o.pss }

// memOf reads VmRSS from status and Pss from smaps_rollup.
func memOf(pid int) (mem, error) {
	var m mem
	for file, key := range map[string]string{"status": "VmRSS:", "smaps_rollup": "Pss:"} {
		f, err := os.Open(fmt.Sprintf("/proc/%d/%s", pid, file))
		if err != nil {
			return m, err
		}
		sc := bufio.NewScanner(f)
		for sc.Scan() {
			fields := strings.Fields(sc.Text())
			if len(fields) >= 2 && fields[0] == key {
				kb, _ := strconv.ParseUint(fields[1], 10, 64)
				if key == "VmRSS:" {
					m.rss = kb << 10
				} else {
					m.pss = kb << 10
				}
				break
			}
		}
		_ = f.Close()
	}
	return m, nil
}

func mib(b uint64) float64 { return float64(b) / (1 << 20) }
