//go:build integration

package integration

import (
	"bytes"
	"context"
	"encoding/json"
	"fmt"
	"math/rand/v2"
	"os"
	"path/filepath"
	"reflect"
	"strings"
	"sync"
	"sync/atomic"
	"syscall"
	"testing"
	"time"

	"google.golang.org/grpc/codes"
	"google.golang.org/grpc/status"
	runtimeapi "k8s.io/cri-api/pkg/apis/runtime/v1"

	"github.com/noded-dev/noded/test/testenv"
)

// TestKilledCreatesLeaveNothing kills noded (its failpoints build) with
// SIGKILL right after each step of RunPodSandbox and CreateContainer,
// restarts it on the same directories, replays the kubelet's retry (same
// name, uid and attempt) and removes everything: the retry succeeds, and
// no mount, network namespace, monitor, IP reservation, process in a pod
// cgroup or storage container is left.
func TestKilledCreatesLeaveNothing(t *testing.T) {
	bin := failpointsBin(t)
	e := newPodEnv(t)
	e.killEachCreateStep(t, bin, e.baseline(t), []createStep{
		{"pending", false}, {"pod-files", false}, {"netns", false}, {"monitor", false},
		{"pause-bundle", false}, {"pause", false}, {"cni", false}, {"nri-run-pod", false}, {"record", false},
		{"container-pending", true}, {"container-rootfs", true}, {"container-nri", true}, {"container-create", true},
	}, createKills{name: "crash", container: sleeperRequest})
}

// createStep is a step of RunPodSandbox (container false) or of a
// CreateContainer in a running pod (container true) to kill noded after.
type createStep struct {
	step      string
	container bool
}

// createKills is what a killEachCreateStep run varies.
type createKills struct {
	name string // prefix of the pods' names
	// pod edits each pod's config (nil: podConfig's as it is).
	pod func(pcfg *runtimeapi.PodSandboxConfig)
	// container is the CreateContainer request made in the pod.
	container func(pod string, pcfg *runtimeapi.PodSandboxConfig) *runtimeapi.CreateContainerRequest
	// check inspects the retried pod or started container (nil: nothing).
	check func(t *testing.T, id string, container bool)
}

// killEachCreateStep kills noded (bin, its failpoints build) after each
// step, restarts it on the same directories, replays the kubelet's retry
// (same name, uid and attempt), starts a retried container, and removes
// everything: the retry succeeds and the host holds what it held at
// baseline. A kill after the pod's record was written ("record") leaves a
// whole pod that is adopted, so its retry is AlreadyExists naming it.
func (e *podEnv) killEachCreateStep(t *testing.T, bin string, baseline heldState, steps []createStep, k createKills) {
	pt := t // daemons started in a subtest must outlive it
	for i, tc := range steps {
		t.Run(tc.step, func(t *testing.T) {
			ctx := context.Background()
			e.removed = false // there are pods to remove at cleanup again
			pcfg := e.podConfig(k.name + string(rune('a'+i)))
			if k.pod != nil {
				k.pod(pcfg)
			}
			if err := os.MkdirAll(pcfg.GetLogDirectory(), 0o755); err != nil {
				t.Fatal(err)
			}
			var pod string
			if tc.container {
				resp, err := e.rt.RunPodSandbox(ctx, &runtimeapi.RunPodSandboxRequest{Config: pcfg})
				if err != nil {
					t.Fatal(err)
				}
				pod = resp.GetPodSandboxId()
			}
			create := func(rt runtimeapi.RuntimeServiceClient) (string, error) {
				if !tc.container {
					resp, err := rt.RunPodSandbox(ctx, &runtimeapi.RunPodSandboxRequest{Config: pcfg})
					return resp.GetPodSandboxId(), err
				}
				resp, err := rt.CreateContainer(ctx, k.container(pod, pcfg))
				return resp.GetContainerId(), err
			}

			e.killedAt(t, pt, bin, tc.step, func(rt runtimeapi.RuntimeServiceClient) error {
				_, err := create(rt)
				return err
			})
			id, err := create(e.rt)
			switch {
			case tc.step == "record":
				if status.Code(err) != codes.AlreadyExists {
					t.Fatalf("retry after a kill past the record: %v", err)
				}
				pods, lerr := e.rt.ListPodSandbox(ctx, &runtimeapi.ListPodSandboxRequest{Filter: &runtimeapi.PodSandboxFilter{
					LabelSelector: map[string]string{"test": "pods"}}})
				if lerr != nil || len(pods.GetItems()) != 1 || pods.GetItems()[0].GetState() != runtimeapi.PodSandboxState_SANDBOX_READY ||
					!strings.Contains(err.Error(), pods.GetItems()[0].GetId()) {
					t.Fatalf("adopted pod: %v %v (retry: %v)", pods, lerr, err)
				}
			case err != nil:
				t.Fatalf("retry after a kill at %s: %v\n%s", tc.step, err, e.d.Log)
			default:
				if tc.container {
					if _, err := e.rt.StartContainer(ctx, &runtimeapi.StartContainerRequest{ContainerId: id}); err != nil {
						t.Fatalf("starting the retried container: %v", err)
					}
				}
				if k.check != nil {
					k.check(t, id, tc.container)
				}
			}
			e.removeAllLeaving(t, baseline)
		})
	}
}

