//go:build integration

package integration

import (
	"bufio"
	"context"
	"errors"
	"fmt"
	"net"
	"net/http"
	"os"
	"os/exec"
	"path/filepath"
	"strings"
	"syscall"
	"testing"
	"time"

	runtimeapi "k8s.io/cri-api/pkg/apis/runtime/v1"
)

// crictlPortForward starts `crictl port-forward POD 127.0.0.1:LOCAL:PORT`
// and returns the local address once crictl says it listens. The process
// is stopped (by its PID) when the test ends.
func crictlPortForward(t *testing.T, e *podEnv, pod string, port int) string {
	t.Helper()
	bin := filepath.Join(repoRoot(), "_build", "tools", "crictl")
	if _, err := os.Stat(bin); err != nil {
		t.Skipf("crictl not installed (%v): run scripts/install-test-deps.sh", err)
	}
	ep := "unix://" + e.d.Socket
	cmd := exec.Command(bin, "--runtime-endpoint", ep, "port-forward", pod, fmt.Sprintf("0:%d", port))
	out, err := cmd.StdoutPipe()
	if err != nil {
		t.Fatal(err)
	}
	cmd.Stderr = cmd.Stdout
	if err := cmd.Start(); err != nil {
		t.Fatal(err)
	}
	t.Cleanup(func() {
		_ = cmd.Process.Signal(syscall.SIGTERM)
		done := make(chan struct{})
		go func() { _ = cmd.Wait(); close(done) }()
		select {
		case <-done:
		case <-time.After(5 * time.Second):
			_ = cmd.Process.Kill()
			<-done
		}
	})
	// crictl prints "Forwarding from 127.0.0.1:NNNNN -> PORT".
	lines := make(chan string)
	go func() {
		sc := bufio.NewScanner(out)
		for sc.Scan() {
			lines <- sc.Text()
		}
		close(lines)
	}()
	timeout := time.After(30 * time.Second)
	for {
		select {
		case l, ok := <-lines:
			if !ok {
				t.Fatal("crictl port-forward exited before forwarding")
			}
			if rest, found := strings.CutPrefix(l, "Forwarding from 127.0.0.1:"); found {
				local, _, _ := strings.Cut(rest, " ")
				go func() {
					for range lines { // keep draining crictl's output
					}
				}()
				return "127.0.0.1:" + local
			}
		case <-timeout:
			t.Fatal("crictl port-forward did not start forwarding within 30s")
		}
	}
}

// Port-forward into a pod's own network namespace, through the streaming
// server, with crictl as the client (SPDY, as the kubelet's API server
// proxy speaks it). Several connections in parallel, and a port nobody
// listens on fails only that connection.
func TestPortForwardWithCrictl(t *testing.T) {
	e := newPodEnv(t)
	pod, _, _ := e.runPod(t, "pf", []string{"httpd", "-f", "-p", "127.0.0.1:8080", "-h", "/etc"})

	addr := crictlPortForward(t, e, pod, 8080)
	client := &http.Client{Timeout: 10 * time.Second}
	get := func() (string, error) {
		resp, err := client.Get("http://" + addr + "/hostname")
		if err != nil {
			return "", err
		}
		defer resp.Body.Close()
		b := make([]byte, 64)
		n, _ := resp.Body.Read(b)
		return strings.TrimSpace(string(b[:n])), nil
	}
	var got string
	var err error
	for range 50 { // httpd may still be starting
		if got, err = get(); err == nil && got == "pf" {
			break
		}
		time.Sleep(200 * time.Millisecond)
	}
	if got != "pf" {
		t.Fatalf("GET through port-forward = %q, %v (httpd listens on the pod's loopback only)", got, err)
	}

	t.Run("parallel connections", func(t *testing.T) {
		errs := make(chan error, 8)
		for range 8 {
			go func() {
				body, err := get()
				if err == nil && body != "pf" {
					err = fmt.Errorf("body %q", body)
				}
				errs <- err
			}()
		}
		for range 8 {
			if err := <-errs; err != nil {
				t.Error(err)
			}
		}
	})

	t.Run("nothing listening", func(t *testing.T) {
		dead := crictlPortForward(t, e, pod, 9)
		c, err := net.DialTimeout("tcp", dead, 5*time.Second)
		if err != nil {
			t.Fatal(err)
		}
		defer c.Close()
		_ = c.SetDeadline(time.Now().Add(10 * time.Second))
		fmt.Fprintf(c, "GET / HTTP/1.0\r\n\r\n")
		if n, _ := c.Read(make([]byte, 16)); n != 0 {
			t.Fatalf("read %d bytes from a port nobody listens on", n)
		}
		// The forward of the other port still works.
		if body, err := get(); err != nil || body != "pf" {
			t.Fatalf("after a failed connection: %q, %v", body, err)
		}
	})
}

