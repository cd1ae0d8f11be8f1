// Command exec compares the streaming paths of noded (or any CRI socket,
// -endpoint) with Debian's containerd 1.6.20 (its CRI plugin, with
// Debian's runc 1.1.5) and, with -compare, containerd 2 + runc 1.4 built
// from the Go module proxy (test/bench/peer), all started here on private
// directories and driven by the same CRI client, in alternating trials:
//
//   - ExecSync of `true` in a running busybox container (the kubelet's
//     exec probes): latency p50/p95, and the machine's CPU time per call;
//   - streaming exec (the Exec RPC, then its URL with SPDY
//     v4.channel.k8s.io, client-go's remotecommand): time to the first
//     byte of `echo hi`, and the throughput of 256 MiB through stdout;
//   - port-forward (the PortForward RPC, then SPDY portforward.k8s.io,
//     client-go's portforward as kubectl port-forward uses it, through a
//     local listener): 256 MiB through one stream, and 20 streams at once
//     of 8 MiB each, from busybox tcpsvd servers in the pod.
//
// Debian's containerd and runc are not installed: their packages are
// fetched with apt-get download into _build/containerd and unpacked there
// with dpkg-deb -x (reused when present). The pod is the kubelet's
// (peer.Pod). The table gives each runtime's figure and noded / the best
// peer.
//
// It prints figures; it asserts nothing. Run it as root on an otherwise
// idle machine: `make bench-exec`, `make bench-exec BENCH_ARGS=-compare`.
package main

import (
	"context"
	"encoding/json"
	"errors"
	"flag"
	"fmt"
	"io"
	"net"
	"net/http"
	"net/url"
	"os"
	"os/signal"
	"slices"
	"strconv"
	"strings"
	"sync"
	"syscall"
	"time"

	"k8s.io/client-go/rest"
	"k8s.io/client-go/tools/portforward"
	"k8s.io/client-go/tools/remotecommand"
	"k8s.io/client-go/transport/spdy"
	runtimeapi "k8s.io/cri-api/pkg/apis/runtime/v1"

	"github.com/noded-dev/noded/internal/procfs"
	"github.com/noded-dev/noded/test/bench/peer"
)

// image is the busybox image of the offline registry (test/testimages),
// served under its upstream name through every runtime's registry mirrors.
const image = "registry.k8s.io/e2e-test-images/busybox:1.29-2"

const (
	bigPort   = 8000 // serves cfg.bytes per connection
	smallPort = 8001 // serves cfg.streamBytes per connection
)

type config struct {
	trials      int
	calls       int
	lone        int
	firstBytes  int
	bytes       int64
	streams     int
	streamBytes int64
	abandon     int
	printLogs   bool
}

func main() {
	var cfg config
	flag.IntVar(&cfg.trials, "trials", 4, "trials per runtime, alternating (even: each runtime goes first as often)")
	flag.IntVar(&cfg.calls, "calls", 200, "ExecSync calls per trial")
	flag.IntVar(&cfg.lone, "lone", 4, "lone ExecSync calls per trial, each "+loneGap.String()+" after the one before")
	flag.IntVar(&cfg.firstBytes, "first-bytes", 20, "streaming `echo hi` execs per trial")
	flag.Int64Var(&cfg.bytes, "bytes", 256<<20, "bytes through exec stdout and one port-forward stream")
	flag.IntVar(&cfg.streams, "streams", 20, "port-forward streams at once")
	flag.Int64Var(&cfg.streamBytes, "stream-bytes", 8<<20, "bytes per concurrent port-forward stream")
	flag.IntVar(&cfg.abandon, "abandon", 1000, "noded only, after the trials: streaming execs whose client goes away early, then what is left")
	flag.BoolVar(&cfg.printLogs, "print-logs", false, "print the daemons' logs on failure")
	rf := peer.AddFlags()
	flag.Parse()
	ctx, stop := signal.NotifyContext(context.Background(), os.Interrupt, syscall.SIGTERM)
	err := run(ctx, cfg, *rf)
	stop()
	if err != nil {
		fmt.Fprintln(os.Stderr, "bench-exec:", err)
		os.Exit(1)
	}
}