// failpointsBin is noded built with its failpoints (make noded-failpoints).
func failpointsBin(t *testing.T) string {
	t.Helper()
	bin := filepath.Join(repoRoot(), "bin", "noded-failpoints")
	if _, err := os.Stat(bin); err != nil {
		t.Skipf("%s not built (make noded-failpoints): %v", bin, err)
	}
	return bin
}

// killedAt stops the daemon, runs op against a noded (bin) that SIGKILLs
// itself right after step, and restarts the daemon on the same
// directories (under pt: daemons started in a subtest must outlive it).
// op must fail: the daemon died under it.
func (e *podEnv) killedAt(t, pt *testing.T, bin, step string, op func(runtimeapi.RuntimeServiceClient) error) {
	t.Helper()
	e.d = killedAt(t, pt, e.d, bin, step, func(d *testenv.Daemon) error { return op(d.Runtime()) })
	e.rt = e.d.Runtime(t)
}

// killedAt is podEnv.killedAt for any daemon; it returns the restarted
// one.
func killedAt(t, pt *testing.T, d *Daemon, bin, step string, op func(*testenv.Daemon) error) *Daemon {
	t.Helper()
	if err := d.Stop(); err != nil {
		t.Fatal(err)
	}
	fp, err := testenv.Start(testenv.Options{Dir: d.Dir, Args: d.Opts.Args, Bin: bin, Env: []string{"NODED_FAILPOINT=kill@" + step}})
	if err != nil {
		t.Fatal(err)
	}
	if err := op(fp); err == nil {
		fp.Kill()
		t.Fatalf("the call survived its failpoint %s", step)
	}
	if err := fp.Wait(10 * time.Second); err == nil || !strings.Contains(err.Error(), "killed") {
		fp.Kill()
		t.Fatalf("noded after failpoint %s: %v\n%s", step, err, fp.Log)
	}
	return d.Restart(pt)
}

