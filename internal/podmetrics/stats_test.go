package podmetrics

import (
	"testing"
	"time"

	runtimeapi "k8s.io/cri-api/pkg/apis/runtime/v1"

	"github.com/noded-dev/noded/internal/state"
)

func TestCPURates(t *testing.T) {
	var r CPURates
	t0 := time.Unix(100, 0)
	steps := []struct {
		name  string
		at    time.Time
		nanos uint64
		want  uint64
		ok    bool
	}{
		{"first sample: no rate", t0, 1e9, 0, false},
		{"half a core over 2 s", t0.Add(2 * time.Second), 2e9, 5e8, true},
		{"same instant: no rate", t0.Add(2 * time.Second), 3e9, 0, false},
		{"counter went back (new cgroup): no rate", t0.Add(3 * time.Second), 1e6, 0, false},
		{"two cores over 1 s", t0.Add(4 * time.Second), 1e6 + 2e9, 2e9, true},
	}
	for _, s := range steps {
		t.Run(s.name, func(t *testing.T) {
			got, ok := r.Rate("c", s.at, s.nanos)
			if got != s.want || ok != s.ok {
				t.Fatalf("Rate = %d, %v; want %d, %v", got, ok, s.want, s.ok)
			}
		})
	}
	r.Rate(PodKey("p"), t0, 1)
	r.Keep(func(k string) bool { return k == "c" })
	if r.Len() != 1 {
		t.Fatalf("Keep left %d samples, want 1", r.Len())
	}
	r.Forget("c")
	if r.Len() != 0 {
		t.Fatalf("Forget left %d samples", r.Len())
	}
}

