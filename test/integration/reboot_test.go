//go:build integration

package integration

import (
	"context"
	"os"
	"os/exec"
	"path/filepath"
	"sort"
	"strconv"
	"strings"
	"syscall"
	"testing"
	"time"

	"golang.org/x/sys/unix"
	runtimeapi "k8s.io/cri-api/pkg/apis/runtime/v1"

	"github.com/noded-dev/noded/internal/sandbox"
)

// An unclean reboot (issue 15): the power goes while pods run. Simulated
// as the kernel would leave it: every process noded started is killed
// (SIGKILL, noded first), every mount below noded's directories is gone,
// the run directories (tmpfs) come back empty, and a layer file is
// truncated, as a write cut short. The next noded checks the image store
// and removes the damaged image, records every pod not ready and every
// container exited (255, "node rebooted"), releases the pods' IP
// addresses, and serves: the kubelet's next moves (remove, pull, run)
// work and the node is left as clean as before.
func TestUncleanReboot(t *testing.T) {
	e := newPodEnv(t)
	ctx := context.Background()
	baseline := e.baseline(t)
	// A crash of noded alone (same boot) leaves nothing half-written on
	// disk: the restart does not read the whole store.
	e.d.Kill(t)
	e.d = e.d.Restart(t)
	e.rt, e.img = e.d.Runtime(t), e.d.Images(t)
	if log := e.d.Log.String(); strings.Contains(log, "checking the image store") || strings.Contains(log, "the node rebooted") {
		t.Errorf("a restart after a crash (no reboot) checked the store or ended the pods:\n%s", log)
	}
	podA, ctrA, _ := e.runPod(t, "reboot-a", []string{"sleep", "3600"})
	podB, ctrB, _ := e.runPod(t, "reboot-b", []string{"true"})
	e.waitExited(t, ctrB, 30*time.Second)
	if h := e.held(t); h.IPs != baseline.IPs+2 {
		t.Fatalf("two pods hold %d addresses, %d before", h.IPs, baseline.IPs)
	}

	powerLoss(t, e)
	layer := truncateLayerFile(t, e.d.Dir, "bin/busybox")

	// `noded check` finds the damage offline, and only reports it.
	dir := e.d.Dir
	check := exec.Command(nodedBin(t), "check", "--config", filepath.Join(dir, "noded.toml"), "--config-dir", filepath.Join(dir, "noded.toml.d"),
		"--root", filepath.Join(dir, "root"), "--runroot", filepath.Join(dir, "runroot"))
	if out, err := check.CombinedOutput(); err == nil || !strings.Contains(string(out), "damaged layer "+layer) {
		t.Errorf("noded check on the damaged store: %v\n%s", err, out)
	}

	e.d = e.d.Restart(t)
	e.rt, e.img = e.d.Runtime(t), e.d.Images(t)
	log := e.d.Log.String()
	for _, want := range []string{"did not stop cleanly and the node rebooted", "the node rebooted since", "image store: damaged layer " + layer, "image store checked"} {
		if !strings.Contains(log, want) {
			t.Errorf("no %q in the log of the start after the reboot", want)
		}
	}

	t.Run("pods not ready, containers ended by the reboot", func(t *testing.T) {
		for _, pod := range []string{podA, podB} {
			st, err := e.rt.PodSandboxStatus(ctx, &runtimeapi.PodSandboxStatusRequest{PodSandboxId: pod})
			if err != nil || st.GetStatus().GetState() != runtimeapi.PodSandboxState_SANDBOX_NOTREADY {
				t.Errorf("pod %s after the reboot: %v %v", pod, st.GetStatus().GetState(), err)
			}
		}
		st, err := e.rt.ContainerStatus(ctx, &runtimeapi.ContainerStatusRequest{ContainerId: ctrA})
		if err != nil {
			t.Fatal(err)
		}
		if s := st.GetStatus(); s.GetState() != runtimeapi.ContainerState_CONTAINER_EXITED || s.GetExitCode() != 255 || s.GetReason() != sandbox.RebootReason {
			t.Errorf("the running container after the reboot: %v, exit %d, reason %q", s.GetState(), s.GetExitCode(), s.GetReason())
		}
		// The one that had exited keeps its real exit.
		st, err = e.rt.ContainerStatus(ctx, &runtimeapi.ContainerStatusRequest{ContainerId: ctrB})
		if err != nil || st.GetStatus().GetExitCode() != 0 || st.GetStatus().GetReason() != "Completed" {
			t.Errorf("the exited container after the reboot: %v %v", st.GetStatus(), err)
		}
		if h := e.held(t); h.IPs != baseline.IPs {
			t.Errorf("after the reboot the pods still hold %d addresses (%d before them)", h.IPs, baseline.IPs)
		}
	})

	t.Run("damaged image removed", func(t *testing.T) {
		st, err := e.img.ImageStatus(ctx, &runtimeapi.ImageStatusRequest{Image: &runtimeapi.ImageSpec{Image: busyboxImage}})
		if err != nil || st.GetImage() != nil {
			t.Errorf("the image on the truncated layer is still listed: %v %v", st.GetImage(), err)
		}
	})

	t.Run("the kubelet's next moves work", func(t *testing.T) {
		if _, err := e.img.PullImage(ctx, &runtimeapi.PullImageRequest{Image: &runtimeapi.ImageSpec{Image: busyboxImage}}); err != nil {
			t.Fatalf("pulling the removed image again: %v", err)
		}
		_, ctr, ip := e.runPod(t, "reboot-c", []string{"sleep", "3600"})
		if ip == "" {
			t.Error("the new pod has no IP")
		}
		if r, err := e.exec(t, ctr, 10, "cat", "/bin/busybox"); err != nil || r.GetExitCode() != 0 {
			t.Errorf("the re-pulled busybox: %v %v", r.GetExitCode(), err)
		}
		e.removeAllLeaving(t, baseline)
	})
}