// TestKilledPullsAndRemovalsLeaveNothing kills noded right after each
// step of PullImage and RemoveImage (after the first layer is unpacked
// into its staging directory, after it is committed, the image, its names;
// after the removal), restarts it and replays the kubelet's retry:
// the retry succeeds, and the store holds no layer that no image uses and
// no temporary download.
func TestKilledPullsAndRemovalsLeaveNothing(t *testing.T) {
	bin := failpointsBin(t)
	reg, _, args := imageRegistry(t)
	d := StartDaemon(t, DaemonOptions{Args: args})
	pt := t
	ctx := context.Background()
	ref := reg.Ref("it/app:1")
	pull := func(ic runtimeapi.ImageServiceClient) error {
		_, err := ic.PullImage(ctx, &runtimeapi.PullImageRequest{Image: &runtimeapi.ImageSpec{Image: ref}})
		return err
	}
	remove := func(ic runtimeapi.ImageServiceClient) error {
		_, err := ic.RemoveImage(ctx, &runtimeapi.RemoveImageRequest{Image: &runtimeapi.ImageSpec{Image: ref}})
		return err
	}
	for _, tc := range []struct {
		step    string
		op      func(runtimeapi.ImageServiceClient) error
		present bool // the image is there after the retry
	}{
		{"pull-staged", pull, true}, {"pull-layer", pull, true}, {"pull-image", pull, true}, {"pull-record", pull, true},
		{"remove-image", remove, false},
	} {
		t.Run(tc.step, func(t *testing.T) {
			if !tc.present {
				if err := pull(d.Images(t)); err != nil {
					t.Fatal(err)
				}
			}
			d = killedAt(t, pt, d, bin, tc.step, func(fp *testenv.Daemon) error { return tc.op(fp.Images()) })
			if orphans := orphanLayers(t, d.Dir); len(orphans) > 0 {
				t.Fatalf("after the restart, layers no image uses: %v", orphans)
			}
			if err := tc.op(d.Images(t)); err != nil {
				t.Fatalf("retry after a kill at %s: %v\n%s", tc.step, err, d.Log)
			}
			st, err := d.Images(t).ImageStatus(ctx, &runtimeapi.ImageStatusRequest{Image: &runtimeapi.ImageSpec{Image: ref}})
			if err != nil || (st.GetImage() != nil) != tc.present {
				t.Fatalf("image after the retry: %v %v, want present=%v", st.GetImage(), err, tc.present)
			}
			if orphans := orphanLayers(t, d.Dir); len(orphans) > 0 {
				t.Fatalf("layers no image uses: %v", orphans)
			}
			if tmp, _ := os.ReadDir(filepath.Join(d.Dir, "root", "noded-tmp", "pull")); len(tmp) > 0 {
				t.Fatalf("temporary downloads left: %v", tmp)
			}
			if staged, _ := os.ReadDir(filepath.Join(d.Dir, "root", "overlay", "staging")); len(staged) > 0 {
				t.Fatalf("staged layers left: %v", staged)
			}
			if err := remove(d.Images(t)); err != nil {
				t.Fatal(err)
			}
		})
	}
}

// orphanLayers lists the layers of the store under dir that no image and
// no container has in its chain (containers/storage's own files).
func orphanLayers(t *testing.T, dir string) []string {
	t.Helper()
	read := func(name string, v any) {
		b, err := os.ReadFile(filepath.Join(dir, "root", name))
		if os.IsNotExist(err) {
			return
		}
		if err == nil {
			err = json.Unmarshal(b, v)
		}
		if err != nil {
			t.Fatalf("%s: %v", name, err)
		}
	}
	var layers []struct{ ID, Parent string }
	var images, ctrs []struct{ Layer string }
	read("overlay-layers/layers.json", &layers)
	read("overlay-images/images.json", &images)
	read("overlay-containers/containers.json", &ctrs)
	parent := map[string]string{}
	for _, l := range layers {
		parent[l.ID] = l.Parent
	}
	used := map[string]bool{}
	for _, top := range append(images, ctrs...) {
		for id := top.Layer; id != "" && !used[id]; id = parent[id] {
			used[id] = true
		}
	}
	var out []string
	for _, l := range layers {
		if !used[l.ID] {
			out = append(out, l.ID)
		}
	}
	return out
}