// rtm is one runtime under test, with its pod and busybox container.
type rtm struct {
	*peer.Runtime
	name string
	pod  string
	ctr  string
}

func run(ctx context.Context, cfg config, rf peer.Flags) (retErr error) {
	b, err := peer.Prepare(ctx, "bench-exec")
	if err != nil {
		return err
	}
	defer b.Close()
	// Metrics (for go_goroutines in the abandoned-sessions phase) on a
	// free loopback port.
	ml, err := net.Listen("tcp", "127.0.0.1:0")
	if err != nil {
		return err
	}
	metricsAddr := ml.Addr().String()
	ml.Close()
	prts, err := b.Runtimes(ctx, peer.Setup{Flags: rf, Peers: true, Net: 244, NodedArgs: []string{"--metrics-address", metricsAddr}})
	if err != nil {
		return err
	}
	if cfg.printLogs {
		defer func() {
			if retErr == nil {
				return
			}
			for _, r := range prts {
				switch {
				case r.Noded != nil:
					fmt.Fprintf(os.Stderr, "noded log:\n%s\n", r.Noded.Log.String())
				case r.Containerd != nil:
					fmt.Fprintf(os.Stderr, "%s log:\n%s\n", r.Name, readFile(r.Containerd.LogPath))
				}
			}
		}()
	}
	var runtimes []*rtm
	for _, r := range prts {
		x := &rtm{Runtime: r, name: r.Name}
		if err := x.setup(ctx, cfg, b.Dir); err != nil {
			return fmt.Errorf("%s: %w", r.Name, err)
		}
		runtimes = append(runtimes, x)
	}
	peer.PrintRuntimes(prts, cfg.trials)
	fmt.Printf("image %s\n", image)

	// Warm-up, not counted: the first exec and port-forward of each runtime.
	for _, r := range runtimes {
		if _, err := r.execSyncLoop(ctx, 5); err != nil {
			return fmt.Errorf("%s: %w", r.name, err)
		}
		if _, err := r.firstByte(ctx); err != nil {
			return fmt.Errorf("%s: %w", r.name, err)
		}
		if _, err := r.forwardMany(ctx, 2, cfg.streamBytes); err != nil {
			return fmt.Errorf("%s: %w", r.name, err)
		}
	}

	res := map[*peer.Runtime]*samples{}
	for _, r := range prts {
		res[r] = &samples{}
	}
	for t := range cfg.trials {
		for _, pr := range peer.Order(prts, t) {
			r := runtimes[slices.Index(prts, pr)]
			if err := r.trial(ctx, cfg, t+1, res[pr]); err != nil {
				return fmt.Errorf("%s, trial %d: %w", r.name, t+1, err)
			}
		}
	}
	var all []*samples
	for _, r := range prts {
		all = append(all, res[r])
	}
	printTable(cfg, prts, all)
	if d := prts[0].Noded; cfg.abandon > 0 && d != nil {
		return runtimes[0].abandonPhase(ctx, cfg.abandon, d.Pid(), metricsAddr)
	}
	return nil
}

// holdings is what noded and the pod's monitor hold at one moment.
type holdings struct {
	nodedFds, monitorFds, goroutines, containerProcs int
}

func (h holdings) String() string {
	return fmt.Sprintf("noded fds %d, goroutines %d; monitor fds %d; processes in the container %d",
		h.nodedFds, h.goroutines, h.monitorFds, h.containerProcs)
}

