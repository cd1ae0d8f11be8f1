package sandbox

import (
	"context"
	"path/filepath"
	"strings"
	"testing"
	"time"

	runtimeapi "k8s.io/cri-api/pkg/apis/runtime/v1"

	"github.com/noded-dev/noded/internal/errdefs"
	"github.com/noded-dev/noded/internal/ids"
	"github.com/noded-dev/noded/internal/podmetrics"
	"github.com/noded-dev/noded/internal/state"
)

// fakeSampler stands in for the cgroups: every running container has
// used cpu[id] nanoseconds, every pod the sum of its containers'.
type fakeSampler struct {
	cpu map[ids.ContainerID]uint64
	// unreadable containers' cgroups are gone.
	unreadable map[ids.ContainerID]bool
}

func (f *fakeSampler) sample(c *state.Container) (podmetrics.ContainerSample, bool) {
	if f.unreadable[c.ID] {
		return podmetrics.ContainerSample{}, false
	}
	s := podmetrics.ContainerSample{Container: c, CgroupDir: "/pods/" + string(c.ID)}
	s.Cgroup.CPU.UsageNanos = f.cpu[c.ID]
	s.Cgroup.Memory = podmetrics.MemorySample{Usage: 3 << 20, WorkingSet: 2 << 20, RSS: 1 << 20, HierPgFault: 9}
	s.WritableLayer = &podmetrics.FsSample{Mountpoint: "/layers/" + string(c.StorageID), UsedBytes: 8192, InodesUsed: 2}
	return s, true
}

func (f *fakeSampler) SampleStats(_ context.Context, pods []*state.Sandbox, ctrs []*state.Container) []podmetrics.PodSample {
	var out []podmetrics.PodSample
	for _, sb := range pods {
		p := podmetrics.PodSample{Pod: sb, Timestamp: time.Now(), Cgroup: &podmetrics.CgroupSample{},
			Processes: &podmetrics.ProcessSample{Processes: 1},
			Network:   []podmetrics.InterfaceSample{{Name: "eth0", RxBytes: 100, TxBytes: 50}}}
		for _, c := range ctrs {
			if c.SandboxID != sb.ID || c.State != state.ContainerRunning {
				continue
			}
			if s, ok := f.sample(c); ok {
				p.Containers = append(p.Containers, s)
				p.Cgroup.CPU.UsageNanos += s.Cgroup.CPU.UsageNanos
				p.Processes.Processes++
			}
		}
		out = append(out, p)
	}
	return out
}

func (f *fakeSampler) SampleContainerStats(_ context.Context, ctrs []*state.Container) ([]podmetrics.ContainerSample, []bool) {
	out, ok := make([]podmetrics.ContainerSample, len(ctrs)), make([]bool, len(ctrs))
	for i, c := range ctrs {
		out[i], ok[i] = f.sample(c)
	}
	return out, ok
}

func hexID(c byte) string { return strings.Repeat(string(c), 64) }

// newTestStats records pod a (ready, app=web; containers a1 running, a2
// exited, a3 running with its cgroup gone), pod b (ready, app=db;
// container b1 running) and pod c (stopped, app=web; container c1
// exited).
func newTestStats(t *testing.T) (*Stats, *fakeSampler, *state.Store) {
	t.Helper()
	st, _, err := state.Open(filepath.Join(t.TempDir(), "state"))
	if err != nil {
		t.Fatal(err)
	}
	pod := func(id byte, ready bool, app string) {
		s := state.SandboxNotReady
		if ready {
			s = state.SandboxReady
		}
		sb := &state.Sandbox{ID: ids.SandboxID(hexID(id)), State: s, Config: &runtimeapi.PodSandboxConfig{
			Metadata: &runtimeapi.PodSandboxMetadata{Name: "pod-" + string(id)}, Labels: map[string]string{"app": app},
		}}
		if err := st.AddSandbox(sb); err != nil {
			t.Fatal(err)
		}
	}
	ctr := func(id, pod byte, s state.ContainerState) {
		c := &state.Container{ID: ids.ContainerID(hexID(id)), SandboxID: ids.SandboxID(hexID(pod)), State: s,
			StorageID: ids.ContainerID(hexID(id)), Config: &runtimeapi.ContainerConfig{
				Metadata: &runtimeapi.ContainerMetadata{Name: "ctr-" + string(id)}, Labels: map[string]string{"c": string(id)},
			}}
		if err := st.AddContainer(c); err != nil {
			t.Fatal(err)
		}
	}
	pod('a', true, "web")
	pod('b', true, "db")
	pod('c', false, "web")
	ctr('1', 'a', state.ContainerRunning)
	ctr('2', 'a', state.ContainerExited)
	ctr('3', 'a', state.ContainerRunning)
	ctr('4', 'b', state.ContainerRunning)
	ctr('5', 'c', state.ContainerExited)
	f := &fakeSampler{
		cpu:        map[ids.ContainerID]uint64{ids.ContainerID(hexID('1')): 1e9, ids.ContainerID(hexID('4')): 5e8},
		unreadable: map[ids.ContainerID]bool{ids.ContainerID(hexID('3')): true},
	}
	s := &Stats{base: &base{o: Options{Store: st}}, samples: f}
	return s, f, st
}