// TestKilledOperationsLeaveNothing kills noded right after each step of
// StartContainer, StopContainer, StopPodSandbox, RemoveContainer and
// RemovePodSandbox, restarts it and replays the kubelet's retry: the retry
// succeeds (a start the kill cut short is reported running: the kubelet
// does not start a running container again), the object is in the state
// the call promised, and once everything is removed nothing is left.
func TestKilledOperationsLeaveNothing(t *testing.T) {
	bin := failpointsBin(t)
	e := newPodEnv(t)
	baseline := e.baseline(t)
	pt := t
	ctx := context.Background()
	type call func(rt runtimeapi.RuntimeServiceClient, pod, ctr string) error
	start := func(rt runtimeapi.RuntimeServiceClient, _, ctr string) error {
		_, err := rt.StartContainer(ctx, &runtimeapi.StartContainerRequest{ContainerId: ctr})
		return err
	}
	stopCtr := func(rt runtimeapi.RuntimeServiceClient, _, ctr string) error {
		_, err := rt.StopContainer(ctx, &runtimeapi.StopContainerRequest{ContainerId: ctr})
		return err
	}
	removeCtr := func(rt runtimeapi.RuntimeServiceClient, _, ctr string) error {
		_, err := rt.RemoveContainer(ctx, &runtimeapi.RemoveContainerRequest{ContainerId: ctr})
		return err
	}
	stopPod := func(rt runtimeapi.RuntimeServiceClient, pod, _ string) error {
		_, err := rt.StopPodSandbox(ctx, &runtimeapi.StopPodSandboxRequest{PodSandboxId: pod})
		return err
	}
	removePod := func(rt runtimeapi.RuntimeServiceClient, pod, _ string) error {
		_, err := rt.RemovePodSandbox(ctx, &runtimeapi.RemovePodSandboxRequest{PodSandboxId: pod})
		return err
	}
	// After the retry: the container's state (-1: gone), and whether the
	// pod still holds its processes, mounts and network.
	steps := []struct {
		step    string
		created bool // the container is created, not started, before the call
		op      call
		want    runtimeapi.ContainerState
		podHeld bool
	}{
		{"start-monitor", true, start, runtimeapi.ContainerState_CONTAINER_RUNNING, true},
		{"start-record", true, start, runtimeapi.ContainerState_CONTAINER_RUNNING, true},
		{"stop-kill", false, stopCtr, runtimeapi.ContainerState_CONTAINER_EXITED, true},
		{"stop-record", false, stopCtr, runtimeapi.ContainerState_CONTAINER_EXITED, true},
		{"remove-container-delete", false, removeCtr, -1, true},
		{"remove-container-rootfs", false, removeCtr, -1, true},
		{"remove-container-bundle", false, removeCtr, -1, true},
		{"remove-container-record", false, removeCtr, -1, true},
		{"stop-containers", false, stopPod, runtimeapi.ContainerState_CONTAINER_EXITED, false},
		{"stop-pause", false, stopPod, runtimeapi.ContainerState_CONTAINER_EXITED, false},
		{"stop-network", false, stopPod, runtimeapi.ContainerState_CONTAINER_EXITED, false},
		{"stop-netns", false, stopPod, runtimeapi.ContainerState_CONTAINER_EXITED, false},
		{"stop-release", false, stopPod, runtimeapi.ContainerState_CONTAINER_EXITED, false},
		{"stop-pod-record", false, stopPod, runtimeapi.ContainerState_CONTAINER_EXITED, false},
		{"remove-containers", false, removePod, -1, false},
		{"remove-pause", false, removePod, -1, false},
		{"remove-monitor", false, removePod, -1, false},
		{"remove-pause-rootfs", false, removePod, -1, false},
		{"remove-files", false, removePod, -1, false},
		{"remove-pod-record", false, removePod, -1, false},
	}
	for i, tc := range steps {
		t.Run(tc.step, func(t *testing.T) {
			e.removed = false
			name := fmt.Sprintf("op%d", i)
			pcfg := e.podConfig(name)
			if err := os.MkdirAll(pcfg.GetLogDirectory(), 0o755); err != nil {
				t.Fatal(err)
			}
			resp, err := e.rt.RunPodSandbox(ctx, &runtimeapi.RunPodSandboxRequest{Config: pcfg})
			if err != nil {
				t.Fatal(err)
			}
			pod := resp.GetPodSandboxId()
			c, err := e.rt.CreateContainer(ctx, sleeperRequest(pod, pcfg))
			if err != nil {
				t.Fatal(err)
			}
			ctr := c.GetContainerId()
			if !tc.created {
				if err := start(e.rt, pod, ctr); err != nil {
					t.Fatal(err)
				}
			}
			e.killedAt(t, pt, bin, tc.step, func(rt runtimeapi.RuntimeServiceClient) error { return tc.op(rt, pod, ctr) })

			err = tc.op(e.rt, pod, ctr)
			if tc.created && status.Code(err) == codes.FailedPrecondition {
				err = nil // started before the kill: the retry finds it running
			}
			if err != nil {
				t.Fatalf("retry after a kill at %s: %v\n%s", tc.step, err, e.d.Log)
			}
			st, err := e.rt.ContainerStatus(ctx, &runtimeapi.ContainerStatusRequest{ContainerId: ctr})
			switch {
			case tc.want == -1:
				if status.Code(err) != codes.NotFound {
					t.Fatalf("the removed container: %v %v", st.GetStatus(), err)
				}
			case err != nil || st.GetStatus().GetState() != tc.want:
				t.Fatalf("container after the retry: %v %v, want %v", st.GetStatus(), err, tc.want)
			}
			if tc.want == runtimeapi.ContainerState_CONTAINER_RUNNING {
				if r, err := e.exec(t, ctr, 10, "true"); err != nil || r.GetExitCode() != 0 {
					t.Fatalf("exec in the started container: %v %v", r, err)
				}
			}
			if !tc.podHeld {
				h := e.held(t)
				h.StorageContainers = baseline.StorageContainers
				if !equalHeld(h, baseline) {
					t.Fatalf("the stopped or removed pod holds %+v; with no pod: %+v", h, baseline)
				}
			}
			e.removeAllLeaving(t, baseline)
		})
	}
}

