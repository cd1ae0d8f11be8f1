package oci

import (
	"context"
	"fmt"
	"math/rand/v2"
	"os"
	"path/filepath"
	"sort"
	"strconv"
	"strings"
	"testing"
	"time"

	"github.com/noded-dev/noded/internal/oci/wire"
)

// procMem is what the kernel says about a process's memory, in KiB.
type procMem struct {
	VmRSS, Rss, Pss, PssAnon, PssFile, Threads int
}

func readProcMem(t *testing.T, pid int) procMem {
	t.Helper()
	var m procMem
	field := func(path, key string) int {
		b, err := os.ReadFile(path)
		if err != nil {
			t.Fatal(err)
		}
		for _, l := range strings.Split(string(b), "\n") {
			if v, ok := strings.CutPrefix(l, key+":"); ok {
				n, _ := strconv.Atoi(strings.Fields(v)[0])
				return n
			}
		}
		t.Fatalf("%s: no %s", path, key)
		return 0
	}
	status := fmt.Sprintf("/proc/%d/status", pid)
	rollup := fmt.Sprintf("/proc/%d/smaps_rollup", pid)
	m.VmRSS = field(status, "VmRSS")
	m.Threads = field(status, "Threads")
	m.Rss = field(rollup, "Rss")
	m.Pss = field(rollup, "Pss")
	m.PssAnon = field(rollup, "Pss_Anon")
	m.PssFile = field(rollup, "Pss_File")
	return m
}

func (m procMem) String() string {
	return fmt.Sprintf("VmRSS %5d KiB  Pss %5d KiB (anon %5d, file %5d)  threads %d", m.VmRSS, m.Pss, m.PssAnon, m.PssFile, m.Threads)
}

// TestMonitorMemory measures a monitor's footprint (README.md quotes it):
//
//	NODED_MEASURE_RSS=1 go test -run TestMonitorMemory -v ./internal/oci
//
// Set NODED_CONMON_GO to measure a given build (e.g. bin/conmon-go).
func TestMonitorMemory(t *testing.T) {
	if os.Getenv("NODED_MEASURE_RSS") == "" {
		t.Skip("set NODED_MEASURE_RSS=1 to measure the monitor's memory")
	}
	e := newTestEnv(t)
	ctx := context.Background()
	settle := func() { time.Sleep(2 * time.Second) } // the monitor trims 0.5 s after an operation

	if err := e.rt.StartMonitor(ctx, e.pod); err != nil {
		t.Fatal(err)
	}
	mpid := monitorPid(t, e)
	settle()
	t.Logf("monitor, no container:       %v", readProcMem(t, mpid))
	t.Logf("  go runtime: %s", monitorStats(t, e))

	// noded's own pause (static C, make pause) when built, else busybox.
	pauseArgs, pauseName := []string{"sleep", "1000000"}, "busybox sleep"
	if b, err := os.ReadFile(filepath.Join(repoRoot(t), "bin", "noded-pause")); err == nil {
		if err := os.WriteFile(filepath.Join(e.rootfs, "pause"), b, 0o755); err != nil {
			t.Fatal(err)
		}
		pauseArgs, pauseName = []string{"/pause"}, "bin/noded-pause"
	}
	start := time.Now()
	pause, _ := e.run("pause", e.spec("pause", pauseArgs...))
	t.Logf("create+start of the pause container: %s", time.Since(start).Round(time.Millisecond))
	settle()
	m1, p1 := readProcMem(t, mpid), readProcMem(t, pause.Pid)
	t.Logf("monitor, pause:              %v", m1)
	t.Logf("  go runtime: %s", monitorStats(t, e))
	t.Logf("pause (%s): %v", pauseName, p1)
	t.Logf("monitor + pause:             VmRSS %d KiB, Pss %d KiB", m1.VmRSS+p1.VmRSS, m1.Pss+p1.Pss)

	s := e.spec("app", "sleep", "1000000")
	joinPod(s, pause.Pid)
	e.run("app", s)
	start = time.Now()
	const execs = 10
	for i := 0; i < execs; i++ {
		if _, _, _, err := e.rt.ExecSync(ctx, e.pod, "app", []string{"true"}, 5*time.Second); err != nil {
			t.Fatal(err)
		}
	}
	t.Logf("ExecSync of true: %s each", (time.Since(start) / execs).Round(time.Millisecond))
	settle()
	m2 := readProcMem(t, mpid)
	t.Logf("monitor, pause + app + exec: %v", m2)
	t.Logf("  go runtime: %s", monitorStats(t, e))

	// More pods: the monitors share their text pages, so Pss falls.
	const pods = 4
	pids := []int{mpid}
	for i := 1; i < pods; i++ {
		e2 := *e
		e2.pod = PodID(fmt.Sprintf("%016x", rand.Uint64()))
		e.extraPods = append(e.extraPods, e2.pod)
		if err := e2.rt.StartMonitor(ctx, e2.pod); err != nil {
			t.Fatal(err)
		}
		e2.run(fmt.Sprintf("pause%d", i), e2.spec(fmt.Sprintf("pause%d", i), pauseArgs...))
		pids = append(pids, monitorPid(t, &e2))
	}
	settle()
	total := 0
	for _, pid := range pids {
		total += readProcMem(t, pid).Pss
	}
	t.Logf("%d pods: monitor Pss average %d KiB; first monitor %v", pods, total/pods, readProcMem(t, mpid))
}

func monitorStats(t *testing.T, e *testEnv) string {
	t.Helper()
	resp, err := e.rt.call(context.Background(), e.pod, &wire.Request{Op: wire.OpStats})
	if err != nil {
		t.Fatal(err)
	}
	keys := make([]string, 0, len(resp.Stats))
	for k := range resp.Stats {
		keys = append(keys, k)
	}
	sort.Strings(keys)
	var b strings.Builder
	for _, k := range keys {
		v := resp.Stats[k]
		if v >= 1024 {
			fmt.Fprintf(&b, "%s=%dK ", k, v/1024)
		} else {
			fmt.Fprintf(&b, "%s=%d ", k, v)
		}
	}
	return b.String()
}