// The RPC checks the pod before it hands out a URL, and an unknown or
// used token is a 404 from the streaming server.
func TestPortForwardRequests(t *testing.T) {
	e := newPodEnv(t)
	ctx := context.Background()
	if _, err := e.rt.PortForward(ctx, &runtimeapi.PortForwardRequest{PodSandboxId: "0123456789abcdef"}); err == nil ||
		!strings.Contains(err.Error(), "NotFound") {
		t.Fatalf("unknown pod: %v", err)
	}
	pod, _, _ := e.runPod(t, "pfreq", []string{"sleep", "3600"})
	resp, err := e.rt.PortForward(ctx, &runtimeapi.PortForwardRequest{PodSandboxId: pod, Port: []int32{80}})
	if err != nil {
		t.Fatal(err)
	}
	u := resp.GetUrl()
	if !strings.HasPrefix(u, "http://127.0.0.1:") {
		t.Fatalf("URL %q: want the stream-address default", u)
	}
	// A plain GET consumes the token (it is no upgrade, so the session
	// fails); the same URL again, and a made-up token, are unknown: 404.
	status := func(url string) int {
		r, err := http.Get(url)
		if err != nil {
			t.Fatal(err)
		}
		r.Body.Close()
		return r.StatusCode
	}
	if code := status(u); code == http.StatusNotFound {
		t.Fatalf("fresh token: HTTP %d", code)
	}
	for _, url := range []string{u, u[:strings.LastIndex(u, "/")+1] + "nosuchtoken"} {
		if code := status(url); code != http.StatusNotFound {
			t.Fatalf("%s: HTTP %d, want 404", url, code)
		}
	}
	if _, err := e.rt.StopPodSandbox(ctx, &runtimeapi.StopPodSandboxRequest{PodSandboxId: pod}); err != nil {
		t.Fatal(err)
	}
	if _, err := e.rt.PortForward(ctx, &runtimeapi.PortForwardRequest{PodSandboxId: pod}); err == nil ||
		!strings.Contains(err.Error(), "FailedPrecondition") {
		t.Fatalf("stopped pod: %v", err)
	}
}

// crictlCmd is crictl against the daemon, for a command the test drives
// itself (stdin, background).
func crictlCmd(t *testing.T, e *podEnv, args ...string) *exec.Cmd {
	t.Helper()
	bin := filepath.Join(repoRoot(), "_build", "tools", "crictl")
	if _, err := os.Stat(bin); err != nil {
		t.Skipf("crictl not installed (%v): run scripts/install-test-deps.sh", err)
	}
	ep := "unix://" + e.d.Socket
	return exec.Command(bin, append([]string{"--runtime-endpoint", ep, "--timeout", "60s"}, args...)...)
}

// execCount counts the container's processes whose command line has
// marker (ExecSync, so the count does not depend on streaming).
func execCount(t *testing.T, e *podEnv, ctr, marker string) string {
	t.Helper()
	resp, err := e.exec(t, ctr, 10, "sh", "-c", "ps -o args | grep -c '"+marker+"' || true")
	if err != nil {
		t.Fatal(err)
	}
	return strings.TrimSpace(string(resp.GetStdout()))
}