// baseline is what the node holds with no pod, once it has run one (the
// storage driver keeps mounts of its own).
func (e *podEnv) baseline(t *testing.T) heldState {
	t.Helper()
	e.runPod(t, "baseline", []string{"true"})
	e.removeAll(t)
	return e.held(t)
}

// removeAllLeaving removes every pod and fails unless the node then holds
// what it held at baseline.
func (e *podEnv) removeAllLeaving(t *testing.T, baseline heldState) {
	t.Helper()
	e.removed = false
	e.removeAll(t)
	if h := e.held(t); !equalHeld(h, baseline) {
		t.Fatalf("after removing every pod, the node holds %+v; with no pod: %+v", h, baseline)
	}
}

// heldState is what noded holds on the host for pods, for leak checks.
type heldState struct {
	Mounts, NetNS, Monitors, IPs, StorageContainers, CgroupProcs int
	// MonitorPods names the pods of the monitors (not compared).
	MonitorPods []string
}

func equalHeld(a, b heldState) bool {
	a.MonitorPods, b.MonitorPods = nil, nil
	return reflect.DeepEqual(a, b)
}

func (e *podEnv) held(t *testing.T) heldState {
	t.Helper()
	dir := e.d.Dir
	var h heldState
	if b, err := os.ReadFile("/proc/self/mountinfo"); err == nil {
		for _, l := range strings.Split(string(b), "\n") {
			if strings.Contains(l, dir) {
				h.Mounts++
			}
		}
	}
	if entries, err := os.ReadDir(filepath.Join(dir, "run", "netns")); err == nil {
		h.NetNS = len(entries)
	}
	procs, _ := filepath.Glob("/proc/[0-9]*/cmdline")
	for _, p := range procs {
		b, _ := os.ReadFile(p)
		if cmd := string(b); strings.Contains(cmd, "conmon-go\x00monitor") && strings.Contains(cmd, dir) {
			h.Monitors++
			if _, rest, ok := strings.Cut(cmd, "--pod\x00"); ok {
				h.MonitorPods = append(h.MonitorPods, strings.SplitN(rest, "\x00", 2)[0])
			}
		}
	}
	// host-local keeps one file per reserved address (and last_reserved_ip
	// and a lock).
	ipam, _ := filepath.Glob(filepath.Join(dir, "ipam", "*", "*"))
	for _, f := range ipam {
		if base := filepath.Base(f); base != "lock" && !strings.HasPrefix(base, "last_reserved_ip") {
			h.IPs++
		}
	}
	if b, err := os.ReadFile(filepath.Join(dir, "root", "overlay-containers", "containers.json")); err == nil {
		var cs []json.RawMessage
		if err := json.Unmarshal(b, &cs); err != nil {
			t.Fatalf("containers.json: %v", err)
		}
		h.StorageContainers = len(cs)
	}
	_ = filepath.WalkDir("/sys/fs/cgroup/memory/"+itCgroup, func(p string, d os.DirEntry, err error) error {
		if err == nil && d.Name() == "cgroup.procs" {
			if b, err := os.ReadFile(p); err == nil {
				h.CgroupProcs += len(strings.Fields(string(b)))
			}
		}
		return nil
	})
	return h
}