// abandonPhase runs n streaming execs of `cat` whose client goes away
// once the process runs (or at the latest after 100 ms), half of them on
// a terminal, and prints what noded and the monitor hold before and
// after: the issue's "after 1000 execs with clients closing early,
// nothing left".
func (r *rtm) abandonPhase(ctx context.Context, n, nodedPid int, metricsAddr string) error {
	monitor, err := r.monitorPid(ctx)
	if err != nil {
		return err
	}
	measure := func() (holdings, error) {
		var h holdings
		var err error
		if h.nodedFds, err = countDir(fmt.Sprintf("/proc/%d/fd", nodedPid)); err != nil {
			return h, err
		}
		if h.monitorFds, err = countDir(fmt.Sprintf("/proc/%d/fd", monitor)); err != nil {
			return h, err
		}
		if h.goroutines, err = goroutines(metricsAddr); err != nil {
			return h, err
		}
		resp, err := r.RT.ExecSync(ctx, &runtimeapi.ExecSyncRequest{ContainerId: r.ctr, Cmd: []string{"sh", "-c", "ps -o args | grep -c '^[c]at$' || true"}, Timeout: 10})
		if err != nil {
			return h, err
		}
		h.containerProcs, err = strconv.Atoi(strings.TrimSpace(string(resp.GetStdout())))
		return h, err
	}
	before, err := measure()
	if err != nil {
		return err
	}
	start := time.Now()
	for i := range n {
		sctx, cancel := context.WithTimeout(ctx, 100*time.Millisecond)
		resp, err := r.RT.Exec(sctx, &runtimeapi.ExecRequest{ContainerId: r.ctr, Cmd: []string{"cat"}, Stdin: true, Stdout: true, Tty: i%2 == 1})
		if err != nil {
			cancel()
			return fmt.Errorf("abandoned exec %d: %w", i, err)
		}
		u, err := url.Parse(resp.GetUrl())
		if err != nil {
			cancel()
			return err
		}
		ex, err := remotecommand.NewSPDYExecutor(&rest.Config{}, http.MethodPost, u)
		if err != nil {
			cancel()
			return err
		}
		stdin, stdinW := io.Pipe() // never written: cat waits until the client goes
		_ = ex.StreamWithContext(sctx, remotecommand.StreamOptions{Stdin: stdin, Stdout: io.Discard, Tty: i%2 == 1})
		cancel()
		_ = stdinW.Close()
	}
	elapsed := time.Since(start)
	// The monitor kills an abandoned process when it sees the connection
	// close; give the last ones a moment.
	var after holdings
	for range 50 {
		if after, err = measure(); err != nil {
			return err
		}
		if after.containerProcs == 0 && after.nodedFds <= before.nodedFds && after.goroutines <= before.goroutines {
			break
		}
		time.Sleep(100 * time.Millisecond)
	}
	fmt.Printf("\n%d streaming execs abandoned by their client (half on a tty), noded, %s (%.1f ms each):\n  before: %s\n  after:  %s\n",
		n, elapsed.Round(time.Millisecond), float64(elapsed)/float64(n)/float64(time.Millisecond), before, after)
	return nil
}

// monitorPid is the parent of the pod's pause process (noded's verbose
// pod status has the pause pid).
func (r *rtm) monitorPid(ctx context.Context) (int, error) {
	st, err := r.RT.PodSandboxStatus(ctx, &runtimeapi.PodSandboxStatusRequest{PodSandboxId: r.pod, Verbose: true})
	if err != nil {
		return 0, err
	}
	var info struct {
		Pid int `json:"pid"`
	}
	if err := json.Unmarshal([]byte(st.GetInfo()["info"]), &info); err != nil || info.Pid <= 0 {
		return 0, fmt.Errorf("pause pid in %v: %w", st.GetInfo(), err)
	}
	ps, err := procfs.ReadStat(info.Pid)
	if err != nil {
		return 0, err
	}
	return ps.PPid, nil
}

func countDir(dir string) (int, error) {
	entries, err := os.ReadDir(dir)
	return len(entries), err
}

// goroutines reads go_goroutines from noded's /metrics.
func goroutines(addr string) (int, error) {
	resp, err := http.Get("http://" + addr + "/metrics")
	if err != nil {
		return 0, err
	}
	defer resp.Body.Close()
	b, err := io.ReadAll(resp.Body)
	if err != nil {
		return 0, err
	}
	for _, line := range strings.Split(string(b), "\n") {
		if v, ok := strings.CutPrefix(line, "go_goroutines "); ok {
			return strconv.Atoi(strings.TrimSpace(v))
		}
	}
	return 0, errors.New("no go_goroutines in noded's metrics")
}

