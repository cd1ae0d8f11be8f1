//go:build integration

package integration

import (
	"context"
	"fmt"
	"net"
	"os"
	"os/exec"
	"path/filepath"
	"slices"
	"strconv"
	"strings"
	"sync"
	"testing"
	"time"

	"google.golang.org/grpc/codes"
	"google.golang.org/grpc/status"
	runtimeapi "k8s.io/cri-api/pkg/apis/runtime/v1"

	"github.com/noded-dev/noded/internal/oci/wire"
	"github.com/noded-dev/noded/test/testenv"
)

const busyboxImage = "registry.k8s.io/e2e-test-images/busybox:1.29-2"

// podEnv is a daemon with an offline registry and a bridge network of its
// own (bridge name and subnet unused elsewhere), torn down at the end.
type podEnv struct {
	d      *Daemon
	rt     runtimeapi.RuntimeServiceClient
	img    runtimeapi.ImageServiceClient
	bridge string
	logDir string
	// removed is set once removeAll succeeded (it runs again at cleanup).
	removed bool
}

// itCgroup and itSubnet are this test process's pod cgroup parent and pod
// subnet, so that two runs of the suite on one host (a developer's and a
// CI run) neither remove each other's cgroups nor route each other's pods.
var (
	itCgroup = fmt.Sprintf("noded-it-%d", os.Getpid())
	itSubnet = fmt.Sprintf("10.233.%d.0/24", os.Getpid()%250)
)

func newPodEnv(t *testing.T, extraArgs ...string) *podEnv {
	t.Helper()
	if _, err := os.Stat("/usr/lib/cni/bridge"); err != nil {
		if _, err2 := os.Stat("/opt/cni/bin/bridge"); err2 != nil {
			t.Skip("CNI plugins not installed: run scripts/install-test-deps.sh")
		}
	}
	reg := StartTestRegistry(t)
	dir, err := os.MkdirTemp("", "noded-it-")
	if err != nil {
		t.Fatal(err)
	}
	t.Cleanup(func() { cleanupDir(t, dir) })
	policy := filepath.Join(dir, "policy.json")
	_ = os.WriteFile(policy, []byte(testenv.InsecurePolicy), 0o644)
	bridge := fmt.Sprintf("nit%d", os.Getpid()%100000)
	conf := testenv.BridgeConf("noded-it", bridge, itSubnet, filepath.Join(dir, "ipam"))
	if err := os.MkdirAll(filepath.Join(dir, "cni"), 0o755); err != nil {
		t.Fatal(err)
	}
	if err := os.WriteFile(filepath.Join(dir, "cni", "10-it.conflist"), []byte(conf), 0o644); err != nil {
		t.Fatal(err)
	}
	t.Cleanup(func() { _ = exec.Command("ip", "link", "del", bridge).Run() })
	t.Cleanup(func() {
		if err := testenv.RemoveCgroupTree(itCgroup); err != nil {
			t.Errorf("pod cgroups left: %v", err)
		}
	})
	args := append([]string{"--registries-conf", reg.RegistriesConf, "--signature-policy", policy}, extraArgs...)
	d := StartDaemon(t, DaemonOptions{Dir: dir, Args: args})
	e := &podEnv{d: d, rt: d.Runtime(t), img: d.Images(t), bridge: bridge, logDir: filepath.Join(dir, "logs")}
	ctx, cancel := context.WithTimeout(context.Background(), 2*time.Minute)
	defer cancel()
	if _, err := e.img.PullImage(ctx, &runtimeapi.PullImageRequest{Image: &runtimeapi.ImageSpec{Image: busyboxImage}}); err != nil {
		t.Fatalf("pull %s: %v\n%s", busyboxImage, err, d.Log)
	}
	// Remove every pod before the daemon stops (cleanups run LIFO).
	t.Cleanup(func() { e.removeAll(t) })
	return e
}

