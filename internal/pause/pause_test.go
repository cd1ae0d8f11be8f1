package pause

import (
	"bufio"
	"bytes"
	"context"
	"errors"
	"fmt"
	"os"
	"os/exec"
	"path/filepath"
	"strconv"
	"strings"
	"sync"
	"syscall"
	"testing"
	"time"
)

var (
	buildOnce sync.Once
	buildDir  string
	buildBin  string
	buildSkip string
	buildErr  error
)

func TestMain(m *testing.M) {
	code := m.Run()
	if buildDir != "" {
		os.RemoveAll(buildDir)
	}
	os.Exit(code)
}

// buildPause compiles pause.c the way the Makefile does, once per test
// binary, and returns the binary's path. It skips when gcc or a static libc
// is missing.
func buildPause(t *testing.T) string {
	t.Helper()
	buildOnce.Do(func() {
		gcc, err := exec.LookPath("gcc")
		if err != nil {
			buildSkip = "gcc not installed; pause.c cannot be built"
			return
		}
		if buildDir, buildErr = os.MkdirTemp("", "noded-pause-test-"); buildErr != nil {
			return
		}
		out := filepath.Join(buildDir, "noded-pause")
		b, err := exec.Command(gcc, "-Os", "-static", "-Wall", "-Werror", "-o", out, "pause.c").CombinedOutput()
		switch {
		case err == nil:
			buildBin = out
		case bytes.Contains(b, []byte("cannot find -lc")):
			buildSkip = "no static libc (libc6-dev) to build pause.c"
		default:
			buildErr = fmt.Errorf("gcc: %w\n%s", err, b)
		}
	})
	if buildSkip != "" {
		t.Skip(buildSkip)
	}
	if buildErr != nil {
		t.Fatal(buildErr)
	}
	return buildBin
}

func TestPauseVersion(t *testing.T) {
	bin := buildPause(t)
	out, err := exec.Command(bin, "-v").Output()
	if err != nil {
		t.Fatalf("pause -v: %v", err)
	}
	if !strings.HasPrefix(string(out), "noded-pause ") {
		t.Errorf("pause -v printed %q", out)
	}
}

func TestPauseSignalsExitZero(t *testing.T) {
	bin := buildPause(t)
	for _, sig := range []syscall.Signal{syscall.SIGTERM, syscall.SIGINT} {
		t.Run(sig.String(), func(t *testing.T) {
			cmd := exec.Command(bin)
			if err := cmd.Start(); err != nil {
				t.Fatal(err)
			}
			// Let it install its handlers: wait until it sleeps.
			waitState(t, cmd.Process.Pid, "S")
			if err := cmd.Process.Signal(sig); err != nil {
				t.Fatal(err)
			}
			done := make(chan error, 1)
			go func() { done <- cmd.Wait() }()
			select {
			case err := <-done:
				if err != nil {
					t.Errorf("pause exited with %v on %v, want status 0", err, sig)
				}
			case <-time.After(5 * time.Second):
				_ = cmd.Process.Kill()
				<-done //nolint:errcheck // only reaps the process: after the SIGKILL, Wait fails by design
				t.Fatalf("pause did not exit on %v", sig)
			}
		})
	}
}

// TestPauseConfinesItself checks that pause runs under its own seccomp
// filter without new privileges (noded relies on it: the built-in pause
// container gets no seccomp profile of its own). TestPauseReapsAsPID1 and
// TestPauseSignalsExitZero show that the filter allows what pause does.
func TestPauseConfinesItself(t *testing.T) {
	bin := buildPause(t)
	if _, ok := procStatus(t, os.Getpid())["Seccomp"]; !ok {
		t.Skip("kernel without seccomp")
	}
	st := procStatus(t, startSleeping(t, bin))
	if st["Seccomp"] != "2" || st["NoNewPrivs"] != "1" {
		t.Fatalf("pause runs with Seccomp %q NoNewPrivs %q, want 2 (filter) and 1", st["Seccomp"], st["NoNewPrivs"])
	}
}

// startSleeping runs pause until the test ends and returns its pid once
// it sleeps (its handlers and filter are in place).
func startSleeping(t *testing.T, bin string) int {
	t.Helper()
	cmd := exec.Command(bin)
	if err := cmd.Start(); err != nil {
		t.Fatal(err)
	}
	t.Cleanup(func() { _ = cmd.Process.Kill(); _ = cmd.Wait() })
	waitState(t, cmd.Process.Pid, "S")
	return cmd.Process.Pid
}

// TestPauseRSS measures the resident set of a running pause process. Most of
// it is the binary's file pages, shared between all pods; the private part
// (RssAnon) is what each sandbox really costs.
func TestPauseRSS(t *testing.T) {
	st := procStatus(t, startSleeping(t, buildPause(t)))
	rss, anon := kb(st["VmRSS"]), kb(st["RssAnon"])
	t.Logf("pause VmRSS=%d kB RssAnon=%d kB RssFile=%d kB", rss, anon, kb(st["RssFile"]))
	if rss == 0 || rss > 2048 {
		t.Errorf("pause VmRSS %d kB, want a tiny process (< 2 MiB)", rss)
	}
	if anon > 256 {
		t.Errorf("pause RssAnon %d kB, want < 256 kB", anon)
	}
}