// samples collects one runtime's measurements over all trials.
type samples struct {
	execSync      []time.Duration // every call
	execSyncCPU   time.Duration   // machine CPU over all the loops
	execSyncCalls int
	lone          []time.Duration // every lone call
	firstByte     []time.Duration // every exec
	execRate      []float64       // bytes/s, one per trial
	execCPU       []time.Duration // machine CPU per transfer, one per trial
	pfRate        []float64
	pfCPU         []time.Duration
	pfManyTime    []time.Duration
	pfManyCPU     []time.Duration
}

func (r *rtm) trial(ctx context.Context, cfg config, n int, s *samples) error {
	cpu0 := busyCPU()
	lat, err := r.execSyncLoop(ctx, cfg.calls)
	if err != nil {
		return err
	}
	cpu := busyCPU() - cpu0
	s.execSync = append(s.execSync, lat...)
	s.execSyncCPU += cpu
	s.execSyncCalls += cfg.calls

	lone, err := r.loneExecSyncs(ctx, cfg.lone)
	if err != nil {
		return err
	}
	s.lone = append(s.lone, lone...)

	var fb []time.Duration
	for range cfg.firstBytes {
		dt, err := r.firstByte(ctx)
		if err != nil {
			return err
		}
		fb = append(fb, dt)
	}
	s.firstByte = append(s.firstByte, fb...)

	cpu0 = busyCPU()
	dt, err := r.execStdout(ctx, cfg.bytes)
	if err != nil {
		return err
	}
	execCPU := busyCPU() - cpu0
	s.execRate = append(s.execRate, rate(cfg.bytes, dt))
	s.execCPU = append(s.execCPU, execCPU)

	cpu0 = busyCPU()
	pdt, err := r.forwardOne(ctx, cfg.bytes)
	if err != nil {
		return err
	}
	pfCPU := busyCPU() - cpu0
	s.pfRate = append(s.pfRate, rate(cfg.bytes, pdt))
	s.pfCPU = append(s.pfCPU, pfCPU)

	cpu0 = busyCPU()
	mdt, err := r.forwardMany(ctx, cfg.streams, cfg.streamBytes)
	if err != nil {
		return err
	}
	manyCPU := busyCPU() - cpu0
	s.pfManyTime = append(s.pfManyTime, mdt)
	s.pfManyCPU = append(s.pfManyCPU, manyCPU)

	fmt.Printf("trial %d %-15s ExecSync p50 %s p95 %s cpu/call %s | echo first byte p50 %s | exec stdout %.0f MiB/s | pf 1 stream %.0f MiB/s | pf %d streams %s | loadavg %s\n",
		n, r.name, ms(peer.Pct(lat, 0.5)), ms(peer.Pct(lat, 0.95)), ms(cpu/time.Duration(cfg.calls)), ms(peer.Pct(fb, 0.5)),
		rate(cfg.bytes, dt)/(1<<20), rate(cfg.bytes, pdt)/(1<<20), cfg.streams, mdt.Round(time.Millisecond), peer.Loadavg())
	return nil
}

// setup pulls the image and starts one pod with one busybox container
// that runs two tcpsvd servers (bigPort, smallPort), then waits until they
// listen.
func (r *rtm) setup(ctx context.Context, cfg config, dir string) error {
	if err := peer.PullImage(ctx, r.Runtime, image); err != nil {
		return err
	}
	p, err := peer.NewPod(r.Runtime, dir, "bench-exec")
	if err != nil {
		return err
	}
	pod, err := r.RT.RunPodSandbox(ctx, &runtimeapi.RunPodSandboxRequest{Config: p.Config})
	if err != nil {
		return err
	}
	r.pod = pod.GetPodSandboxId()
	script := fmt.Sprintf("tcpsvd -c %d 0 %d head -c %d /dev/zero & tcpsvd -c %d 0 %d head -c %d /dev/zero & wait",
		cfg.streams+10, bigPort, cfg.bytes, cfg.streams+10, smallPort, cfg.streamBytes)
	cc, err := p.Container("servers", image, []string{"sh", "-c", script})
	if err != nil {
		return err
	}
	c, err := r.RT.CreateContainer(ctx, &runtimeapi.CreateContainerRequest{PodSandboxId: r.pod, SandboxConfig: p.Config, Config: cc})
	if err != nil {
		return err
	}
	r.ctr = c.GetContainerId()
	if _, err := r.RT.StartContainer(ctx, &runtimeapi.StartContainerRequest{ContainerId: r.ctr}); err != nil {
		return err
	}
	listening := fmt.Sprintf("netstat -ltn | grep -q ':%d ' && netstat -ltn | grep -q ':%d '", bigPort, smallPort)
	for range 100 {
		resp, err := r.RT.ExecSync(ctx, &runtimeapi.ExecSyncRequest{ContainerId: r.ctr, Cmd: []string{"sh", "-c", listening}, Timeout: 10})
		if err != nil {
			return err
		}
		if resp.GetExitCode() == 0 {
			return nil
		}
		time.Sleep(50 * time.Millisecond)
	}
	return errors.New("the pod's tcpsvd servers did not start listening")
}