func (e *podEnv) removeAll(t *testing.T) {
	if e.removed {
		return
	}
	ctx := context.Background()
	pods, err := e.rt.ListPodSandbox(ctx, &runtimeapi.ListPodSandboxRequest{})
	if err != nil {
		t.Errorf("list pods at cleanup (pods may be left running): %v", err)
		return
	}
	for _, p := range pods.GetItems() {
		if _, err := e.rt.RemovePodSandbox(ctx, &runtimeapi.RemovePodSandboxRequest{PodSandboxId: p.GetId()}); err != nil {
			t.Errorf("removing pod %s: %v", p.GetId(), err)
			return
		}
	}
	e.removed = true
}

func (e *podEnv) podConfig(name string, ports ...*runtimeapi.PortMapping) *runtimeapi.PodSandboxConfig {
	return &runtimeapi.PodSandboxConfig{
		Metadata:     &runtimeapi.PodSandboxMetadata{Name: name, Namespace: "it", Uid: "uid-" + name},
		Hostname:     name,
		LogDirectory: filepath.Join(e.logDir, name),
		PortMappings: ports,
		Labels:       map[string]string{"test": "pods"},
		Linux:        &runtimeapi.LinuxPodSandboxConfig{CgroupParent: "/" + itCgroup + "/" + name},
	}
}

// runPod starts a pod with one container running cmd and returns the pod
// ID, the container ID and the pod's IP.
func (e *podEnv) runPod(t *testing.T, name string, cmd []string, ports ...*runtimeapi.PortMapping) (string, string, string) {
	t.Helper()
	ctx := context.Background()
	pcfg := e.podConfig(name, ports...)
	if err := os.MkdirAll(pcfg.LogDirectory, 0o755); err != nil {
		t.Fatal(err)
	}
	pod, err := e.rt.RunPodSandbox(ctx, &runtimeapi.RunPodSandboxRequest{Config: pcfg})
	if err != nil {
		t.Fatalf("RunPodSandbox %s: %v\n%s", name, err, e.d.Log)
	}
	ctr := e.createStart(t, pod.GetPodSandboxId(), pcfg, "main", cmd)
	st, err := e.rt.PodSandboxStatus(ctx, &runtimeapi.PodSandboxStatusRequest{PodSandboxId: pod.GetPodSandboxId()})
	if err != nil {
		t.Fatal(err)
	}
	return pod.GetPodSandboxId(), ctr, st.GetStatus().GetNetwork().GetIp()
}

func (e *podEnv) createStart(t *testing.T, pod string, pcfg *runtimeapi.PodSandboxConfig, name string, cmd []string) string {
	t.Helper()
	ctx := context.Background()
	c, err := e.rt.CreateContainer(ctx, &runtimeapi.CreateContainerRequest{
		PodSandboxId: pod, SandboxConfig: pcfg,
		Config: &runtimeapi.ContainerConfig{
			Metadata: &runtimeapi.ContainerMetadata{Name: name},
			Image:    &runtimeapi.ImageSpec{Image: busyboxImage},
			Command:  cmd,
			LogPath:  name + ".log",
		},
	})
	if err != nil {
		t.Fatalf("CreateContainer %s: %v\n%s", name, err, e.d.Log)
	}
	if _, err := e.rt.StartContainer(ctx, &runtimeapi.StartContainerRequest{ContainerId: c.GetContainerId()}); err != nil {
		t.Fatalf("StartContainer %s: %v\n%s", name, err, e.d.Log)
	}
	return c.GetContainerId()
}

func (e *podEnv) exec(t *testing.T, ctr string, timeout int64, cmd ...string) (*runtimeapi.ExecSyncResponse, error) {
	t.Helper()
	return e.rt.ExecSync(context.Background(), &runtimeapi.ExecSyncRequest{ContainerId: ctr, Cmd: cmd, Timeout: timeout})
}

func (e *podEnv) waitExited(t *testing.T, ctr string, within time.Duration) *runtimeapi.ContainerStatus {
	t.Helper()
	deadline := time.Now().Add(within)
	for {
		st, err := e.rt.ContainerStatus(context.Background(), &runtimeapi.ContainerStatusRequest{ContainerId: ctr})
		if err != nil {
			t.Fatal(err)
		}
		if st.GetStatus().GetState() == runtimeapi.ContainerState_CONTAINER_EXITED {
			return st.GetStatus()
		}
		if time.Now().After(deadline) {
			t.Fatalf("container %s still %v after %s", ctr, st.GetStatus().GetState(), within)
		}
		time.Sleep(100 * time.Millisecond)
	}
}