// TestStoppedPodHoldsNothing: a stopped pod keeps no process, mount, IP or
// netns until the kubelet removes it (its storage containers, files and
// logs stay), its containers still report how they ended, and it is
// removed as any pod.
func TestStoppedPodHoldsNothing(t *testing.T) {
	e := newPodEnv(t)
	baseline := e.baseline(t)
	ctx := context.Background()
	pod, ctr, _ := e.runPod(t, "stopped", []string{"sh", "-c", "echo bye; sleep 3600"})
	if _, err := e.rt.StopPodSandbox(ctx, &runtimeapi.StopPodSandboxRequest{PodSandboxId: pod}); err != nil {
		t.Fatal(err)
	}
	h := e.held(t)
	// The pause runs on the built-in image's shared root filesystem.
	if h.StorageContainers != 1 {
		t.Errorf("storage containers of the stopped pod: %d, want 1 (main) until removal", h.StorageContainers)
	}
	h.StorageContainers = baseline.StorageContainers
	if !equalHeld(h, baseline) {
		t.Fatalf("a stopped pod holds %+v; with no pod: %+v", h, baseline)
	}
	st, err := e.rt.ContainerStatus(ctx, &runtimeapi.ContainerStatusRequest{ContainerId: ctr})
	if err != nil || st.GetStatus().GetState() != runtimeapi.ContainerState_CONTAINER_EXITED || st.GetStatus().GetExitCode() != 137 && st.GetStatus().GetExitCode() != 143 {
		t.Fatalf("status of a container of the stopped pod: %+v %v", st.GetStatus(), err)
	}
	logs, err := os.ReadFile(st.GetStatus().GetLogPath())
	if err != nil || !strings.Contains(string(logs), "stdout F bye") {
		t.Fatalf("its log: %q %v", logs, err)
	}
	if _, err := e.rt.StopPodSandbox(ctx, &runtimeapi.StopPodSandboxRequest{PodSandboxId: pod}); err != nil {
		t.Fatalf("stopping it again: %v", err)
	}
	e.removeAllLeaving(t, baseline)
}