// powerLoss leaves the node as a power cut and a boot would: noded and
// every process it started killed, every mount below its directory gone,
// the run directories (tmpfs) empty.
func powerLoss(t *testing.T, e *podEnv) {
	t.Helper()
	e.d.Kill(t)
	dir := e.d.Dir
	for range 50 {
		pids := startedBy(dir)
		if len(pids) == 0 {
			break
		}
		for _, p := range pids {
			_ = syscall.Kill(p, syscall.SIGKILL)
		}
		time.Sleep(100 * time.Millisecond)
	}
	if pids := startedBy(dir); len(pids) > 0 {
		t.Fatalf("processes survived SIGKILL: %v", pids)
	}
	var mounts []string
	b, err := os.ReadFile("/proc/self/mountinfo")
	if err != nil {
		t.Fatal(err)
	}
	for _, l := range strings.Split(string(b), "\n") {
		if f := strings.Fields(l); len(f) > 4 && strings.HasPrefix(f[4], dir+"/") {
			mounts = append(mounts, f[4])
		}
	}
	sort.Slice(mounts, func(i, j int) bool { return len(mounts[i]) > len(mounts[j]) })
	for _, m := range mounts {
		if err := unix.Unmount(m, unix.MNT_DETACH); err != nil && err != unix.EINVAL && err != unix.ENOENT {
			t.Fatalf("unmounting %s: %v", m, err)
		}
	}
	for _, tmpfs := range []string{"run", "runroot"} {
		if err := os.RemoveAll(filepath.Join(dir, tmpfs)); err != nil {
			t.Fatal(err)
		}
	}
}

// startedBy are the processes of a noded on dir: its monitors (their
// command line names dir) and everything in the test's pod cgroups.
func startedBy(dir string) []int {
	seen := map[int]bool{}
	procs, _ := filepath.Glob("/proc/[0-9]*/cmdline")
	for _, p := range procs {
		b, _ := os.ReadFile(p)
		if strings.Contains(string(b), dir+"/") {
			if pid, err := strconv.Atoi(filepath.Base(filepath.Dir(p))); err == nil && pid != os.Getpid() {
				seen[pid] = true
			}
		}
	}
	_ = filepath.WalkDir("/sys/fs/cgroup/memory/"+itCgroup, func(p string, d os.DirEntry, err error) error {
		if err == nil && d.Name() == "cgroup.procs" {
			b, _ := os.ReadFile(p)
			for _, f := range strings.Fields(string(b)) {
				if pid, err := strconv.Atoi(f); err == nil {
					seen[pid] = true
				}
			}
		}
		return nil
	})
	var out []int
	for p := range seen {
		out = append(out, p)
	}
	return out
}

// truncateLayerFile cuts the file rel of the layer holding it in half, as
// a write the power cut short; it returns the layer's ID.
func truncateLayerFile(t *testing.T, dir, rel string) string {
	t.Helper()
	files, _ := filepath.Glob(filepath.Join(dir, "root", "overlay", "*", "diff", rel))
	if len(files) == 0 {
		t.Fatalf("no layer holds %s", rel)
	}
	fi, err := os.Stat(files[0])
	if err != nil {
		t.Fatal(err)
	}
	if err := os.Truncate(files[0], fi.Size()/2); err != nil {
		t.Fatal(err)
	}
	return filepath.Base(filepath.Dir(filepath.Dir(filepath.Dir(files[0]))))
}