func TestPodsOverTheBridge(t *testing.T) {
	e := newPodEnv(t)
	_, ctrA, ipA := e.runPod(t, "alpha", []string{"sleep", "3600"})
	_, _, ipB := e.runPod(t, "beta", []string{"httpd", "-f", "-p", "8080", "-h", "/etc"})
	if net.ParseIP(ipA) == nil || net.ParseIP(ipB) == nil || ipA == ipB {
		t.Fatalf("pod IPs %q %q", ipA, ipB)
	}

	t.Run("pod to pod", func(t *testing.T) {
		var resp *runtimeapi.ExecSyncResponse
		var err error
		for range 20 { // httpd may still be starting
			resp, err = e.exec(t, ctrA, 10, "wget", "-q", "-O", "-", "http://"+ipB+":8080/hostname")
			if err == nil && resp.GetExitCode() == 0 {
				break
			}
			time.Sleep(200 * time.Millisecond)
		}
		if err != nil || resp.GetExitCode() != 0 || strings.TrimSpace(string(resp.GetStdout())) != "beta" {
			t.Fatalf("wget from alpha to beta: %v %q %q", err, resp.GetStdout(), resp.GetStderr())
		}
	})

	t.Run("hostPort on 127.0.0.1", func(t *testing.T) {
		hostPort := int32(20000 + os.Getpid()%10000)
		e.runPod(t, "gamma", []string{"httpd", "-f", "-p", "80", "-h", "/etc"},
			&runtimeapi.PortMapping{Protocol: runtimeapi.Protocol_TCP, ContainerPort: 80, HostPort: hostPort})
		addr := fmt.Sprintf("127.0.0.1:%d", hostPort)
		var got string
		for range 50 {
			out, err := exec.Command("wget", "-q", "-T", "2", "-O", "-", "http://"+addr+"/hostname").Output()
			if err == nil {
				got = strings.TrimSpace(string(out))
				break
			}
			if _, err := exec.LookPath("wget"); err != nil {
				got = httpGet(t, addr)
				break
			}
			time.Sleep(200 * time.Millisecond)
		}
		if got != "gamma" {
			t.Fatalf("GET http://%s/hostname = %q", addr, got)
		}
	})
}

func httpGet(t *testing.T, addr string) string {
	t.Helper()
	for range 50 {
		c, err := net.DialTimeout("tcp", addr, 2*time.Second)
		if err == nil {
			_ = c.SetDeadline(time.Now().Add(5 * time.Second))
			fmt.Fprintf(c, "GET /hostname HTTP/1.0\r\n\r\n")
			b := make([]byte, 4096)
			n, _ := c.Read(b)
			_ = c.Close()
			_, body, _ := strings.Cut(string(b[:n]), "\r\n\r\n")
			return strings.TrimSpace(body)
		}
		time.Sleep(200 * time.Millisecond)
	}
	return ""
}

