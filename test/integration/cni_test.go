//go:build integration

package integration

import (
	"context"
	"encoding/json"
	"fmt"
	"io"
	"os"
	"os/exec"
	"path/filepath"
	"strconv"
	"strings"
	"syscall"
	"testing"
	"time"

	"google.golang.org/grpc/codes"
	"google.golang.org/grpc/status"
	runtimeapi "k8s.io/cri-api/pkg/apis/runtime/v1"
)

// TestMain lets this test binary serve as the CNI plugin "flaky" (see
// flakyPlugin) when it is run under that name.
func TestMain(m *testing.M) {
	if filepath.Base(os.Args[0]) == "flaky" && os.Getenv("CNI_COMMAND") != "" {
		flakyPlugin()
		return
	}
	os.Exit(m.Run())
}

// flakyPlugin is a chained CNI plugin that passes the previous result on,
// unless the file named by its config's "modeFile" says otherwise:
// "fail-add" / "fail-del" make that command fail with a CNI error,
// "hang-add" / "hang-del" make it hang with a child that holds its stdout
// open (the child's pid is appended to modeFile.pids), as a stuck plugin
// that delegated to another would.
func flakyPlugin() {
	var conf struct {
		CNIVersion string          `json:"cniVersion"`
		ModeFile   string          `json:"modeFile"`
		PrevResult json.RawMessage `json:"prevResult"`
	}
	in, _ := io.ReadAll(os.Stdin)
	_ = json.Unmarshal(in, &conf)
	cmd := strings.ToLower(os.Getenv("CNI_COMMAND"))
	mode := ""
	if b, err := os.ReadFile(conf.ModeFile); err == nil {
		mode = strings.TrimSpace(string(b))
	}
	switch mode {
	case "fail-" + cmd:
		fmt.Printf(`{"cniVersion":%q,"code":999,"msg":"flaky: injected %s failure"}`, conf.CNIVersion, cmd)
		os.Exit(1)
	case "hang-" + cmd:
		child := exec.Command("sleep", "3600")
		child.Stdout = os.Stdout
		if err := child.Start(); err == nil {
			if f, err := os.OpenFile(conf.ModeFile+".pids", os.O_APPEND|os.O_CREATE|os.O_WRONLY, 0o644); err == nil {
				fmt.Fprintln(f, child.Process.Pid)
				f.Close()
			}
		}
		time.Sleep(time.Hour)
	}
	switch cmd {
	case "add":
		os.Stdout.Write(conf.PrevResult)
	case "version":
		fmt.Print(`{"cniVersion":"1.0.0","supportedVersions":["0.3.0","0.3.1","0.4.0","1.0.0","1.1.0"]}`)
	}
}

