//go:build integration

package integration

import (
	"context"
	"fmt"
	"os"
	"strconv"
	"strings"
	"sync"
	"sync/atomic"
	"testing"
	"time"

	runtimeapi "k8s.io/cri-api/pkg/apis/runtime/v1"
)

// TestChurn is the soak test: workers create and delete pods and
// containers without pause, with exec probes, while noded is SIGKILLed
// and restarted twice and then restarted gracefully. Only calls cut by a
// restart may fail. At the end every pod is removed and the last noded's
// goroutines, descriptors and RSS are back near what they were right
// after its start (measured once it had run a pod), and the host holds
// nothing.
//
// CI runs it for 60 s; the documented long run is
//
//	make soak SOAK=30m
func TestChurn(t *testing.T) {
	duration := 60 * time.Second
	if v := os.Getenv("NODED_SOAK"); v != "" {
		d, err := time.ParseDuration(v)
		if err != nil {
			t.Fatalf("NODED_SOAK=%q: %v", v, err)
		}
		duration = d
	}
	e, metricsAddr := newMetricsPodEnv(t)
	baseline := e.baseline(t)
	first := e.figures(t, metricsAddr)

	c := &churn{e: e}
	c.rt.Store(&e.rt)
	ctx, stop := context.WithCancel(context.Background())
	var workers sync.WaitGroup
	const nworkers = 3
	for w := range nworkers {
		workers.Go(func() { c.work(ctx, t, fmt.Sprintf("soak%d", w)) })
	}

	// Two SIGKILLs under load, then a graceful restart with the workers
	// held back, so that the last noded's figures start from a quiet
	// moment.
	t0 := time.Now()
	var last figures
	for i, kill := range []bool{true, true, false} {
		time.Sleep(time.Until(t0.Add(duration * time.Duration(i+1) / 4)))
		if !kill {
			c.gate.Lock()
		}
		c.restarting.Store(true)
		if kill {
			e.d.Kill(t)
		} else if err := e.d.Stop(); err != nil {
			t.Errorf("graceful stop: %v", err)
		}
		d2 := e.d.Restart(t)
		e.d, e.rt = d2, d2.Runtime(t)
		t.Cleanup(func() { e.removeAll(t) }) // before this daemon stops
		rt := e.rt
		c.rt.Store(&rt)
		c.generation.Add(1)
		c.restarting.Store(false)
		if !kill {
			e.removed = false
			e.removeAll(t)
			e.runPod(t, "soakwarm", []string{"true"})
			e.removed = false
			e.removeAll(t)
			last = e.figures(t, metricsAddr)
			c.gate.Unlock()
		}
		t.Logf("restart %d (%s) at %s", i+1, map[bool]string{true: "SIGKILL", false: "graceful"}[kill], time.Since(t0).Round(time.Second))
	}
	time.Sleep(time.Until(t0.Add(duration)))
	stop()
	workers.Wait()

	e.removed = false
	e.removeAll(t)
	var end figures
	settled := func() bool {
		end = e.figures(t, metricsAddr)
		return end.goroutines <= last.goroutines+5 && end.fds <= last.fds+3
	}
	deadline := time.Now().Add(20 * time.Second)
	for !settled() && time.Now().Before(deadline) {
		time.Sleep(500 * time.Millisecond)
	}
	t.Logf("%s: %d pod cycles, %d containers, %d exec probes, %d calls cut by restarts",
		duration, c.cycles.Load(), c.containers.Load(), c.execs.Load(), c.cut.Load())
	t.Logf("first noded after start: %s", first)
	t.Logf("last noded after start:  %s", last)
	t.Logf("last noded at the end:   %s", end)
	if errs := c.failures(); len(errs) > 0 {
		t.Errorf("%d calls failed with noded up, e.g.:\n%s", len(errs), strings.Join(errs[:min(len(errs), 5)], "\n"))
	}
	if c.cycles.Load() < nworkers {
		t.Errorf("only %d pod cycles completed", c.cycles.Load())
	}
	if !settled() {
		t.Errorf("goroutines %d (started at %d), fds %d (started at %d): not back", end.goroutines, last.goroutines, end.fds, last.fds)
	}
	// Go keeps freed heap a while before it returns it; a leak of a pod's
	// worth per cycle would be far beyond this.
	if end.rssKiB > last.rssKiB+48<<10 {
		t.Errorf("RSS %d KiB at the end, %d KiB after start", end.rssKiB, last.rssKiB)
	}
	if h := e.held(t); !equalHeld(h, baseline) {
		t.Errorf("after the churn the node holds %+v; with no pod: %+v", h, baseline)
	}
}

// churn is the soak test's shared state: the current client (replaced at
// each restart), a gate that holds the workers back during the graceful
// restart, and counters.
type churn struct {
	e          *podEnv
	rt         atomic.Pointer[runtimeapi.RuntimeServiceClient]
	gate       sync.RWMutex
	restarting atomic.Bool
	generation atomic.Int64

	cycles, containers, execs, cut atomic.Int64

	mu   sync.Mutex
	errs []string
}

func (c *churn) failures() []string {
	c.mu.Lock()
	defer c.mu.Unlock()
	return c.errs
}