func podIDs(stats []*runtimeapi.PodSandboxStats) []string {
	var out []string
	for _, s := range stats {
		out = append(out, s.GetAttributes().GetId()[:1])
	}
	return out
}

func TestListPodSandboxStatsFilters(t *testing.T) {
	s, _, _ := newTestStats(t)
	tests := []struct {
		name   string
		filter *runtimeapi.PodSandboxStatsFilter
		want   string
	}{
		{"nil filter: every pod, stopped too", nil, "abc"},
		{"full id", &runtimeapi.PodSandboxStatsFilter{Id: hexID('b')}, "b"},
		{"id prefix", &runtimeapi.PodSandboxStatsFilter{Id: "aaaa"}, "a"},
		{"labels", &runtimeapi.PodSandboxStatsFilter{LabelSelector: map[string]string{"app": "web"}}, "ac"},
		{"id and labels", &runtimeapi.PodSandboxStatsFilter{Id: hexID('b'), LabelSelector: map[string]string{"app": "web"}}, ""},
		{"unknown id: empty", &runtimeapi.PodSandboxStatsFilter{Id: hexID('f')}, ""},
		{"unknown label: empty", &runtimeapi.PodSandboxStatsFilter{LabelSelector: map[string]string{"app": "none"}}, ""},
	}
	for _, tt := range tests {
		t.Run(tt.name, func(t *testing.T) {
			got := s.ListPodSandboxStats(context.Background(), tt.filter)
			if strings.Join(podIDs(got), "") != tt.want {
				t.Fatalf("pods %v, want %q", podIDs(got), tt.want)
			}
			if got == nil {
				t.Fatal("nil list: want an empty one")
			}
		})
	}
}

