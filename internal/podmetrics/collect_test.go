package podmetrics

import (
	"context"
	"errors"
	"os"
	"path/filepath"
	"slices"
	"strings"
	"testing"

	"github.com/sirupsen/logrus"
	logtest "github.com/sirupsen/logrus/hooks/test"
	runtimeapi "k8s.io/cri-api/pkg/apis/runtime/v1"

	"github.com/noded-dev/noded/internal/ids"
	"github.com/noded-dev/noded/internal/log"
	"github.com/noded-dev/noded/internal/state"
	"github.com/noded-dev/noded/internal/storage"
)

type fakeRecords struct {
	pods []*state.Sandbox
	ctrs []*state.Container
}

func (f fakeRecords) Sandboxes() []*state.Sandbox    { return f.pods }
func (f fakeRecords) Containers() []*state.Container { return f.ctrs }

type fakeNet map[string][]InterfaceSample

func (f fakeNet) Interfaces(path string) ([]InterfaceSample, error) {
	ifs, ok := f[path]
	if !ok {
		return nil, errors.New("no such namespace")
	}
	return ifs, nil
}

type fakeLayers struct{ dir string }

func (f fakeLayers) WritableLayerUsage(id storage.ContainerID) (storage.FsUsage, error) {
	if id != "s1" {
		return storage.FsUsage{}, errors.New("no layer")
	}
	return storage.FsUsage{Mountpoint: f.dir, UsedBytes: 4096, InodesUsed: 3}, nil
}

func running(id, pod, cgroup string, pid int) *state.Container {
	return &state.Container{
		ID: ids.ContainerID(id), SandboxID: ids.SandboxID(pod), State: state.ContainerRunning,
		CgroupsPath: cgroup, Pid: pid, StorageID: ids.ContainerID("s" + strings.TrimPrefix(id, "c")),
		Config: &runtimeapi.ContainerConfig{Metadata: &runtimeapi.ContainerMetadata{Name: "n" + id}},
	}
}