// execSyncLoop runs `true` n times, one after another, as exec probes do.
func (r *rtm) execSyncLoop(ctx context.Context, n int) ([]time.Duration, error) {
	lat := make([]time.Duration, 0, n)
	for range n {
		start := time.Now()
		resp, err := r.RT.ExecSync(ctx, &runtimeapi.ExecSyncRequest{ContainerId: r.ctr, Cmd: []string{"true"}, Timeout: 10})
		if err != nil {
			return nil, err
		}
		lat = append(lat, time.Since(start))
		if resp.GetExitCode() != 0 {
			return nil, fmt.Errorf("ExecSync true: exit code %d: %s", resp.GetExitCode(), resp.GetStderr())
		}
	}
	return lat, nil
}

// loneGap separates lone ExecSync calls: more than noded's exec burst
// (1 s), so that none finds a helper started ahead.
const loneGap = 1200 * time.Millisecond

// loneExecSyncs times n ExecSyncs of `true`, each loneGap after the one
// before, as an exec probe of one container with a period of a second or
// more sees them. One more comes first, not counted: it follows the loop
// of calls, whose burst may have left a warm helper.
func (r *rtm) loneExecSyncs(ctx context.Context, n int) ([]time.Duration, error) {
	var lat []time.Duration
	for i := range n + 1 {
		select {
		case <-ctx.Done():
			return nil, ctx.Err()
		case <-time.After(loneGap):
		}
		l, err := r.execSyncLoop(ctx, 1)
		if err != nil {
			return nil, err
		}
		if i > 0 {
			lat = append(lat, l...)
		}
	}
	return lat, nil
}

// stream runs cmd through the Exec RPC and its SPDY URL, its stdout going
// to w (stderr too when stderr is set).
func (r *rtm) stream(ctx context.Context, cmd []string, w io.Writer, stderr io.Writer) error {
	resp, err := r.RT.Exec(ctx, &runtimeapi.ExecRequest{ContainerId: r.ctr, Cmd: cmd, Stdout: true, Stderr: stderr != nil})
	if err != nil {
		return err
	}
	u, err := url.Parse(resp.GetUrl())
	if err != nil {
		return err
	}
	ex, err := remotecommand.NewSPDYExecutor(&rest.Config{}, http.MethodPost, u)
	if err != nil {
		return err
	}
	return ex.StreamWithContext(ctx, remotecommand.StreamOptions{Stdout: w, Stderr: stderr})
}

// firstByte is the time from the Exec RPC to the first byte of `echo hi`.
func (r *rtm) firstByte(ctx context.Context) (time.Duration, error) {
	w := &counter{start: time.Now()}
	if err := r.stream(ctx, []string{"echo", "hi"}, w, io.Discard); err != nil {
		return 0, err
	}
	if w.n != 3 {
		return 0, fmt.Errorf("echo hi: %d bytes of stdout, want 3", w.n)
	}
	return w.first, nil
}

// execStdout moves n bytes through the exec's stdout; it returns the time
// from the Exec RPC to the end of the stream.
func (r *rtm) execStdout(ctx context.Context, n int64) (time.Duration, error) {
	w := &counter{start: time.Now()}
	if err := r.stream(ctx, []string{"head", "-c", strconv.FormatInt(n, 10), "/dev/zero"}, w, nil); err != nil {
		return 0, err
	}
	if w.n != n {
		return 0, fmt.Errorf("exec stdout: %d bytes, want %d", w.n, n)
	}
	return time.Since(w.start), nil
}