// work runs pod cycles until ctx ends. A failed cycle is cleaned up as
// the kubelet would: the worker's pods are found by label and removed.
func (c *churn) work(ctx context.Context, t *testing.T, name string) {
	for ctx.Err() == nil {
		c.gate.RLock()
		gen := c.generation.Load()
		err := c.cycle(ctx, t, name)
		if err != nil && ctx.Err() == nil {
			if c.generation.Load() != gen || c.restarting.Load() {
				c.cut.Add(1)
			} else {
				c.mu.Lock()
				c.errs = append(c.errs, fmt.Sprintf("%s: %v", name, err))
				c.mu.Unlock()
			}
			c.cleanUp(name)
		}
		c.gate.RUnlock()
	}
	c.cleanUp(name)
}

// cycle is one pod's life: two containers, exec probes, one container
// stopped and removed on its own, then the pod stopped and removed.
func (c *churn) cycle(ctx context.Context, t *testing.T, name string) error {
	rt := *c.rt.Load()
	pcfg := c.e.podConfig(name)
	pcfg.Labels = map[string]string{"test": "pods", "soak": name}
	if err := os.MkdirAll(pcfg.GetLogDirectory(), 0o755); err != nil {
		return err
	}
	cctx, cancel := context.WithTimeout(ctx, time.Minute)
	defer cancel()
	pod, err := rt.RunPodSandbox(cctx, &runtimeapi.RunPodSandboxRequest{Config: pcfg})
	if err != nil {
		return fmt.Errorf("run pod: %w", err)
	}
	var ctrs []string
	for _, cname := range []string{"main", "side"} {
		req := sleeperRequest(pod.GetPodSandboxId(), pcfg)
		req.Config.Metadata.Name, req.Config.LogPath = cname, cname+".log"
		cr, err := rt.CreateContainer(cctx, req)
		if err != nil {
			return fmt.Errorf("create %s: %w", cname, err)
		}
		if _, err := rt.StartContainer(cctx, &runtimeapi.StartContainerRequest{ContainerId: cr.GetContainerId()}); err != nil {
			return fmt.Errorf("start %s: %w", cname, err)
		}
		c.containers.Add(1)
		ctrs = append(ctrs, cr.GetContainerId())
	}
	for i := range 4 {
		r, err := rt.ExecSync(cctx, &runtimeapi.ExecSyncRequest{ContainerId: ctrs[i%2], Cmd: []string{"echo", strconv.Itoa(i)}, Timeout: 10})
		if err != nil {
			return fmt.Errorf("exec probe: %w", err)
		}
		if r.GetExitCode() != 0 || strings.TrimSpace(string(r.GetStdout())) != strconv.Itoa(i) {
			return fmt.Errorf("exec probe answered %d %q", r.GetExitCode(), r.GetStdout())
		}
		c.execs.Add(1)
	}
	if _, err := rt.StopContainer(cctx, &runtimeapi.StopContainerRequest{ContainerId: ctrs[1], Timeout: 1}); err != nil {
		return fmt.Errorf("stop side: %w", err)
	}
	if _, err := rt.RemoveContainer(cctx, &runtimeapi.RemoveContainerRequest{ContainerId: ctrs[1]}); err != nil {
		return fmt.Errorf("remove side: %w", err)
	}
	if _, err := rt.StopPodSandbox(cctx, &runtimeapi.StopPodSandboxRequest{PodSandboxId: pod.GetPodSandboxId()}); err != nil {
		return fmt.Errorf("stop pod: %w", err)
	}
	if _, err := rt.RemovePodSandbox(cctx, &runtimeapi.RemovePodSandboxRequest{PodSandboxId: pod.GetPodSandboxId()}); err != nil {
		return fmt.Errorf("remove pod: %w", err)
	}
	c.cycles.Add(1)
	return nil
}

// cleanUp removes the worker's pods, retrying through restarts, as the
// kubelet's garbage collection would.
func (c *churn) cleanUp(name string) {
	for try := 0; try < 100; try++ {
		rt := *c.rt.Load()
		cctx, cancel := context.WithTimeout(context.Background(), time.Minute)
		pods, err := rt.ListPodSandbox(cctx, &runtimeapi.ListPodSandboxRequest{Filter: &runtimeapi.PodSandboxFilter{LabelSelector: map[string]string{"soak": name}}})
		for _, p := range pods.GetItems() {
			if err == nil {
				_, err = rt.RemovePodSandbox(cctx, &runtimeapi.RemovePodSandboxRequest{PodSandboxId: p.GetId()})
			}
		}
		cancel()
		if err == nil {
			return
		}
		time.Sleep(200 * time.Millisecond)
	}
}

// figures is what a soak compares of noded: its goroutines, open
// descriptors and resident memory.
type figures struct {
	goroutines, fds int
	rssKiB          int64
}

func (f figures) String() string {
	return fmt.Sprintf("%d goroutines, %d fds, RSS %.1f MiB", f.goroutines, f.fds, float64(f.rssKiB)/1024)
}

func (e *podEnv) figures(t *testing.T, metricsAddr string) figures {
	t.Helper()
	f := figures{goroutines: goroutines(t, metricsAddr), fds: fdCount(t, e.d.Pid())}
	if v, ok := strings.CutSuffix(procStatus(t, e.d.Pid())["VmRSS"], " kB"); ok {
		f.rssKiB, _ = strconv.ParseInt(strings.TrimSpace(v), 10, 64)
	}
	return f
}