// crictl exec drives Exec over SPDY, as kubectl exec does through the
// kubelet: output, stdin, exit codes, a terminal, a client that goes away,
// and exec after noded restarted.
func TestExecWithCrictl(t *testing.T) {
	e := newPodEnv(t)
	_, ctr, _ := e.runPod(t, "ex", []string{"sleep", "3600"})

	t.Run("output and exit code", func(t *testing.T) {
		// crictl exits 1 and prints the exit code the stream reported
		// (kubectl exits with the code itself).
		cmd := crictlCmd(t, e, "exec", ctr, "sh", "-c", "echo out; echo err >&2; exit 3")
		var stdout, stderr strings.Builder
		cmd.Stdout, cmd.Stderr = &stdout, &stderr
		err := cmd.Run()
		var ee *exec.ExitError
		if !errors.As(err, &ee) || !strings.Contains(stderr.String(), "exit code 3") {
			t.Fatalf("exit: %v, stderr %q: want the exit code 3 reported", err, stderr.String())
		}
		if stdout.String() != "out\n" || !strings.Contains(stderr.String(), "err\n") {
			t.Fatalf("stdout %q, stderr %q: want the streams apart", stdout.String(), stderr.String())
		}
	})
	t.Run("stdin", func(t *testing.T) {
		cmd := crictlCmd(t, e, "exec", "-i", ctr, "cat")
		cmd.Stdin = strings.NewReader("through stdin\n")
		out, err := cmd.Output()
		if err != nil || string(out) != "through stdin\n" {
			t.Fatalf("cat: %q, %v", out, err)
		}
	})
	t.Run("tty", func(t *testing.T) {
		// script gives crictl a terminal, as a user's shell would.
		bin := crictlCmd(t, e).Path
		line := fmt.Sprintf("%s --runtime-endpoint unix://%s exec -it %s tty", bin, e.d.Socket, ctr)
		cmd := exec.Command("script", "-qec", line, "/dev/null")
		cmd.Stdin = strings.NewReader("")
		out, err := cmd.CombinedOutput()
		if err != nil || !strings.Contains(string(out), "/dev/pts/") {
			t.Fatalf("exec -it: %v\n%q", err, out)
		}
	})
	t.Run("a client that goes away leaves no process", func(t *testing.T) {
		cmd := crictlCmd(t, e, "exec", ctr, "sleep", "4242")
		if err := cmd.Start(); err != nil {
			t.Fatal(err)
		}
		waitFor(t, 10*time.Second, func() bool { return execCount(t, e, ctr, "[s]leep 4242") == "1" })
		_ = cmd.Process.Kill()
		_ = cmd.Wait()
		waitFor(t, 10*time.Second, func() bool { return execCount(t, e, ctr, "[s]leep 4242") == "0" })
	})
	t.Run("after a restart of noded", func(t *testing.T) {
		e.d.Kill(t)
		d2 := e.d.Restart(t)
		e.d, e.rt = d2, d2.Runtime(t)
		t.Cleanup(func() { e.removeAll(t) })
		out, err := crictlCmd(t, e, "exec", ctr, "echo", "again").Output()
		if err != nil || string(out) != "again\n" {
			t.Fatalf("exec after restart: %q, %v", out, err)
		}
	})
}

// crictl attach reaches the container's own output, and its stdin when
// the container was created with one; the CRI log keeps everything.
func TestAttachWithCrictl(t *testing.T) {
	e := newPodEnv(t)
	ctx := context.Background()
	pod, ticker, _ := e.runPod(t, "at", []string{"sh", "-c", "while true; do echo tick; sleep 0.1; done"})

	t.Run("output", func(t *testing.T) {
		cmd := crictlCmd(t, e, "attach", ticker)
		var out strings.Builder
		cmd.Stdout, cmd.Stderr = &out, &out
		if err := cmd.Start(); err != nil {
			t.Fatal(err)
		}
		time.Sleep(1500 * time.Millisecond)
		// A detaching user closes the connection; crictl attach does not
		// stop on SIGTERM, so end it as a closed terminal would.
		_ = cmd.Process.Kill()
		_ = cmd.Wait()
		if !strings.Contains(out.String(), "tick") {
			t.Fatalf("attach output %q", out.String())
		}
		logFile := filepath.Join(e.logDir, "at", "main.log")
		if b, err := os.ReadFile(logFile); err != nil || !strings.Contains(string(b), "tick") {
			t.Fatalf("CRI log while attached: %v", err)
		}
	})

	t.Run("stdin", func(t *testing.T) {
		pcfg := e.podConfig("at")
		c, err := e.rt.CreateContainer(ctx, &runtimeapi.CreateContainerRequest{
			PodSandboxId: pod, SandboxConfig: pcfg,
			Config: &runtimeapi.ContainerConfig{
				Metadata: &runtimeapi.ContainerMetadata{Name: "reader"},
				Image:    &runtimeapi.ImageSpec{Image: busyboxImage},
				Command:  []string{"cat"}, Stdin: true, LogPath: "reader.log",
			},
		})
		if err != nil {
			t.Fatal(err)
		}
		if _, err := e.rt.StartContainer(ctx, &runtimeapi.StartContainerRequest{ContainerId: c.GetContainerId()}); err != nil {
			t.Fatal(err)
		}
		cmd := crictlCmd(t, e, "attach", "-i", c.GetContainerId())
		stdin, _ := cmd.StdinPipe()
		var out strings.Builder
		cmd.Stdout, cmd.Stderr = &out, &out
		if err := cmd.Start(); err != nil {
			t.Fatal(err)
		}
		fmt.Fprintln(stdin, "echoed by cat")
		waitFor(t, 10*time.Second, func() bool {
			b, _ := os.ReadFile(filepath.Join(e.logDir, "at", "reader.log"))
			return strings.Contains(string(b), "echoed by cat")
		})
		_ = cmd.Process.Kill()
		_ = cmd.Wait()

		// A container without stdin refuses an attach that asks for it.
		if _, err := e.rt.Attach(ctx, &runtimeapi.AttachRequest{ContainerId: ticker, Stdin: true, Stdout: true}); err == nil ||
			!strings.Contains(err.Error(), "InvalidArgument") {
			t.Fatalf("attach with stdin to a no-stdin container: %v", err)
		}
	})
}