// forward runs fn with a port-forward of bigPort and smallPort to the
// pod, on local ports of 127.0.0.1 (kubectl port-forward's path: one SPDY
// connection, one stream pair per local connection).
func (r *rtm) forward(ctx context.Context, fn func(big, small string) error) (err error) {
	resp, err := r.RT.PortForward(ctx, &runtimeapi.PortForwardRequest{PodSandboxId: r.pod, Port: []int32{bigPort, smallPort}})
	if err != nil {
		return err
	}
	u, err := url.Parse(resp.GetUrl())
	if err != nil {
		return err
	}
	tr, up, err := spdy.RoundTripperFor(&rest.Config{})
	if err != nil {
		return err
	}
	dialer := spdy.NewDialer(up, &http.Client{Transport: tr}, http.MethodPost, u)
	stop, ready := make(chan struct{}), make(chan struct{})
	ports := []string{fmt.Sprintf("0:%d", bigPort), fmt.Sprintf("0:%d", smallPort)}
	pf, err := portforward.NewOnAddresses(dialer, []string{"127.0.0.1"}, ports, stop, ready, io.Discard, os.Stderr)
	if err != nil {
		return err
	}
	done := make(chan error, 1)
	go func() { done <- pf.ForwardPorts() }()
	defer func() {
		close(stop)
		if ferr := <-done; ferr != nil && err == nil {
			err = ferr
		}
	}()
	select {
	case <-ready:
	case err := <-done:
		done <- err
		return fmt.Errorf("port-forward: %w", err)
	case <-ctx.Done():
		return ctx.Err()
	}
	fwd, err := pf.GetPorts()
	if err != nil {
		return err
	}
	local := map[uint16]string{}
	for _, p := range fwd {
		local[p.Remote] = net.JoinHostPort("127.0.0.1", strconv.Itoa(int(p.Local)))
	}
	return fn(local[bigPort], local[smallPort])
}

func readAll(addr string, want int64) error {
	conn, err := net.Dial("tcp", addr)
	if err != nil {
		return err
	}
	defer func() { _ = conn.Close() }()
	n, err := io.Copy(io.Discard, conn)
	if err != nil {
		return err
	}
	if n != want {
		return fmt.Errorf("port-forward: %d bytes, want %d", n, want)
	}
	return nil
}

// forwardOne reads n bytes through one forwarded connection; the time
// runs from the local connect to the end of the data.
func (r *rtm) forwardOne(ctx context.Context, n int64) (dt time.Duration, err error) {
	err = r.forward(ctx, func(big, _ string) error {
		start := time.Now()
		if err := readAll(big, n); err != nil {
			return err
		}
		dt = time.Since(start)
		return nil
	})
	return dt, err
}

// forwardMany reads n bytes through each of k connections at once; the
// time runs from the first connect to the end of the last.
func (r *rtm) forwardMany(ctx context.Context, k int, n int64) (dt time.Duration, err error) {
	err = r.forward(ctx, func(_, small string) error {
		start := time.Now()
		errs := make([]error, k)
		var wg sync.WaitGroup
		for i := range k {
			wg.Go(func() { errs[i] = readAll(small, n) })
		}
		wg.Wait()
		dt = time.Since(start)
		return errors.Join(errs...)
	})
	return dt, err
}

// counter counts bytes and notes when the first arrived.
type counter struct {
	start time.Time
	first time.Duration
	n     int64
}

func (c *counter) Write(p []byte) (int, error) {
	if c.n == 0 && len(p) > 0 {
		c.first = time.Since(c.start)
	}
	c.n += int64(len(p))
	return len(p), nil
}