func TestExecSyncLogsAndExit(t *testing.T) {
	e := newPodEnv(t)
	pod, ctr, _ := e.runPod(t, "delta", []string{"sleep", "3600"})

	t.Run("exec output and exit code", func(t *testing.T) {
		resp, err := e.exec(t, ctr, 10, "sh", "-c", "echo out; echo err >&2; exit 3")
		if err != nil || resp.GetExitCode() != 3 || string(resp.GetStdout()) != "out\n" || string(resp.GetStderr()) != "err\n" {
			t.Fatalf("ExecSync = %v, %+v", err, resp)
		}
	})
	t.Run("the pod's /dev/shm is nosuid, nodev and noexec in the container", func(t *testing.T) {
		resp, err := e.exec(t, ctr, 10, "sh", "-c", "grep ' /dev/shm ' /proc/mounts")
		if err != nil || resp.GetExitCode() != 0 {
			t.Fatalf("reading /proc/mounts: %v, %+v", err, resp)
		}
		fields := strings.Fields(string(resp.GetStdout()))
		if len(fields) < 4 {
			t.Fatalf("/dev/shm mount: %q", resp.GetStdout())
		}
		opts := strings.Split(fields[3], ",")
		for _, want := range []string{"nosuid", "nodev", "noexec"} {
			if !slices.Contains(opts, want) {
				t.Errorf("/dev/shm mounted %s, without %s", fields[3], want)
			}
		}
		// And it holds: a program copied there does not run.
		resp, err = e.exec(t, ctr, 10, "sh", "-c", "cp /bin/true /dev/shm/t && /dev/shm/t")
		if err != nil || resp.GetExitCode() == 0 {
			t.Errorf("a program in /dev/shm ran: %v, %+v", err, resp)
		}
	})
	t.Run("100 MB of output, twelve at once: 16 MiB kept, memory bounded", func(t *testing.T) {
		monitor := monitorPid(t, e.d.Dir, pod)
		resetPeak(t, e.d.Pid())
		resetPeak(t, monitor)
		nodedBefore, monitorBefore := peakRSS(t, e.d.Pid()), peakRSS(t, monitor)
		var wg sync.WaitGroup
		for i := range 12 {
			wg.Go(func() {
				cmd := "head -c 100000000 /dev/zero"
				if i%2 == 1 {
					cmd += " >&2"
				}
				resp, err := e.exec(t, ctr, 60, "sh", "-c", cmd)
				if err != nil || resp.GetExitCode() != 0 || len(resp.GetStdout())+len(resp.GetStderr()) != wire.MaxExecOutput {
					t.Errorf("ExecSync of 100 MB: %v, exit %d, %d+%d bytes back (want %d)", err, resp.GetExitCode(), len(resp.GetStdout()), len(resp.GetStderr()), wire.MaxExecOutput)
				}
			})
		}
		wg.Wait()
		nodedGrew, monitorGrew := peakRSS(t, e.d.Pid())-nodedBefore, peakRSS(t, monitor)-monitorBefore
		t.Logf("peak RSS growth over twelve ExecSyncs of 100 MB at once: noded %d MiB, monitor %d MiB", nodedGrew>>20, monitorGrew>>20)
		if monitorGrew > 8<<20 {
			t.Errorf("the monitor's peak grew by %d MiB: it must not hold exec output", monitorGrew>>20)
		}
		// Measured: ~120 MiB (one bulky call at a time, its output, the
		// gRPC copy of its answer and the GC's headroom); five calls took
		// ~420 MiB, and the monitor ~330, when the monitor captured the
		// output. However many calls run, one holds 16 MiB.
		if nodedGrew > 10*(16<<20) {
			t.Errorf("noded's peak grew by %d MiB for twelve calls of 16 MiB", nodedGrew>>20)
		}
		if strings.Contains(e.d.Log.String(), strings.Repeat("\\x00", 64)) {
			t.Error("exec output in noded's log")
		}
	})
	t.Run("stats come from the container's cgroup", func(t *testing.T) {
		resp, err := e.rt.ContainerStats(context.Background(), &runtimeapi.ContainerStatsRequest{ContainerId: ctr})
		if err != nil {
			t.Fatal(err)
		}
		st := resp.GetStats()
		if st.GetAttributes().GetId() != ctr || st.GetMemory().GetWorkingSetBytes().GetValue() == 0 || st.GetCpu().GetUsageCoreNanoSeconds() == nil {
			t.Fatalf("stats: %+v", st)
		}
	})
	t.Run("exec timeout kills the command", func(t *testing.T) {
		start := time.Now()
		_, err := e.exec(t, ctr, 1, "sleep", "30")
		if status.Code(err) != codes.DeadlineExceeded || time.Since(start) > 10*time.Second {
			t.Fatalf("ExecSync with timeout: %v after %s", err, time.Since(start))
		}
		ps, _ := e.exec(t, ctr, 10, "sh", "-c", "ps -o comm | grep -c '^sleep' || true")
		if got := strings.TrimSpace(string(ps.GetStdout())); got != "1" {
			t.Fatalf("sleep processes after the timeout: %s (the exec'd sleep must be killed)", got)
		}
	})
	t.Run("log file in CRI format and exit code", func(t *testing.T) {
		pcfg := e.podConfig("delta")
		c := e.createStart(t, pod, pcfg, "talker", []string{"sh", "-c", "echo hello; echo oops >&2; printf partial; exit 7"})
		st := e.waitExited(t, c, 20*time.Second)
		if st.GetExitCode() != 7 || st.GetReason() != "Error" {
			t.Fatalf("exit: %+v", st)
		}
		b, err := os.ReadFile(st.GetLogPath())
		if err != nil {
			t.Fatal(err)
		}
		// stdout and stderr are separate pipes: order is kept within a
		// stream, not between them.
		byStream := map[string][]string{}
		for _, l := range strings.Split(strings.TrimRight(string(b), "\n"), "\n") {
			ts, rest, _ := strings.Cut(l, " ")
			if _, err := time.Parse(time.RFC3339Nano, ts); err != nil {
				t.Errorf("log line %q has no RFC 3339 timestamp", l)
			}
			stream, _, _ := strings.Cut(rest, " ")
			byStream[stream] = append(byStream[stream], rest)
		}
		if got := strings.Join(byStream["stdout"], "|"); got != "stdout F hello|stdout P partial" {
			t.Errorf("stdout lines: %s\n%s", got, b)
		}
		if got := strings.Join(byStream["stderr"], "|"); got != "stderr F oops" {
			t.Errorf("stderr lines: %s\n%s", got, b)
		}
	})
	t.Run("stop uses SIGTERM then SIGKILL", func(t *testing.T) {
		pcfg := e.podConfig("delta")
		c := e.createStart(t, pod, pcfg, "stubborn", []string{"sh", "-c", "trap '' TERM; touch /trapped; sleep 3600 & wait"})
		// A SIGTERM before the trap is set would end it at once.
		waitFor(t, 5*time.Second, func() bool {
			r, err := e.exec(t, c, 5, "test", "-e", "/trapped")
			return err == nil && r.GetExitCode() == 0
		})
		start := time.Now()
		if _, err := e.rt.StopContainer(context.Background(), &runtimeapi.StopContainerRequest{ContainerId: c, Timeout: 1}); err != nil {
			t.Fatal(err)
		}
		st := e.waitExited(t, c, 5*time.Second)
		if st.GetExitCode() != 137 || time.Since(start) < time.Second {
			t.Fatalf("stop: exit %d after %s", st.GetExitCode(), time.Since(start))
		}
	})
}