func TestPodSandboxStats(t *testing.T) {
	s, f, st := newTestStats(t)
	ctx := context.Background()
	t.Run("unknown pod is NotFound", func(t *testing.T) {
		if _, err := s.PodSandboxStats(ctx, ids.SandboxID(hexID('f'))); !errdefs.IsNotFound(err) {
			t.Fatalf("err = %v, want NotFound", err)
		}
	})
	t.Run("ready pod with its containers", func(t *testing.T) {
		got, err := s.PodSandboxStats(ctx, ids.SandboxID(hexID('a')))
		if err != nil {
			t.Fatal(err)
		}
		l := got.GetLinux()
		if got.GetAttributes().GetMetadata().GetName() != "pod-a" || got.GetAttributes().GetLabels()["app"] != "web" {
			t.Fatalf("attributes: %+v", got.GetAttributes())
		}
		if l.GetCpu().GetUsageCoreNanoSeconds().GetValue() != 1e9 || l.GetCpu().GetUsageNanoCores() != nil {
			t.Fatalf("cpu (first sample: no rate): %+v", l.GetCpu())
		}
		if l.GetProcess().GetProcessCount().GetValue() != 2 || l.GetNetwork().GetDefaultInterface().GetRxBytes().GetValue() != 100 {
			t.Fatalf("process %+v network %+v", l.GetProcess(), l.GetNetwork())
		}
		var names []string
		for _, c := range l.GetContainers() {
			names = append(names, c.GetAttributes().GetMetadata().GetName())
			used := c.GetCpu().GetUsageCoreNanoSeconds() != nil
			if want := c.GetAttributes().GetId() == hexID('1'); used != want {
				t.Errorf("%s: usage %v, want %v (only running, readable containers have usage)", names[len(names)-1], used, want)
			}
			if c.GetCpu().GetTimestamp() == 0 || c.GetMemory().GetTimestamp() == 0 {
				t.Errorf("%s: no timestamps", names[len(names)-1])
			}
		}
		if strings.Join(names, ",") != "ctr-1,ctr-2,ctr-3" {
			t.Fatalf("containers %v", names)
		}
	})
	t.Run("second sample has the rate", func(t *testing.T) {
		f.cpu[ids.ContainerID(hexID('1'))] += 1e9
		got, err := s.PodSandboxStats(ctx, ids.SandboxID(hexID('a')))
		if err != nil {
			t.Fatal(err)
		}
		if got.GetLinux().GetCpu().GetUsageNanoCores() == nil || got.GetLinux().GetContainers()[0].GetCpu().GetUsageNanoCores() == nil {
			t.Fatalf("no rate on the second sample: %+v", got.GetLinux().GetCpu())
		}
	})
	t.Run("stopped pod is not an error", func(t *testing.T) {
		got, err := s.PodSandboxStats(ctx, ids.SandboxID(hexID('c')))
		if err != nil {
			t.Fatal(err)
		}
		l := got.GetLinux()
		if l.GetCpu().GetTimestamp() == 0 || l.GetCpu().GetUsageCoreNanoSeconds() != nil || l.GetNetwork() != nil || len(l.GetContainers()) != 1 {
			t.Fatalf("stopped pod: %+v", l)
		}
	})
	t.Run("removed pods' and containers' samples are dropped", func(t *testing.T) {
		s.ListPodSandboxStats(ctx, nil)
		before := s.cpu.Len()
		if err := st.DeleteContainer(ids.ContainerID(hexID('4'))); err != nil {
			t.Fatal(err)
		}
		if err := st.DeleteSandbox(ids.SandboxID(hexID('b'))); err != nil {
			t.Fatal(err)
		}
		s.ListPodSandboxStats(ctx, nil)
		if after := s.cpu.Len(); after != before-2 {
			t.Fatalf("CPU samples kept: %d before, %d after removing a pod and its container", before, after)
		}
	})
}

func TestContainerStats(t *testing.T) {
	s, _, _ := newTestStats(t)
	ctx := context.Background()
	if _, err := s.ContainerStats(ctx, ids.ContainerID(hexID('f'))); !errdefs.IsNotFound(err) {
		t.Fatalf("unknown container: %v, want NotFound", err)
	}
	got, err := s.ContainerStats(ctx, ids.ContainerID(hexID('1')))
	if err != nil {
		t.Fatal(err)
	}
	if got.GetWritableLayer().GetUsedBytes().GetValue() != 8192 || got.GetWritableLayer().GetFsId().GetMountpoint() == "" ||
		got.GetMemory().GetWorkingSetBytes().GetValue() != 2<<20 {
		t.Fatalf("running container: %+v", got)
	}
	tests := []struct {
		name   string
		filter *runtimeapi.ContainerStatsFilter
		want   string
	}{
		{"all", nil, "12345"},
		{"by pod", &runtimeapi.ContainerStatsFilter{PodSandboxId: hexID('a')}, "123"},
		{"by id", &runtimeapi.ContainerStatsFilter{Id: hexID('4')}, "4"},
		{"by label", &runtimeapi.ContainerStatsFilter{LabelSelector: map[string]string{"c": "5"}}, "5"},
		{"no match", &runtimeapi.ContainerStatsFilter{Id: hexID('f')}, ""},
	}
	for _, tt := range tests {
		t.Run(tt.name, func(t *testing.T) {
			var got string
			for _, c := range s.ListContainerStats(ctx, tt.filter) {
				got += c.GetAttributes().GetId()[:1]
				if c.GetCpu().GetTimestamp() == 0 {
					t.Errorf("%s: no timestamp", c.GetAttributes().GetId()[:1])
				}
			}
			if got != tt.want {
				t.Fatalf("containers %q, want %q", got, tt.want)
			}
			var streamed string
			for c := range s.StreamContainerStats(ctx, tt.filter) {
				streamed += c.GetAttributes().GetId()[:1]
			}
			if streamed != tt.want {
				t.Fatalf("streamed %q, want %q", streamed, tt.want)
			}
		})
	}
	t.Run("stream stops when the consumer does", func(t *testing.T) {
		n := 0
		for range s.StreamContainerStats(ctx, nil) {
			n++
			break
		}
		if n != 1 {
			t.Fatalf("%d yielded", n)
		}
	})
}