func printTable(cfg config, rts []*peer.Runtime, ss []*samples) {
	col := func(f func(s *samples) float64) []float64 {
		v := make([]float64, len(ss))
		for i, s := range ss {
			v[i] = f(s)
		}
		return v
	}
	mibs := func(v []float64) float64 { return peer.Median(v) / (1 << 20) }
	msOf := func(d time.Duration) float64 { return float64(d) / float64(time.Millisecond) }
	size := fmt.Sprintf("%d MiB", cfg.bytes>>20)
	many := float64(int64(cfg.streams)*cfg.streamBytes) / (1 << 20)
	rows := []peer.Row{
		{Figure: "ExecSync `true` p50 (ms)", Values: col(func(s *samples) float64 { return msOf(peer.Pct(s.execSync, 0.5)) }), Format: "%.2f"},
		{Figure: "ExecSync `true` p95 (ms)", Values: col(func(s *samples) float64 { return msOf(peer.Pct(s.execSync, 0.95)) }), Format: "%.2f"},
		{Figure: "ExecSync machine CPU per call (ms)", Values: col(func(s *samples) float64 { return msOf(s.execSyncCPU) / float64(max(1, s.execSyncCalls)) }), Format: "%.2f"},
		{Figure: fmt.Sprintf("ExecSync `true` alone (%s apart) p50 (ms)", loneGap), Values: col(func(s *samples) float64 { return msOf(peer.Pct(s.lone, 0.5)) }), Format: "%.2f"},
		{Figure: "exec `echo hi` first byte p50 (ms)", Values: col(func(s *samples) float64 { return msOf(peer.Pct(s.firstByte, 0.5)) }), Format: "%.2f"},
		{Figure: "exec `echo hi` first byte p95 (ms)", Values: col(func(s *samples) float64 { return msOf(peer.Pct(s.firstByte, 0.95)) }), Format: "%.2f"},
		{Figure: "exec stdout " + size + " (MiB/s)", Values: col(func(s *samples) float64 { return mibs(s.execRate) }), Format: "%.0f", HigherBetter: true},
		{Figure: "exec stdout " + size + " machine CPU (s)", Values: col(func(s *samples) float64 { return medianDur(s.execCPU).Seconds() }), Format: "%.2f"},
		{Figure: "port-forward 1 stream " + size + " (MiB/s)", Values: col(func(s *samples) float64 { return mibs(s.pfRate) }), Format: "%.0f", HigherBetter: true},
		{Figure: "port-forward 1 stream machine CPU (s)", Values: col(func(s *samples) float64 { return medianDur(s.pfCPU).Seconds() }), Format: "%.2f"},
		{Figure: fmt.Sprintf("port-forward %d streams x %d MiB, total (s)", cfg.streams, cfg.streamBytes>>20), Values: col(func(s *samples) float64 { return medianDur(s.pfManyTime).Seconds() }), Format: "%.3f"},
		{Figure: fmt.Sprintf("port-forward %d streams, aggregate (MiB/s)", cfg.streams), Values: col(func(s *samples) float64 { return many / medianDur(s.pfManyTime).Seconds() }), Format: "%.0f", HigherBetter: true},
		{Figure: fmt.Sprintf("port-forward %d streams machine CPU (s)", cfg.streams), Values: col(func(s *samples) float64 { return medianDur(s.pfManyCPU).Seconds() }), Format: "%.2f"},
	}
	fmt.Printf("\nlatencies: every call of every trial; throughputs and CPU: median of %d trials (loadavg %s)\n", cfg.trials, peer.Loadavg())
	peer.PrintTable(rts, rows)
}

func medianDur(d []time.Duration) time.Duration { return peer.Pct(d, 0.5) }

func rate(n int64, dt time.Duration) float64 {
	if dt <= 0 {
		return 0
	}
	return float64(n) / dt.Seconds()
}

func ms(d time.Duration) string { return fmt.Sprintf("%.2fms", float64(d)/float64(time.Millisecond)) }

// busyCPU returns the machine's non-idle CPU time so far, from /proc/stat
// (every process counts: the runtime, its shims or monitors, runc or the
// helpers, the kernel's work for them, and this program's client side).
func busyCPU() time.Duration {
	d, _ := procfs.BusyCPU() // 0 if unreadable: the figures then say so
	return d
}

func readFile(p string) string {
	b, _ := os.ReadFile(p)
	return string(b)
}