func waitFor(t *testing.T, within time.Duration, cond func() bool) {
	t.Helper()
	deadline := time.Now().Add(within)
	for !cond() {
		if time.Now().After(deadline) {
			t.Fatalf("condition not met within %s", within)
		}
		time.Sleep(100 * time.Millisecond)
	}
}

// fdCount is the number of open descriptors of pid.
func fdCount(t *testing.T, pid int) int {
	t.Helper()
	entries, err := os.ReadDir(fmt.Sprintf("/proc/%d/fd", pid))
	if err != nil {
		t.Fatal(err)
	}
	return len(entries)
}

// goroutines reads noded's go_goroutines gauge from /metrics.
func goroutines(t *testing.T, metricsAddr string) int {
	t.Helper()
	r, err := http.Get("http://" + metricsAddr + "/metrics")
	if err != nil {
		t.Fatal(err)
	}
	defer r.Body.Close()
	sc := bufio.NewScanner(r.Body)
	for sc.Scan() {
		if v, ok := strings.CutPrefix(sc.Text(), "go_goroutines "); ok {
			var n int
			if _, err := fmt.Sscan(v, &n); err != nil {
				t.Fatalf("go_goroutines %q: %v", v, err)
			}
			return n
		}
	}
	t.Fatal("no go_goroutines in /metrics")
	return 0
}

// Streaming sessions whose clients go away early leave nothing behind:
// no process in the container, no descriptor in noded or the monitor,
// no goroutine in noded.
func TestStreamsLeaveNothingBehind(t *testing.T) {
	e, metricsAddr := newMetricsPodEnv(t)
	pod, ctr, _ := e.runPod(t, "leak", []string{"sleep", "3600"})
	monitor := procPPid(t, e.pausePID(t, pod))

	// session runs crictl exec of cat and kills the client once cat runs;
	// with tty, crictl runs on a terminal made by script, which is killed.
	session := func(tty bool) {
		cmd := crictlCmd(t, e, "exec", "-i", ctr, "cat")
		if tty {
			line := fmt.Sprintf("%s --runtime-endpoint unix://%s exec -it %s cat", cmd.Path, e.d.Socket, ctr)
			cmd = exec.Command("script", "-qfec", line, "/dev/null")
		}
		if _, err := cmd.StdinPipe(); err != nil { // held open: cat waits on it
			t.Fatal(err)
		}
		if err := cmd.Start(); err != nil {
			t.Fatal(err)
		}
		// The session is real: its process runs in the container.
		waitFor(t, 10*time.Second, func() bool { return execCount(t, e, ctr, "[c]at") == "1" })
		_ = cmd.Process.Kill()
		_ = cmd.Wait()
		waitFor(t, 10*time.Second, func() bool { return execCount(t, e, ctr, "[c]at") == "0" })
	}
	// Warm up, so that lazily made things (the streaming server's
	// connections pool, the monitor's helper) count in the baseline.
	session(false)
	nodedFds, monitorFds, routines := fdCount(t, e.d.Pid()), fdCount(t, monitor), goroutines(t, metricsAddr)

	const sessions = 40
	for i := range sessions {
		session(i%2 == 1)
	}
	// Slack of a few descriptors and goroutines: gRPC connections from
	// the checks themselves come and go.
	waitFor(t, 15*time.Second, func() bool {
		return fdCount(t, e.d.Pid()) <= nodedFds+2 && fdCount(t, monitor) <= monitorFds+1 &&
			goroutines(t, metricsAddr) <= routines+5
	})
	t.Logf("after %d abandoned sessions: noded fds %d (was %d), monitor fds %d (was %d), goroutines %d (was %d)",
		sessions, fdCount(t, e.d.Pid()), nodedFds, fdCount(t, monitor), monitorFds, goroutines(t, metricsAddr), routines)
}

// procPPid is the parent of pid.
func procPPid(t *testing.T, pid int) int {
	t.Helper()
	var ppid int
	if _, err := fmt.Sscan(procStatus(t, pid)["PPid"], &ppid); err != nil || ppid <= 1 {
		t.Fatalf("parent of %d: %q", pid, procStatus(t, pid)["PPid"])
	}
	return ppid
}
