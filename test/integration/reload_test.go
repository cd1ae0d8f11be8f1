//go:build integration

package integration

import (
	"context"
	"os"
	"path/filepath"
	"strings"
	"syscall"
	"testing"
	"time"

	runtimeapi "k8s.io/cri-api/pkg/apis/runtime/v1"

	"github.com/noded-dev/noded/test/testenv"
)

// SIGHUP reloads the configuration file without a restart (issue 15): the
// reloadable keys take effect, a restart-only key is named in a warning,
// a broken file is refused whole, and the running pod is not disturbed.
func TestReloadOnSIGHUP(t *testing.T) {
	e := newPodEnv(t)
	ctx := context.Background()
	pod, ctr, _ := e.runPod(t, "reload-a", []string{"sleep", "3600"})
	ctrPid := e.containerPid(t, ctr)
	nodedPid := e.d.Pid()
	conf := filepath.Join(e.d.Dir, "noded.toml")

	pinned := func(ref string) bool {
		t.Helper()
		st, err := e.img.ImageStatus(ctx, &runtimeapi.ImageStatusRequest{Image: &runtimeapi.ImageSpec{Image: ref}})
		if err != nil || st.GetImage() == nil {
			t.Fatalf("ImageStatus %s: %v %v", ref, st, err)
		}
		return st.GetImage().GetPinned()
	}
	// hup sends SIGHUP and waits for the reload's last log line (after
	// mark, the log's length before the signal).
	hup := func(t *testing.T, want string) string {
		t.Helper()
		mark := len(e.d.Log.String())
		if err := syscall.Kill(nodedPid, syscall.SIGHUP); err != nil {
			t.Fatal(err)
		}
		deadline := time.Now().Add(20 * time.Second)
		for {
			if after := e.d.Log.String()[mark:]; strings.Contains(after, want) {
				return after
			}
			if time.Now().After(deadline) {
				t.Fatalf("no %q in the log after SIGHUP:\n%s", want, e.d.Log.String()[mark:])
			}
			time.Sleep(20 * time.Millisecond)
		}
	}
	if pinned(busyboxImage) {
		t.Fatal("busybox is pinned before the reload")
	}
	if st, err := e.img.ImageStatus(ctx, &runtimeapi.ImageStatusRequest{Image: &runtimeapi.ImageSpec{Image: "registry.k8s.io/pause:3.9"}}); err != nil || st.GetImage() != nil {
		t.Fatalf("registry.k8s.io/pause:3.9 is there before any pod needs it: %v %v", st.GetImage(), err)
	}
	// A second network that sorts first: the reload's re-scan finds it.
	other := filepath.Join(e.d.CNIDir, "05-other.conflist")
	if err := os.WriteFile(other, []byte(testenv.BridgeConf("noded-it-other", "nitother0", "10.254.254.0/24", filepath.Join(e.d.Dir, "ipam-other"))), 0o644); err != nil {
		t.Fatal(err)
	}

	t.Run("applied", func(t *testing.T) {
		writeFile(t, conf, strings.Join([]string{
			`log-format = "json"`,
			`pinned-images = ["registry.k8s.io/e2e-test-images/*"]`,
			`pause-image = "registry.k8s.io/pause:3.9"`,
			`max-parallel-downloads = 5`,
			`pull-progress-timeout = "45s"`,
			// Restart-only: named, not applied.
			`stream-idle-timeout = "3m"`,
		}, "\n"))
		out := hup(t, "reloaded the configuration")
		for _, want := range []string{
			// Lines after the reload are JSON.
			`"msg":"reloaded the configuration`,
			`"applied":["log-format","pull-progress-timeout","max-parallel-downloads","pause-image","pinned-images"]`,
			`"cni_network":"noded-it-other"`,
			`take effect only at a restart`, `"keys":["stream-idle-timeout"]`,
		} {
			if !strings.Contains(out, want) {
				t.Errorf("no %s in the reload's log:\n%s", want, out)
			}
		}
		if !pinned(busyboxImage) {
			t.Error("busybox is not pinned after pinned-images named it")
		}
	})
	if err := os.Remove(other); err != nil {
		t.Fatal(err)
	}

	t.Run("new pods get the new pause image", func(t *testing.T) {
		pcfg := e.podConfig("reload-b")
		if err := os.MkdirAll(pcfg.LogDirectory, 0o755); err != nil {
			t.Fatal(err)
		}
		p, err := e.rt.RunPodSandbox(ctx, &runtimeapi.RunPodSandboxRequest{Config: pcfg})
		if err != nil {
			t.Fatalf("RunPodSandbox after the reload: %v", err)
		}
		// Only a pod that needs it pulls it: before the reload noded's
		// built-in pause image served every pod.
		if ps, err := e.rt.PodSandboxStatus(ctx, &runtimeapi.PodSandboxStatusRequest{PodSandboxId: p.GetPodSandboxId()}); err != nil ||
			ps.GetStatus().GetState() != runtimeapi.PodSandboxState_SANDBOX_READY {
			t.Fatalf("the new pod: %v %v", ps, err)
		}
		if !pinned("registry.k8s.io/pause:3.9") {
			t.Error("the new pause image is not pinned")
		}
	})

	t.Run("broken file refused whole", func(t *testing.T) {
		writeFile(t, conf, "pinned-images = [\"other/*\"]\nmax-parallel-downloads = 0x\n")
		hup(t, "does not load; nothing changed")
		if !pinned(busyboxImage) {
			t.Error("a refused reload changed pinned-images")
		}
	})

	t.Run("running pod undisturbed", func(t *testing.T) {
		if e.d.Pid() != nodedPid || e.d.Cmd.ProcessState != nil {
			t.Fatal("noded restarted")
		}
		st, err := e.rt.ContainerStatus(ctx, &runtimeapi.ContainerStatusRequest{ContainerId: ctr})
		if err != nil || st.GetStatus().GetState() != runtimeapi.ContainerState_CONTAINER_RUNNING {
			t.Fatalf("container after the reloads: %v %v", st.GetStatus().GetState(), err)
		}
		if got := e.containerPid(t, ctr); got != ctrPid {
			t.Errorf("container pid %d, was %d", got, ctrPid)
		}
		if r, err := e.exec(t, ctr, 10, "true"); err != nil || r.GetExitCode() != 0 {
			t.Errorf("exec after the reloads: %v %v", r, err)
		}
		ps, err := e.rt.PodSandboxStatus(ctx, &runtimeapi.PodSandboxStatusRequest{PodSandboxId: pod})
		if err != nil || ps.GetStatus().GetState() != runtimeapi.PodSandboxState_SANDBOX_READY {
			t.Errorf("pod after the reloads: %v %v", ps.GetStatus().GetState(), err)
		}
	})
}

func writeFile(t *testing.T, path, content string) {
	t.Helper()
	if err := os.WriteFile(path, []byte(content), 0o644); err != nil {
		t.Fatal(err)
	}
}
