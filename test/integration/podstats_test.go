//go:build integration

package integration

import (
	"context"
	"fmt"
	"net"
	"os"
	"strings"
	"testing"

	"google.golang.org/grpc/codes"
	"google.golang.org/grpc/status"
	runtimeapi "k8s.io/cri-api/pkg/apis/runtime/v1"
)

// runStatsPod starts a pod labelled stats=<name> with one container per
// command (named c0, c1, ...) and returns the pod ID, the container IDs
// and the pod's IP.
func (e *podEnv) runStatsPod(t *testing.T, name string, cmds ...[]string) (string, []string, string) {
	t.Helper()
	ctx := context.Background()
	pcfg := e.podConfig(name)
	pcfg.Labels = map[string]string{"test": "pods", "stats": name}
	if err := os.MkdirAll(pcfg.LogDirectory, 0o755); err != nil {
		t.Fatal(err)
	}
	pod, err := e.rt.RunPodSandbox(ctx, &runtimeapi.RunPodSandboxRequest{Config: pcfg})
	if err != nil {
		t.Fatalf("RunPodSandbox %s: %v\n%s", name, err, e.d.Log)
	}
	var ctrs []string
	for i, cmd := range cmds {
		ctrs = append(ctrs, e.createStart(t, pod.GetPodSandboxId(), pcfg, fmt.Sprintf("c%d", i), cmd))
	}
	st, err := e.rt.PodSandboxStatus(ctx, &runtimeapi.PodSandboxStatusRequest{PodSandboxId: pod.GetPodSandboxId()})
	if err != nil {
		t.Fatal(err)
	}
	return pod.GetPodSandboxId(), ctrs, st.GetStatus().GetNetwork().GetIp()
}

func (e *podEnv) podStats(t *testing.T, id string) *runtimeapi.PodSandboxStats {
	t.Helper()
	r, err := e.rt.PodSandboxStats(context.Background(), &runtimeapi.PodSandboxStatsRequest{PodSandboxId: id})
	if err != nil {
		t.Fatalf("PodSandboxStats %s: %v\n%s", id, err, e.d.Log)
	}
	return r.GetStats()
}

func (e *podEnv) listPodStats(t *testing.T, f *runtimeapi.PodSandboxStatsFilter) []*runtimeapi.PodSandboxStats {
	t.Helper()
	r, err := e.rt.ListPodSandboxStats(context.Background(), &runtimeapi.ListPodSandboxStatsRequest{Filter: f})
	if err != nil {
		t.Fatalf("ListPodSandboxStats %v: %v\n%s", f, err, e.d.Log)
	}
	return r.GetStats()
}

func eth0(t *testing.T, s *runtimeapi.PodSandboxStats) *runtimeapi.NetworkInterfaceUsage {
	t.Helper()
	n := s.GetLinux().GetNetwork()
	if n.GetDefaultInterface().GetName() != "eth0" || len(n.GetInterfaces()) != 1 {
		t.Fatalf("pod %s network %v: want eth0 only (the pod's namespace, no loopback)", s.GetAttributes().GetId(), n)
	}
	return n.GetDefaultInterface()
}