// TestSample reads a fake host: a ready pod with containers in every
// state (one of them broken), and a stopped pod.
func TestSample(t *testing.T) {
	root, proc := t.TempDir(), t.TempDir()
	files(t, root, v1Tree("/kp/p1"))    // the pod cgroup
	files(t, root, v1Tree("/kp/p1/c1")) // a good container
	files(t, root, v1Tree("/kp/p1/c2")) // a broken one
	files(t, root, v1Tree("/kp/p1/c4")) // an exited one (cgroup not yet removed)
	files(t, root, map[string]string{
		"memory/kp/p1/c2/memory.stat": "cache x\n",
		"pids/kp/p1/c1/cgroup.procs":  "101\n",
		"pids/kp/p1/cgroup.procs":     "100\n",
		"101/limits": "Limit                     Soft Limit           Hard Limit           Units\n" +
			"Max open files            1024                 4096                 files\n",
	})
	// The fake /proc: the limits file went to the cgroup root above.
	if err := os.Rename(filepath.Join(root, "101"), filepath.Join(proc, "101")); err != nil {
		t.Fatal(err)
	}
	fdDir := filepath.Join(proc, "101", "fd")
	if err := os.MkdirAll(fdDir, 0o755); err != nil {
		t.Fatal(err)
	}
	for name, target := range map[string]string{"0": "/dev/null", "1": "pipe:[7]", "3": "socket:[42]"} {
		if err := os.Symlink(target, filepath.Join(fdDir, name)); err != nil {
			t.Fatal(err)
		}
	}

	meta := func(name string) *runtimeapi.PodSandboxConfig {
		return &runtimeapi.PodSandboxConfig{Metadata: &runtimeapi.PodSandboxMetadata{Name: name, Namespace: "ns"}}
	}
	exited := running("c4", "p1", "/kp/p1/c4", 0)
	exited.State = state.ContainerExited
	created := running("c5", "p1", "/kp/p1/c5", 0)
	created.State = state.ContainerCreated
	recs := fakeRecords{
		pods: []*state.Sandbox{
			{ID: "p1", State: state.SandboxReady, CgroupParent: "/kp/p1", NetNSPath: "/run/netns/p1", Config: meta("one")},
			{ID: "p2", State: state.SandboxNotReady, CgroupParent: "/kp/p2", Config: meta("two")},
			{ID: "p3", State: state.SandboxReady, NetNSPath: "/run/netns/gone", Config: meta("three")},
		},
		ctrs: []*state.Container{
			running("c1", "p1", "/kp/p1/c1", 101),
			running("c2", "p1", "/kp/p1/c2", 0),
			running("c3", "p1", "/kp/p1/c3", 0), // its cgroup is gone: it just exited
			exited, created,
			running("c6", "p2", "/kp/p2/c6", 0),
		},
	}
	c := &Collector{
		o: Options{Records: recs, Layers: fakeLayers{dir: t.TempDir()},
			Network: fakeNet{"/run/netns/p1": {{Name: "eth0", RxBytes: 10}}}},
		cgroups: cgroupReader{root: root}, procRoot: proc, parallel: 2,
	}
	logger, hook := logtest.NewNullLogger()
	logger.SetLevel(logrus.DebugLevel)
	ctx := log.WithContext(context.Background(), logrus.NewEntry(logger))

	got := c.Sample(ctx)
	var pods []string
	for _, p := range got {
		pods = append(pods, string(p.Pod.ID))
	}
	if !slices.Equal(pods, []string{"p1", "p3"}) {
		t.Fatalf("sampled pods %q, want the ready ones [p1 p3]", pods)
	}
	p1, p3 := got[0], got[1]

	t.Run("pod", func(t *testing.T) {
		if p1.CgroupDir != "/kp/p1" || p1.Cgroup == nil || p1.Cgroup.CPU.UsageNanos != 3500000000 {
			t.Errorf("pod cgroup %q %+v", p1.CgroupDir, p1.Cgroup)
		}
		// GetAllPids walks the subtree: the pod's and c1's processes.
		if p1.Processes == nil || p1.Processes.Processes != 2 {
			t.Errorf("pod processes %+v", p1.Processes)
		}
		if len(p1.Network) != 1 || p1.Network[0].Name != "eth0" {
			t.Errorf("pod network %+v", p1.Network)
		}
	})
	t.Run("one failing container does not drop the others", func(t *testing.T) {
		var ctrs []string
		for _, cs := range p1.Containers {
			ctrs = append(ctrs, string(cs.Container.ID))
		}
		if !slices.Equal(ctrs, []string{"c1"}) {
			t.Fatalf("containers %q, want [c1]", ctrs)
		}
		c1 := p1.Containers[0]
		if c1.CgroupDir != "/kp/p1/c1" || c1.Cgroup.Memory.WorkingSet != 6000000 {
			t.Errorf("c1 cgroup %q %+v", c1.CgroupDir, c1.Cgroup.Memory)
		}
		if pr := c1.Processes; pr == nil || pr.Processes != 1 || pr.FDs != 3 || pr.Sockets != 1 || pr.OpenFilesSoft == nil || *pr.OpenFilesSoft != 1024 {
			t.Errorf("c1 processes %+v", pr)
		}
		if fs := c1.WritableLayer; fs == nil || fs.UsedBytes != 4096 || fs.CapacityBytes == 0 || fs.InodesTotal == 0 || fs.Device == "" {
			t.Errorf("c1 writable layer %+v", fs)
		}
	})
	t.Run("pod without a cgroup parent or a readable network namespace", func(t *testing.T) {
		if p3.CgroupDir != "" || p3.Cgroup != nil || p3.Network != nil || len(p3.Containers) != 0 {
			t.Errorf("p3 %+v", p3)
		}
	})
	t.Run("logs", func(t *testing.T) {
		levels := map[string]logrus.Level{}
		for _, e := range hook.AllEntries() {
			key := e.Message
			if c, ok := e.Data["container"]; ok {
				key = c.(string) + ": " + key
			}
			levels[key] = e.Level
		}
		for key, want := range map[string]logrus.Level{
			"c2: reading the container's cgroup: left out of the pod's metrics": logrus.WarnLevel,
			"c3: reading the container's cgroup: left out of the pod's metrics": logrus.DebugLevel,
			"reading the pod's network counters":                                logrus.WarnLevel,
		} {
			if got, ok := levels[key]; !ok || got != want {
				t.Errorf("log %q: level %v (logged: %v), want %v", key, got, ok, want)
			}
		}
	})
	t.Run("stats reading", func(t *testing.T) {
		got := c.SampleStats(ctx, recs.pods[:1], recs.ctrs)
		if len(got) != 1 || len(got[0].Containers) != 1 {
			t.Fatalf("SampleStats: %+v", got)
		}
		p := got[0]
		if p.Cgroup == nil || p.Cgroup.CPU.UsageNanos != 3500000000 || p.Cgroup.Memory.WorkingSet != 6000000 || p.Cgroup.Limits.Memory != 67108864 {
			t.Errorf("pod cgroup %+v", p.Cgroup)
		}
		// The count, not the open files; the metrics-only parts unread.
		if p.Processes == nil || p.Processes.Processes != 2 || p.Processes.FDs != 0 {
			t.Errorf("pod processes %+v", p.Processes)
		}
		if p.Cgroup.IO != nil || p.Cgroup.Threads != 0 || p.Cgroup.Limits.CPUShares != 0 {
			t.Errorf("metrics-only parts read: %+v", p.Cgroup)
		}
		c1 := p.Containers[0]
		if c1.Processes != nil || c1.WritableLayer == nil || c1.WritableLayer.UsedBytes != 4096 || c1.Cgroup.Memory.RSS != 3000000 {
			t.Errorf("c1 %+v", c1)
		}
		samples, ok := c.SampleContainerStats(ctx, recs.ctrs[:3])
		if !slices.Equal(ok, []bool{true, false, false}) || samples[0].Cgroup.CPU.UsageNanos != 3500000000 {
			t.Errorf("SampleContainerStats: ok %v, c1 %+v", ok, samples[0].Cgroup.CPU)
		}
	})
	t.Run("cancelled", func(t *testing.T) {
		ctx, cancel := context.WithCancel(ctx)
		cancel()
		if got := c.Sample(ctx); len(got) != 0 {
			t.Errorf("%d pods sampled after the request ended", len(got))
		}
	})
}