// TestRandomKillsDuringPodCreation is an operator's chaos test: twelve
// times, three pods are created (pod, container, start) and noded is
// SIGKILLed at a random moment meanwhile, restarted on the same
// directories, and the kubelet's retries are replayed. In the end all 36
// containers run, and once everything is removed nothing is left.
func TestRandomKillsDuringPodCreation(t *testing.T) {
	e := newPodEnv(t)
	baseline := e.baseline(t)
	seed := time.Now().UnixNano()
	rng := rand.New(rand.NewPCG(uint64(seed), 0))
	t.Logf("seed %d", seed)
	var lastErrs sync.Map // pod name → its last error
	converge := func(rt runtimeapi.RuntimeServiceClient, names []string) (running int) {
		var wg sync.WaitGroup
		var n atomic.Int32
		for _, name := range names {
			wg.Go(func() {
				if err := e.ensureRunning(rt, name); err != nil {
					lastErrs.Store(name, err)
					return
				}
				n.Add(1)
			})
		}
		wg.Wait()
		return int(n.Load())
	}
	interrupted := 0
	var logs bytes.Buffer // of the killed daemons, for a failure
	for round := range 12 {
		names := []string{fmt.Sprintf("chaos%da", round), fmt.Sprintf("chaos%db", round), fmt.Sprintf("chaos%dc", round)}
		e.removed = false // there are pods to remove at cleanup again
		before := make(chan int, 1)
		rt := e.rt
		t0 := time.Now()
		go func() { before <- converge(rt, names) }()
		// Three pods take ~0.2 s here: the kill lands during them.
		wait := time.Duration(rng.IntN(250)) * time.Millisecond
		time.Sleep(wait)
		e.d.Kill(t)
		fmt.Fprintf(&logs, "==== the daemon killed in round %d\n%s", round+1, e.d.Log.String())
		got := <-before
		t.Logf("round %d: SIGKILL after %s, %d of 3 pods were running by then (%s)", round+1, wait, got, time.Since(t0).Round(time.Millisecond))
		interrupted += len(names) - got
		d2 := e.d.Restart(t)
		e.d, e.rt = d2, d2.Runtime(t)
		// Cleanups run last first: remove the pods before this daemon stops.
		t.Cleanup(func() { e.removeAll(t) })
		if n := converge(e.rt, names); n != len(names) {
			var errs []string
			for _, name := range names {
				if err, ok := lastErrs.Load(name); ok {
					errs = append(errs, fmt.Sprintf("%s: %v", name, err))
				}
			}
			t.Fatalf("round %d: %d of %d pods run their container after the kill: %s\n%s", round+1, n, len(names), strings.Join(errs, "; "), e.d.Log)
		}
		for _, name := range names {
			lastErrs.Delete(name)
		}
	}
	ctrs, err := e.rt.ListContainers(context.Background(), &runtimeapi.ListContainersRequest{Filter: &runtimeapi.ContainerFilter{
		State: &runtimeapi.ContainerStateValue{State: runtimeapi.ContainerState_CONTAINER_RUNNING}}})
	if err != nil || len(ctrs.GetContainers()) != 36 {
		t.Fatalf("%d containers running, want 36 (%v)", len(ctrs.GetContainers()), err)
	}
	t.Logf("36 containers run; the kills interrupted %d of the 36 creations", interrupted)
	e.removed = false
	e.removeAll(t)
	if h := e.held(t); !equalHeld(h, baseline) {
		path := filepath.Join(t.TempDir(), "daemons.log")
		_ = os.WriteFile(path, append(logs.Bytes(), e.d.Log.String()...), 0o644)
		t.Fatalf("after removing everything: %+v, with no pod: %+v (daemon logs: %s)", h, baseline, path)
	}
}

// ensureRunning does what the kubelet does for a pod with one container
// until it runs: a ready sandbox of the pod (found by its labels) is
// used, a not ready one removed, else RunPodSandbox with the same name,
// uid and attempt; then the container is found by name or created, and
// started. It returns the first error (a killed noded answers none).
func (e *podEnv) ensureRunning(rt runtimeapi.RuntimeServiceClient, name string) error {
	ctx, cancel := context.WithTimeout(context.Background(), 30*time.Second)
	defer cancel()
	pcfg := e.podConfig(name)
	pcfg.Labels = map[string]string{"test": "pods", "chaos": name}
	if err := os.MkdirAll(pcfg.GetLogDirectory(), 0o755); err != nil {
		return err
	}
	pods, err := rt.ListPodSandbox(ctx, &runtimeapi.ListPodSandboxRequest{Filter: &runtimeapi.PodSandboxFilter{LabelSelector: map[string]string{"chaos": name}}})
	if err != nil {
		return err
	}
	pod := ""
	for _, p := range pods.GetItems() {
		if p.GetState() == runtimeapi.PodSandboxState_SANDBOX_READY {
			pod = p.GetId()
			continue
		}
		if _, err := rt.RemovePodSandbox(ctx, &runtimeapi.RemovePodSandboxRequest{PodSandboxId: p.GetId()}); err != nil {
			return err
		}
	}
	if pod == "" {
		resp, err := rt.RunPodSandbox(ctx, &runtimeapi.RunPodSandboxRequest{Config: pcfg})
		if err != nil {
			return err
		}
		pod = resp.GetPodSandboxId()
	}
	ctrs, err := rt.ListContainers(ctx, &runtimeapi.ListContainersRequest{Filter: &runtimeapi.ContainerFilter{PodSandboxId: pod}})
	if err != nil {
		return err
	}
	id := ""
	for _, c := range ctrs.GetContainers() {
		switch c.GetState() {
		case runtimeapi.ContainerState_CONTAINER_RUNNING:
			return nil
		case runtimeapi.ContainerState_CONTAINER_CREATED:
			id = c.GetId()
		default:
			if _, err := rt.RemoveContainer(ctx, &runtimeapi.RemoveContainerRequest{ContainerId: c.GetId()}); err != nil {
				return err
			}
		}
	}
	if id == "" {
		resp, err := rt.CreateContainer(ctx, sleeperRequest(pod, pcfg))
		if err != nil {
			return err
		}
		id = resp.GetContainerId()
	}
	_, err = rt.StartContainer(ctx, &runtimeapi.StartContainerRequest{ContainerId: id})
	return err
}