func TestRecoveryAfterKill9(t *testing.T) {
	e := newPodEnv(t)
	pod, runner, _ := e.runPod(t, "epsilon", []string{"sleep", "3600"})
	quitter := e.createStart(t, pod, e.podConfig("epsilon"), "quitter", []string{"sh", "-c", "sleep 2; exit 42"})

	e.d.Kill(t)
	time.Sleep(3 * time.Second) // quitter exits while noded is down
	d2 := e.d.Restart(t)
	e.d, e.rt = d2, d2.Runtime(t)
	// The new daemon stops at cleanup before the first one's pod removal
	// would run: remove the pods through it.
	t.Cleanup(func() { e.removeAll(t) })

	ctx := context.Background()
	pods, err := e.rt.ListPodSandbox(ctx, &runtimeapi.ListPodSandboxRequest{})
	if err != nil || len(pods.GetItems()) != 1 || pods.GetItems()[0].GetState() != runtimeapi.PodSandboxState_SANDBOX_READY {
		t.Fatalf("pods after restart: %v %v", pods, err)
	}
	st, err := e.rt.ContainerStatus(ctx, &runtimeapi.ContainerStatusRequest{ContainerId: runner})
	if err != nil || st.GetStatus().GetState() != runtimeapi.ContainerState_CONTAINER_RUNNING {
		t.Fatalf("running container after restart: %v %v", st, err)
	}
	if resp, err := e.exec(t, runner, 10, "echo", "alive"); err != nil || string(resp.GetStdout()) != "alive\n" {
		t.Fatalf("exec after restart: %v %v", resp, err)
	}
	qs := e.waitExited(t, quitter, 5*time.Second)
	if qs.GetExitCode() != 42 {
		t.Fatalf("exit code recorded across the restart: %d", qs.GetExitCode())
	}
}