// TestFailingAndHangingCNI runs pods through a network whose last plugin
// fails or hangs, in ADD and in DEL: the call fails with the plugin's
// error, or with DeadlineExceeded when the kubelet's deadline passes (the
// plugin and the child it left are killed), the pod's network and
// everything else it had made are given back, and once the plugin works
// again the kubelet's retry succeeds.
func TestFailingAndHangingCNI(t *testing.T) {
	self, err := os.Executable()
	if err != nil {
		t.Fatal(err)
	}
	binDir := t.TempDir()
	if err := os.Symlink(self, filepath.Join(binDir, "flaky")); err != nil {
		t.Fatal(err)
	}
	e := newPodEnv(t, "--cni-plugin-dirs", binDir+",/usr/lib/cni,/opt/cni/bin")
	modeFile := filepath.Join(e.d.Dir, "flaky-mode")
	confPath := filepath.Join(e.d.Dir, "cni", "10-it.conflist")
	conf, err := os.ReadFile(confPath)
	if err != nil {
		t.Fatal(err)
	}
	withFlaky := strings.Replace(string(conf), `]}`, fmt.Sprintf(`,
{"type":"flaky","modeFile":%q}]}`, modeFile), 1)
	if err := os.WriteFile(confPath, []byte(withFlaky), 0o644); err != nil {
		t.Fatal(err)
	}
	setMode := func(t *testing.T, mode string) {
		t.Helper()
		if err := os.WriteFile(modeFile, []byte(mode), 0o644); err != nil {
			t.Fatal(err)
		}
	}
	setMode(t, "")
	baseline := e.baseline(t)
	ctx := context.Background()
	stuckChildrenGone := func(t *testing.T) {
		t.Helper()
		b, _ := os.ReadFile(modeFile + ".pids")
		pids := strings.Fields(string(b))
		if len(pids) == 0 {
			t.Fatal("the plugin never hung")
		}
		waitFor(t, 10*time.Second, func() bool {
			for _, p := range pids {
				pid, _ := strconv.Atoi(p)
				if syscall.Kill(pid, 0) == nil {
					return false
				}
			}
			return true
		})
		_ = os.Remove(modeFile + ".pids")
	}
	holdsNothing := func(t *testing.T) {
		t.Helper()
		var h heldState
		deadline := time.Now().Add(15 * time.Second)
		for h = e.held(t); !equalHeld(h, baseline) && time.Now().Before(deadline); h = e.held(t) {
			time.Sleep(200 * time.Millisecond)
		}
		if !equalHeld(h, baseline) {
			t.Fatalf("the node holds %+v; with no pod: %+v\n%s", h, baseline, e.d.Log)
		}
	}
	run := func(ctx context.Context, name string) (string, error) {
		pcfg := e.podConfig(name)
		if err := os.MkdirAll(pcfg.GetLogDirectory(), 0o755); err != nil {
			t.Fatal(err)
		}
		resp, err := e.rt.RunPodSandbox(ctx, &runtimeapi.RunPodSandboxRequest{Config: pcfg})
		return resp.GetPodSandboxId(), err
	}
	const deadline = 3 * time.Second
	withDeadline := func(f func(ctx context.Context) error) (time.Duration, error) {
		dctx, cancel := context.WithTimeout(ctx, deadline)
		defer cancel()
		t0 := time.Now()
		err := f(dctx)
		return time.Since(t0), err
	}

	// faulted checks how call ended with the plugin in mode.
	faulted := func(t *testing.T, call, mode string, took time.Duration, err error) {
		t.Helper()
		fault, cmd, _ := strings.Cut(mode, "-")
		if fault == "fail" {
			if err == nil || !strings.Contains(err.Error(), "injected "+cmd+" failure") {
				t.Fatalf("%s through a failing plugin: %v", call, err)
			}
			return
		}
		if status.Code(err) != codes.DeadlineExceeded {
			t.Fatalf("%s through a hanging plugin: %v", call, err)
		}
		t.Logf("%s gave up after %s (deadline %s)", call, took.Round(time.Millisecond), deadline)
		stuckChildrenGone(t)
	}

	for _, tc := range []struct{ name, mode string }{{"ADD fails", "fail-add"}, {"ADD hangs", "hang-add"}} {
		t.Run(tc.name, func(t *testing.T) {
			e.removed = false
			setMode(t, tc.mode)
			took, err := withDeadline(func(ctx context.Context) error { _, err := run(ctx, "cni-add"); return err })
			faulted(t, "RunPodSandbox", tc.mode, took, err)
			if pods, err := e.rt.ListPodSandbox(ctx, &runtimeapi.ListPodSandboxRequest{}); err != nil || len(pods.GetItems()) != 0 {
				t.Fatalf("pods after a failed RunPodSandbox: %v %v", pods.GetItems(), err)
			}
			holdsNothing(t)
			setMode(t, "")
			if _, err := run(ctx, "cni-add"); err != nil {
				t.Fatalf("the retry once the plugin works: %v", err)
			}
			e.removeAllLeaving(t, baseline)
		})
	}
	for _, tc := range []struct{ name, mode string }{{"DEL fails", "fail-del"}, {"DEL hangs", "hang-del"}} {
		t.Run(tc.name, func(t *testing.T) {
			e.removed = false
			pod, err := run(ctx, "cni-del")
			if err != nil {
				t.Fatal(err)
			}
			setMode(t, tc.mode)
			took, err := withDeadline(func(ctx context.Context) error {
				_, err := e.rt.StopPodSandbox(ctx, &runtimeapi.StopPodSandboxRequest{PodSandboxId: pod})
				return err
			})
			faulted(t, "StopPodSandbox", tc.mode, took, err)
			setMode(t, "")
			if _, err := e.rt.StopPodSandbox(ctx, &runtimeapi.StopPodSandboxRequest{PodSandboxId: pod}); err != nil {
				t.Fatalf("the retried stop once the plugin works: %v", err)
			}
			h := e.held(t)
			h.StorageContainers = baseline.StorageContainers
			if !equalHeld(h, baseline) {
				t.Fatalf("the stopped pod holds %+v; with no pod: %+v", h, baseline)
			}
			e.removeAllLeaving(t, baseline)
		})
	}
}