// sleeperRequest creates the pod's container "main", a sleep, as the
// crash tests' kubelet does.
func sleeperRequest(pod string, pcfg *runtimeapi.PodSandboxConfig) *runtimeapi.CreateContainerRequest {
	return &runtimeapi.CreateContainerRequest{
		PodSandboxId: pod, SandboxConfig: pcfg,
		Config: &runtimeapi.ContainerConfig{
			Metadata: &runtimeapi.ContainerMetadata{Name: "main"},
			Image:    &runtimeapi.ImageSpec{Image: busyboxImage},
			Command:  []string{"sleep", "3600"},
			LogPath:  "main.log",
		},
	}
}

// TestMonitorKilled kills the conmon-go monitor of a running pod with
// SIGKILL. Its containers keep running; the next call that needs a monitor
// starts one that adopts them: exec works, an exit is reported (status
// unknown: the exit code went with the old monitor), a container still
// running is stopped by StopPodSandbox, and removal leaves nothing.
func TestMonitorKilled(t *testing.T) {
	e := newPodEnv(t)
	baseline := e.baseline(t)
	ctx := context.Background()
	pod, ctr, _ := e.runPod(t, "monkill", []string{"sh", "-c", "sleep 3600"})
	pcfg := e.podConfig("monkill")
	short := e.createStart(t, pod, pcfg, "short", []string{"sh", "-c", "sleep 2; exit 3"})
	old := monitorPid(t, e.d.Dir, pod)
	if err := syscall.Kill(old, syscall.SIGKILL); err != nil {
		t.Fatal(err)
	}
	waitFor(t, 5*time.Second, func() bool { return syscall.Kill(old, 0) != nil })

	// The containers are still there and exec reaches them through a new
	// monitor.
	r, err := e.exec(t, ctr, 10, "echo", "still")
	if err != nil || strings.TrimSpace(string(r.GetStdout())) != "still" {
		t.Fatalf("exec after the monitor was killed: %v %v\n%s", r, err, e.d.Log)
	}
	if now := monitorPid(t, e.d.Dir, pod); now == old {
		t.Fatalf("monitor %d still there", old)
	}
	st := e.waitExited(t, short, 10*time.Second)
	if st.GetExitCode() == 0 || st.GetReason() == "Completed" {
		t.Fatalf("an exit the new monitor cannot know reported as %v %q", st.GetExitCode(), st.GetReason())
	}
	st2, err := e.rt.ContainerStatus(ctx, &runtimeapi.ContainerStatusRequest{ContainerId: ctr})
	if err != nil || st2.GetStatus().GetState() != runtimeapi.ContainerState_CONTAINER_RUNNING {
		t.Fatalf("the long-running container after the monitor died: %v %v", st2.GetStatus(), err)
	}

	// Killed again, with nothing calling meanwhile: stop and remove must
	// still reach every process.
	again := monitorPid(t, e.d.Dir, pod)
	if err := syscall.Kill(again, syscall.SIGKILL); err != nil {
		t.Fatal(err)
	}
	waitFor(t, 5*time.Second, func() bool { return syscall.Kill(again, 0) != nil })
	if _, err := e.rt.StopPodSandbox(ctx, &runtimeapi.StopPodSandboxRequest{PodSandboxId: pod}); err != nil {
		t.Fatalf("stopping the pod: %v", err)
	}
	st2, err = e.rt.ContainerStatus(ctx, &runtimeapi.ContainerStatusRequest{ContainerId: ctr})
	if err != nil || st2.GetStatus().GetState() != runtimeapi.ContainerState_CONTAINER_EXITED {
		t.Fatalf("the long-running container after the pod stopped: %v %v", st2.GetStatus(), err)
	}
	e.removeAllLeaving(t, baseline)
}