// A pause image configured from a registry is pulled on the first pod.
func TestConfiguredPauseImageFromRegistry(t *testing.T) {
	const pause = "registry.k8s.io/pause:3.9"
	e := newPodEnv(t, "--pause-image", pause)
	pod, ctr, ip := e.runPod(t, "zeta", []string{"sleep", "3600"})
	if net.ParseIP(ip) == nil {
		t.Fatalf("pod IP %q", ip)
	}
	st, err := e.img.ImageStatus(context.Background(), &runtimeapi.ImageStatusRequest{Image: &runtimeapi.ImageSpec{Image: pause}})
	if err != nil || st.GetImage() == nil || !st.GetImage().GetPinned() {
		t.Fatalf("configured pause image after the first pod: %v %v", st, err)
	}
	if resp, err := e.exec(t, ctr, 10, "echo", "ok"); err != nil || string(resp.GetStdout()) != "ok\n" {
		t.Fatalf("exec: %v %v", resp, err)
	}
	// Not the built-in pause: noded gives it the runtime default profile.
	if st := procStatus(t, e.pausePID(t, pod)); st["Seccomp"] != "2" {
		t.Errorf("registry pause runs with Seccomp %q, want 2 (the default profile)", st["Seccomp"])
	}
}

// The built-in pause confines itself: noded gives its container no seccomp
// profile of its own, so the pause process runs under exactly one filter,
// its own. When noded's pause binary changes (another noded build), the
// built-in name is given the new binary's image on the next pod, while pods
// made with the old one keep running.
func TestBuiltinPauseImage(t *testing.T) {
	b, err := os.ReadFile(filepath.Join(repoRoot(), "bin", "noded-pause"))
	if err != nil {
		t.Skipf("no pause binary: %v (run make build)", err)
	}
	e := newPodEnv(t)
	pod1, _, _ := e.runPod(t, "eta", []string{"sleep", "3600"})
	id1 := e.imageID(t, "localhost/noded/pause:builtin")

	if err := e.d.Stop(); err != nil {
		t.Fatal(err)
	}
	// "Another build": a different binary, so another image ID.
	other := filepath.Join(t.TempDir(), "noded-pause")
	if err := os.WriteFile(other, append(b, "another build"...), 0o755); err != nil {
		t.Fatal(err)
	}
	dropIn := filepath.Join(e.d.Dir, "noded.toml.d", "pause.toml")
	if err := os.MkdirAll(filepath.Dir(dropIn), 0o755); err != nil {
		t.Fatal(err)
	}
	if err := os.WriteFile(dropIn, []byte(fmt.Sprintf("pause-path = %q\n", other)), 0o644); err != nil {
		t.Fatal(err)
	}
	d2 := e.d.Restart(t)
	e.d, e.rt, e.img = d2, d2.Runtime(t), d2.Images(t)
	t.Cleanup(func() { e.removeAll(t) })

	pod2, _, _ := e.runPod(t, "theta", []string{"sleep", "3600"})
	if id2 := e.imageID(t, "localhost/noded/pause:builtin"); id2 == id1 {
		t.Fatalf("the built-in pause image was not replaced when the pause binary changed (%s)", id1)
	}
	for _, pod := range []string{pod1, pod2} {
		st := procStatus(t, e.pausePID(t, pod))
		if st["Seccomp"] != "2" || st["Seccomp_filters"] != "1" || st["NoNewPrivs"] != "1" {
			t.Errorf("pause of pod %s: Seccomp %q, %q filters, NoNewPrivs %q; want 2, 1 (its own), 1",
				pod, st["Seccomp"], st["Seccomp_filters"], st["NoNewPrivs"])
		}
	}
}

func (e *podEnv) imageID(t *testing.T, ref string) string {
	t.Helper()
	st, err := e.img.ImageStatus(context.Background(), &runtimeapi.ImageStatusRequest{Image: &runtimeapi.ImageSpec{Image: ref}})
	if err != nil || st.GetImage() == nil {
		t.Fatalf("image %s: %v %v", ref, st, err)
	}
	return st.GetImage().GetId()
}

// pausePID reads the pause process's pid from the verbose pod status.
func (e *podEnv) pausePID(t *testing.T, pod string) int {
	t.Helper()
	st, err := e.rt.PodSandboxStatus(context.Background(), &runtimeapi.PodSandboxStatusRequest{PodSandboxId: pod, Verbose: true})
	if err != nil {
		t.Fatal(err)
	}
	return infoPid(t, "pod "+pod, st.GetInfo())
}