func TestPodSandboxStatsFromSample(t *testing.T) {
	now := time.Unix(1000, 0)
	pod := &state.Sandbox{ID: "p1", Config: &runtimeapi.PodSandboxConfig{
		Metadata: &runtimeapi.PodSandboxMetadata{Name: "web", Namespace: "ns"}, Labels: map[string]string{"a": "b"},
	}}
	running := &state.Container{ID: "c1", SandboxID: "p1", State: state.ContainerRunning,
		Config: &runtimeapi.ContainerConfig{Metadata: &runtimeapi.ContainerMetadata{Name: "app"}}}
	exited := &state.Container{ID: "c2", SandboxID: "p1", State: state.ContainerExited,
		Config: &runtimeapi.ContainerConfig{Metadata: &runtimeapi.ContainerMetadata{Name: "done"}}}
	pressure := &PressureSample{CPUSome: 10, CPUFull: 5, MemorySome: 7, IOSome: 3, IOFull: 1,
		CPUAvg: PressureAverages{Some: [3]float64{1.5, 1, 0.5}}}
	cg := func(cpu uint64, limit uint64) CgroupSample {
		return CgroupSample{
			CPU:      CPUSample{UsageNanos: cpu},
			Memory:   MemorySample{Usage: 100 << 20, WorkingSet: 60 << 20, RSS: 40 << 20, Swap: 1 << 20, HierPgFault: 11, HierPgMajFault: 2},
			Pressure: pressure, Limits: LimitsSample{Memory: limit},
		}
	}
	podCg := cg(3e9, 0)
	s := &PodSample{
		Pod: pod, Timestamp: now, CgroupDir: "/kubepods/p1", Cgroup: &podCg,
		Processes: &ProcessSample{Processes: 4},
		Network: []InterfaceSample{
			{Name: "cilium0", RxBytes: 1}, {Name: "eth0", RxBytes: 1000, RxErrors: 1, TxBytes: 2000, TxErrors: 2},
		},
		Containers: []ContainerSample{{
			Container: running, Cgroup: cg(2e9, 200<<20),
			WritableLayer: &FsSample{Mountpoint: "/var/lib/layers/x/diff", UsedBytes: 4096, InodesUsed: 3},
		}},
	}
	var rates CPURates
	got := PodSandboxStats(s, []*state.Container{running, exited}, &rates)

	if a := got.GetAttributes(); a.GetId() != "p1" || a.GetMetadata().GetName() != "web" || a.GetLabels()["a"] != "b" {
		t.Fatalf("attributes: %+v", a)
	}
	l := got.GetLinux()
	ts := now.UnixNano()
	checks := []struct {
		name      string
		got, want any
	}{
		{"cpu timestamp", l.GetCpu().GetTimestamp(), ts},
		{"cpu usage", l.GetCpu().GetUsageCoreNanoSeconds().GetValue(), uint64(3e9)},
		{"cpu psi some", l.GetCpu().GetPsi().GetSome().GetTotal(), uint64(10)},
		{"cpu psi avg10", l.GetCpu().GetPsi().GetSome().GetAvg10(), 1.5},
		{"cpu psi full", l.GetCpu().GetPsi().GetFull().GetTotal(), uint64(5)},
		{"memory working set", l.GetMemory().GetWorkingSetBytes().GetValue(), uint64(60 << 20)},
		{"memory usage", l.GetMemory().GetUsageBytes().GetValue(), uint64(100 << 20)},
		{"memory rss", l.GetMemory().GetRssBytes().GetValue(), uint64(40 << 20)},
		{"memory page faults", l.GetMemory().GetPageFaults().GetValue(), uint64(11)},
		{"memory major page faults", l.GetMemory().GetMajorPageFaults().GetValue(), uint64(2)},
		{"memory available unset without a limit", l.GetMemory().GetAvailableBytes() == nil, true},
		{"memory psi", l.GetMemory().GetPsi().GetSome().GetTotal(), uint64(7)},
		{"io psi", l.GetIo().GetPsi().GetFull().GetTotal(), uint64(1)},
		{"processes", l.GetProcess().GetProcessCount().GetValue(), uint64(4)},
		{"interfaces", len(l.GetNetwork().GetInterfaces()), 2},
		{"default interface is eth0", l.GetNetwork().GetDefaultInterface().GetName(), "eth0"},
		{"eth0 rx", l.GetNetwork().GetDefaultInterface().GetRxBytes().GetValue(), uint64(1000)},
		{"eth0 rx errors", l.GetNetwork().GetDefaultInterface().GetRxErrors().GetValue(), uint64(1)},
		{"eth0 tx", l.GetNetwork().GetDefaultInterface().GetTxBytes().GetValue(), uint64(2000)},
		{"eth0 tx errors", l.GetNetwork().GetDefaultInterface().GetTxErrors().GetValue(), uint64(2)},
		{"containers", len(l.GetContainers()), 2},
	}
	for _, c := range checks {
		t.Run(c.name, func(t *testing.T) {
			if c.got != c.want {
				t.Fatalf("got %v, want %v", c.got, c.want)
			}
		})
	}

	c1, c2 := l.GetContainers()[0], l.GetContainers()[1]
	t.Run("running container", func(t *testing.T) {
		if c1.GetAttributes().GetId() != "c1" || c1.GetCpu().GetUsageCoreNanoSeconds().GetValue() != 2e9 ||
			c1.GetMemory().GetAvailableBytes().GetValue() != 140<<20 || c1.GetSwap().GetSwapUsageBytes().GetValue() != 1<<20 {
			t.Fatalf("%+v", c1)
		}
		w := c1.GetWritableLayer()
		if w.GetFsId().GetMountpoint() != "/var/lib/layers/x/diff" || w.GetUsedBytes().GetValue() != 4096 || w.GetInodesUsed().GetValue() != 3 || w.GetTimestamp() != ts {
			t.Fatalf("writable layer: %+v", w)
		}
	})
	t.Run("exited container: attributes and timestamps only", func(t *testing.T) {
		if c2.GetAttributes().GetId() != "c2" || c2.GetCpu().GetTimestamp() != ts || c2.GetCpu().GetUsageCoreNanoSeconds() != nil ||
			c2.GetMemory().GetTimestamp() != ts || c2.GetWritableLayer() != nil {
			t.Fatalf("%+v", c2)
		}
	})
	t.Run("second sample: nanocores from the two", func(t *testing.T) {
		podCg.CPU.UsageNanos += 1e9 // one core over 2 s: half a core
		s.Containers[0].Cgroup.CPU.UsageNanos += 4e9
		s.Timestamp = now.Add(2 * time.Second)
		l := PodSandboxStats(s, []*state.Container{running}, &rates).GetLinux()
		if got := l.GetCpu().GetUsageNanoCores().GetValue(); got != 5e8 {
			t.Fatalf("pod nanocores %d, want 5e8", got)
		}
		if got := l.GetContainers()[0].GetCpu().GetUsageNanoCores().GetValue(); got != 2e9 {
			t.Fatalf("container nanocores %d, want 2e9", got)
		}
	})
	t.Run("stopped pod: timestamps only", func(t *testing.T) {
		l := PodSandboxStats(&PodSample{Pod: pod, Timestamp: now}, nil, &rates).GetLinux()
		if l.GetCpu().GetTimestamp() != ts || l.GetCpu().GetUsageCoreNanoSeconds() != nil || l.GetMemory().GetTimestamp() != ts ||
			l.GetNetwork() != nil || l.GetIo() != nil || l.GetProcess().GetProcessCount() != nil {
			t.Fatalf("%+v", l)
		}
	})
}

func TestCgroupDir(t *testing.T) {
	tests := []struct{ in, want string }{
		{"/kubepods/besteffort/pod1/abc", "/kubepods/besteffort/pod1/abc"},
		{"kubepods-besteffort-pod1.slice:noded:abc", "/kubepods.slice/kubepods-besteffort.slice/kubepods-besteffort-pod1.slice/noded-abc.scope"},
		{":noded:abc", "/system.slice/noded-abc.scope"},
		{"-.slice:noded:abc", "/noded-abc.scope"},
	}
	for _, tt := range tests {
		t.Run(tt.in, func(t *testing.T) {
			if got := CgroupDir(tt.in); got != tt.want {
				t.Fatalf("CgroupDir(%q) = %q, want %q", tt.in, got, tt.want)
			}
		})
	}
}