// TestPauseReapsAsPID1 runs pause as PID 1 of a new PID namespace, orphans a
// process into that namespace and checks that pause reaps it.
func TestPauseReapsAsPID1(t *testing.T) {
	if os.Geteuid() != 0 {
		t.Skip("needs root for a PID namespace")
	}
	unshare, err1 := exec.LookPath("unshare")
	nsenter, err2 := exec.LookPath("nsenter")
	if err1 != nil || err2 != nil {
		t.Skip("unshare/nsenter (util-linux) not installed")
	}
	bin := buildPause(t)
	ctx, cancel := context.WithTimeout(context.Background(), 30*time.Second)
	defer cancel()

	outer := exec.CommandContext(ctx, unshare, "--pid", "--fork", "--kill-child", bin)
	if err := outer.Start(); err != nil {
		t.Fatal(err)
	}
	defer func() { _ = outer.Process.Kill(); _ = outer.Wait() }()

	// pause is the only child of unshare.
	var pausePID int
	deadline := time.Now().Add(5 * time.Second)
	for pausePID == 0 && time.Now().Before(deadline) {
		if kids := children(outer.Process.Pid); len(kids) == 1 {
			pausePID = kids[0]
		} else {
			time.Sleep(20 * time.Millisecond)
		}
	}
	if pausePID == 0 {
		t.Fatal("pause did not start under unshare")
	}
	waitState(t, pausePID, "S")
	if ns := nsPID(t, pausePID); ns != 1 {
		t.Fatalf("pause is PID %d in its namespace, want 1", ns)
	}

	// sh enters the namespace, starts sleep in the background and exits:
	// sleep is orphaned and adopted by the namespace's init, pause. sleep
	// gets no pipe of ours, so Run returns as soon as sh exits.
	cmd := exec.CommandContext(ctx, nsenter, "-t", strconv.Itoa(pausePID), "-p", "--",
		"sh", "-c", "sleep 1 </dev/null >/dev/null 2>&1 & exit 0")
	if err := cmd.Run(); err != nil {
		t.Fatalf("nsenter: %v", err)
	}
	if kids := children(pausePID); len(kids) != 1 {
		t.Fatalf("pause has children %v, want the adopted sleep", kids)
	}
	deadline = time.Now().Add(10 * time.Second)
	for len(children(pausePID)) != 0 {
		if time.Now().After(deadline) {
			t.Fatalf("pause did not reap its adopted child: children %v", children(pausePID))
		}
		time.Sleep(50 * time.Millisecond)
	}

	if err := syscall.Kill(pausePID, syscall.SIGTERM); err != nil {
		t.Fatal(err)
	}
	if err := outer.Wait(); err != nil {
		var ee *exec.ExitError
		if !errors.As(err, &ee) || ee.ExitCode() != 0 {
			t.Errorf("unshare/pause exited with %v, want 0", err)
		}
	}
}

func children(pid int) []int {
	b, err := os.ReadFile("/proc/" + strconv.Itoa(pid) + "/task/" + strconv.Itoa(pid) + "/children")
	if err != nil {
		return nil
	}
	var out []int
	for _, f := range strings.Fields(string(b)) {
		if n, err := strconv.Atoi(f); err == nil {
			out = append(out, n)
		}
	}
	return out
}

func procStatus(t *testing.T, pid int) map[string]string {
	t.Helper()
	f, err := os.Open("/proc/" + strconv.Itoa(pid) + "/status")
	if err != nil {
		t.Fatal(err)
	}
	defer f.Close()
	m := map[string]string{}
	sc := bufio.NewScanner(f)
	for sc.Scan() {
		k, v, ok := strings.Cut(sc.Text(), ":")
		if ok {
			m[k] = strings.TrimSpace(v)
		}
	}
	return m
}

func nsPID(t *testing.T, pid int) int {
	f := strings.Fields(procStatus(t, pid)["NSpid"])
	if len(f) == 0 {
		t.Fatal("no NSpid")
	}
	n, _ := strconv.Atoi(f[len(f)-1])
	return n
}

func kb(v string) int {
	n, _ := strconv.Atoi(strings.TrimSuffix(v, " kB"))
	return n
}

// waitState waits until the process runs pause (not the forked parent's
// image) and is in the given state (first letter of the State line), e.g.
// "S" once pause sleeps with its handlers installed.
func waitState(t *testing.T, pid int, state string) {
	t.Helper()
	deadline := time.Now().Add(5 * time.Second)
	for time.Now().Before(deadline) {
		st := procStatus(t, pid)
		if st["Name"] == "noded-pause" && strings.HasPrefix(st["State"], state) {
			return
		}
		time.Sleep(10 * time.Millisecond)
	}
	t.Fatalf("process %d never reached state %s", pid, state)
}