// procStatus returns the fields of /proc/PID/status.
func procStatus(t *testing.T, pid int) map[string]string {
	t.Helper()
	b, err := os.ReadFile(fmt.Sprintf("/proc/%d/status", pid))
	if err != nil {
		t.Fatal(err)
	}
	out := map[string]string{}
	for _, line := range strings.Split(string(b), "\n") {
		if k, v, ok := strings.Cut(line, ":"); ok {
			out[k] = strings.TrimSpace(v)
		}
	}
	return out
}

// monitorPid is the pid of the pod's conmon-go monitor.
func monitorPid(t *testing.T, dir, pod string) int {
	t.Helper()
	procs, _ := filepath.Glob("/proc/[0-9]*/cmdline")
	for _, p := range procs {
		b, _ := os.ReadFile(p)
		if cmd := string(b); strings.Contains(cmd, "conmon-go\x00monitor") && strings.Contains(cmd, pod) && strings.Contains(cmd, dir) {
			pid, _ := strconv.Atoi(filepath.Base(filepath.Dir(p)))
			return pid
		}
	}
	t.Fatalf("no monitor for pod %s", pod)
	return 0
}

// resetPeak resets the peak resident set size (VmHWM) of pid.
func resetPeak(t *testing.T, pid int) {
	t.Helper()
	if err := os.WriteFile(fmt.Sprintf("/proc/%d/clear_refs", pid), []byte("5"), 0o200); err != nil {
		t.Skipf("cannot reset the peak RSS: %v", err)
	}
}

// peakRSS is pid's peak resident set size (VmHWM), in bytes.
func peakRSS(t *testing.T, pid int) int64 {
	t.Helper()
	b, err := os.ReadFile(fmt.Sprintf("/proc/%d/status", pid))
	if err != nil {
		t.Fatal(err)
	}
	for _, l := range strings.Split(string(b), "\n") {
		if v, ok := strings.CutPrefix(l, "VmHWM:"); ok {
			kb, _ := strconv.ParseInt(strings.TrimSuffix(strings.TrimSpace(v), " kB"), 10, 64)
			return kb << 10
		}
	}
	t.Fatalf("no VmHWM for %d", pid)
	return 0
}

// TestStrictDefaults: noded's socket and directories are not open to
// other users, no descriptor of noded or of the monitor reaches a
// container's processes, and a container's confinement is CRI-O's
// (strictContainerDefaults).
func TestStrictDefaults(t *testing.T) {
	e := newPodEnv(t)
	pod, ctr, _ := e.runPod(t, "strict", []string{"sleep", "3600"})
	tests := []struct {
		path string
		deny os.FileMode // permission bits that must be clear
	}{
		{"noded.sock", 0o007},
		{"state", 0o077},
		{"run", 0o077},
		{"root", 0o077},
	}
	for _, tc := range tests {
		fi, err := os.Stat(filepath.Join(e.d.Dir, tc.path))
		if err != nil {
			t.Fatal(err)
		}
		if fi.Mode().Perm()&tc.deny != 0 {
			t.Errorf("%s has mode %v", tc.path, fi.Mode().Perm())
		}
	}
	for _, who := range []struct{ name, cmd string }{
		{"the container's init", "ls /proc/1/fd"},
		// Two commands, so that sh stays (one it would exec in its place)
		// and $$ is the exec'd shell, not ls with its directory open.
		{"an exec'd process", "ls /proc/$$/fd; :"},
	} {
		resp, err := e.exec(t, ctr, 10, "sh", "-c", who.cmd)
		if err != nil || resp.GetExitCode() != 0 {
			t.Fatalf("%s: %v %+v", who.cmd, err, resp)
		}
		if fds := strings.Fields(string(resp.GetStdout())); !slices.Equal(fds, []string{"0", "1", "2"}) {
			t.Errorf("%s holds descriptors %v, want only 0 1 2\n%s", who.name, fds, resp.GetStderr())
		}
	}
	strictContainerDefaults(t, e, pod, ctr)
}