// TestPodSandboxStats runs two pods, A serving a file from its writable
// layer with a second, idle container beside, and B idle, and checks the
// pod stats RPCs: CPU (cumulative and, from the second sample, the rate),
// memory, the pod's own network counters (A's grow with the served
// bytes, B's do not), process count, the containers inside, the writable
// layer in ContainerStats, the filters, NotFound for an unknown pod, and
// that a stopped pod answers without an error.
func TestPodSandboxStats(t *testing.T) {
	e := newPodEnv(t)
	ctx := context.Background()
	const blobKiB = 4096
	serve := fmt.Sprintf("mkdir -p /www && dd if=/dev/zero of=/www/blob bs=1024 count=%d 2>/dev/null && exec httpd -f -p 8080 -h /www", blobKiB)
	podA, ctrsA, ipA := e.runStatsPod(t, "stats-a", []string{"sh", "-c", serve}, []string{"sleep", "3600"})
	podB, _, _ := e.runStatsPod(t, "stats-b", []string{"sleep", "3600"})

	before := e.podStats(t, podA)
	beforeB := e.podStats(t, podB)
	got := download(t, "http://"+net.JoinHostPort(ipA, "8080")+"/blob")
	if got != blobKiB*1024 {
		t.Fatalf("downloaded %d bytes, want %d", got, blobKiB*1024)
	}
	if r, err := e.exec(t, ctrsA[0], 120, "sh", "-c", "dd if=/dev/zero bs=1048576 count=200 2>/dev/null | sha256sum"); err != nil || r.GetExitCode() != 0 {
		t.Fatalf("burning CPU: %v %q", err, r.GetStderr())
	}
	a, b := e.podStats(t, podA), e.podStats(t, podB)
	t.Cleanup(func() {
		if t.Failed() {
			t.Logf("pod A: %v\npod B: %v", a, b)
		}
	})

	t.Run("attributes", func(t *testing.T) {
		at := a.GetAttributes()
		if at.GetId() != podA || at.GetMetadata().GetName() != "stats-a" || at.GetLabels()["stats"] != "stats-a" {
			t.Fatalf("attributes %v", at)
		}
	})
	t.Run("cpu", func(t *testing.T) {
		c0, c1 := before.GetLinux().GetCpu(), a.GetLinux().GetCpu()
		if c1.GetUsageCoreNanoSeconds().GetValue() < c0.GetUsageCoreNanoSeconds().GetValue()+5e8 {
			t.Errorf("pod cpu %d → %d ns while burning about two seconds", c0.GetUsageCoreNanoSeconds().GetValue(), c1.GetUsageCoreNanoSeconds().GetValue())
		}
		if c1.GetUsageNanoCores() == nil || c1.GetUsageNanoCores().GetValue() == 0 {
			t.Errorf("no nanocores on the second sample: %v", c1)
		}
		if c1.GetTimestamp() <= c0.GetTimestamp() {
			t.Errorf("timestamps %d → %d", c0.GetTimestamp(), c1.GetTimestamp())
		}
	})
	t.Run("memory", func(t *testing.T) {
		m := a.GetLinux().GetMemory()
		if m.GetWorkingSetBytes().GetValue() == 0 || m.GetUsageBytes().GetValue() < m.GetWorkingSetBytes().GetValue() ||
			m.GetRssBytes() == nil || m.GetPageFaults().GetValue() == 0 {
			t.Errorf("memory %v", m)
		}
	})
	t.Run("network from the pod's namespace", func(t *testing.T) {
		a0, a1 := eth0(t, before), eth0(t, a)
		b0, b1 := eth0(t, beforeB), eth0(t, b)
		if a1.GetTxBytes().GetValue()-a0.GetTxBytes().GetValue() < blobKiB*1024 {
			t.Errorf("pod A sent %d bytes while serving %d", a1.GetTxBytes().GetValue()-a0.GetTxBytes().GetValue(), blobKiB*1024)
		}
		if a1.GetRxBytes().GetValue() <= a0.GetRxBytes().GetValue() {
			t.Errorf("pod A received nothing while serving")
		}
		if d := b1.GetTxBytes().GetValue() - b0.GetTxBytes().GetValue(); d > 256*1024 {
			t.Errorf("idle pod B sent %d bytes: counters not per pod", d)
		}
		if a1.GetRxErrors() == nil || a1.GetTxErrors() == nil {
			t.Errorf("no error counters: %v", a1)
		}
	})
	t.Run("process count", func(t *testing.T) {
		// pause, httpd and sleep at least.
		if n := a.GetLinux().GetProcess().GetProcessCount().GetValue(); n < 3 {
			t.Errorf("pod A: %d processes, want ≥ 3", n)
		}
		if n := b.GetLinux().GetProcess().GetProcessCount().GetValue(); n < 2 {
			t.Errorf("pod B: %d processes, want ≥ 2", n)
		}
	})
	t.Run("containers inside", func(t *testing.T) {
		cs := a.GetLinux().GetContainers()
		if len(cs) != 2 {
			t.Fatalf("%d containers in pod A, want 2", len(cs))
		}
		var podCPU, sum uint64 = a.GetLinux().GetCpu().GetUsageCoreNanoSeconds().GetValue(), 0
		for _, c := range cs {
			id := c.GetAttributes().GetId()
			if id != ctrsA[0] && id != ctrsA[1] {
				t.Errorf("container %s is not pod A's", id)
			}
			if c.GetCpu().GetUsageCoreNanoSeconds() == nil || c.GetMemory().GetWorkingSetBytes().GetValue() == 0 {
				t.Errorf("container %s: cpu %v memory %v", c.GetAttributes().GetMetadata().GetName(), c.GetCpu(), c.GetMemory())
			}
			if c.GetWritableLayer() == nil {
				t.Errorf("container %s: no writable layer", id)
			}
			sum += c.GetCpu().GetUsageCoreNanoSeconds().GetValue()
		}
		if podCPU < sum {
			t.Errorf("pod cpu %d ns < its containers' %d", podCPU, sum)
		}
	})
	t.Run("writable layer in ContainerStats", func(t *testing.T) {
		r, err := e.rt.ContainerStats(ctx, &runtimeapi.ContainerStatsRequest{ContainerId: ctrsA[0]})
		if err != nil {
			t.Fatal(err)
		}
		w := r.GetStats().GetWritableLayer()
		if w.GetUsedBytes().GetValue() < blobKiB*1024 || w.GetInodesUsed().GetValue() == 0 || w.GetFsId().GetMountpoint() == "" {
			t.Errorf("writable layer %v: want ≥ %d bytes (the blob)", w, blobKiB*1024)
		}
		l, err := e.rt.ListContainerStats(ctx, &runtimeapi.ListContainerStatsRequest{Filter: &runtimeapi.ContainerStatsFilter{PodSandboxId: podA}})
		if err != nil || len(l.GetStats()) != 2 {
			t.Fatalf("ListContainerStats of pod A: %v, %d stats", err, len(l.GetStats()))
		}
		for _, s := range l.GetStats() {
			if s.GetWritableLayer() == nil {
				t.Errorf("ListContainerStats %s: no writable layer", s.GetAttributes().GetId())
			}
		}
	})
	t.Run("filters", func(t *testing.T) {
		ids := func(ss []*runtimeapi.PodSandboxStats) string {
			var out []string
			for _, s := range ss {
				switch s.GetAttributes().GetId() {
				case podA:
					out = append(out, "a")
				case podB:
					out = append(out, "b")
				}
			}
			return strings.Join(out, ",")
		}
		for _, tt := range []struct {
			name   string
			filter *runtimeapi.PodSandboxStatsFilter
			want   string
			n      int
		}{
			{"none", nil, "a,b", 2},
			{"id", &runtimeapi.PodSandboxStatsFilter{Id: podB}, "b", 1},
			{"label", &runtimeapi.PodSandboxStatsFilter{LabelSelector: map[string]string{"stats": "stats-a"}}, "a", 1},
			{"shared label", &runtimeapi.PodSandboxStatsFilter{LabelSelector: map[string]string{"test": "pods"}}, "a,b", 2},
			{"id and other pod's label", &runtimeapi.PodSandboxStatsFilter{Id: podA, LabelSelector: map[string]string{"stats": "stats-b"}}, "", 0},
			{"unknown id", &runtimeapi.PodSandboxStatsFilter{Id: strings.Repeat("f", 64)}, "", 0},
		} {
			t.Run(tt.name, func(t *testing.T) {
				got := e.listPodStats(t, tt.filter)
				if ids(got) != tt.want || len(got) != tt.n {
					t.Fatalf("pods %q (%d), want %q", ids(got), len(got), tt.want)
				}
			})
		}
	})
	t.Run("unknown pod is NotFound", func(t *testing.T) {
		_, err := e.rt.PodSandboxStats(ctx, &runtimeapi.PodSandboxStatsRequest{PodSandboxId: strings.Repeat("f", 64)})
		if status.Code(err) != codes.NotFound {
			t.Fatalf("PodSandboxStats of an unknown pod: %v, want NotFound", err)
		}
		_, err = e.rt.PodSandboxStats(ctx, &runtimeapi.PodSandboxStatsRequest{})
		if status.Code(err) != codes.InvalidArgument {
			t.Fatalf("PodSandboxStats without an ID: %v, want InvalidArgument", err)
		}
	})
	t.Run("stopped pod is not an error", func(t *testing.T) {
		if _, err := e.rt.StopPodSandbox(ctx, &runtimeapi.StopPodSandboxRequest{PodSandboxId: podB}); err != nil {
			t.Fatal(err)
		}
		s := e.podStats(t, podB)
		if s.GetAttributes().GetId() != podB || s.GetLinux().GetCpu().GetTimestamp() == 0 || s.GetLinux().GetCpu().GetUsageCoreNanoSeconds() != nil {
			t.Fatalf("stopped pod: %v", s)
		}
		if got := e.listPodStats(t, &runtimeapi.PodSandboxStatsFilter{Id: podB}); len(got) != 1 {
			t.Fatalf("ListPodSandboxStats of the stopped pod: %d stats", len(got))
		}
		if a := e.podStats(t, podA); a.GetLinux().GetCpu().GetUsageCoreNanoSeconds() == nil {
			t.Fatal("running pod lost its usage")
		}
	})
}
