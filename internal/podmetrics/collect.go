package podmetrics

import (
	"context"
	"errors"
	"os"
	"runtime"
	"sync"
	"time"

	"github.com/sirupsen/logrus"

	"github.com/noded-dev/noded/internal/log"
	"github.com/noded-dev/noded/internal/state"
	"github.com/noded-dev/noded/internal/storage"
)

// records is the pod and container records (state.Store); it returns
// copies, so a sample never races with an update.
type records interface {
	Sandboxes() []*state.Sandbox
	Containers() []*state.Container
}

// layers measures containers' writable layers (storage.Store).
type layers interface {
	WritableLayerUsage(id storage.ContainerID) (storage.FsUsage, error)
}

// netReader reads the interfaces of a pinned network namespace
// (NetNSReader).
type netReader interface {
	Interfaces(netnsPath string) ([]InterfaceSample, error)
}

// Options wire a Collector.
type Options struct {
	Records records
	// Layers measures writable layers; nil leaves the filesystem out.
	Layers layers
	// Network reads pods' network namespaces; nil is NetNSReader.
	Network netReader
	// Systemd says pod cgroup parents are systemd slices (cgroup-manager
	// systemd) rather than cgroupfs paths.
	Systemd bool
}

// Collector samples pods: the pod cgroup, each running container's cgroup
// and processes and writable layer, and the pod's network namespace. It
// keeps nothing between samples but device names.
type Collector struct {
	o        Options
	cgroups  cgroupReader
	procRoot string
	fs       filesystems
	// parallel bounds how many pods are read at once: each read is a few
	// dozen small files, a netlink round trip and a layer walk.
	parallel int
}

// NewCollector returns a Collector reading the host's cgroups, /proc and
// network namespaces.
func NewCollector(o Options) *Collector {
	if o.Network == nil {
		o.Network = NetNSReader{}
	}
	return &Collector{o: o, cgroups: newCgroupReader(), procRoot: "/proc", parallel: runtime.GOMAXPROCS(0)}
}

// Sample reads every ready pod; stopped pods hold no cgroups or network
// namespace and are left out. A pod or container whose reading fails is
// logged and left out (a container) or reported without that part (a
// pod), never failing the rest.
func (c *Collector) Sample(ctx context.Context) []PodSample {
	var pods []*state.Sandbox
	for _, sb := range c.o.Records.Sandboxes() {
		if sb.State == state.SandboxReady {
			pods = append(pods, sb)
		}
	}
	return c.SamplePods(ctx, pods, c.o.Records.Containers())
}

// SamplePods reads pods in full, as Sample does, with those of ctrs
// that are theirs, several at once. A pod not read because ctx ended is
// left out.
func (c *Collector) SamplePods(ctx context.Context, pods []*state.Sandbox, ctrs []*state.Container) []PodSample {
	return c.samplePods(ctx, pods, ctrs, full)
}

// SampleStats reads pods (which the caller picked, ready ones: a stopped
// pod has nothing to read) with those of ctrs that are theirs, for the CRI
// stats: CPU time, memory and pressure from the cgroups, the pod's
// process count and network, the writable layers. What only the metrics
// report (I/O, hugetlb, limits but memory's, threads, open files, the
// containers' process counts) is left out: on cgroup v1 that is a tenth
// of the files to read, and the kubelet asks for stats every few seconds.
func (c *Collector) SampleStats(ctx context.Context, pods []*state.Sandbox, ctrs []*state.Container) []PodSample {
	return c.samplePods(ctx, pods, ctrs, statsOnly)
}

func (c *Collector) samplePods(ctx context.Context, pods []*state.Sandbox, ctrs []*state.Container, what level) []PodSample {
	byPod := map[string][]*state.Container{}
	for _, ctr := range ctrs {
		byPod[string(ctr.SandboxID)] = append(byPod[string(ctr.SandboxID)], ctr)
	}
	out := make([]PodSample, len(pods))
	done := c.each(ctx, len(pods), func(i int) {
		out[i] = c.pod(ctx, pods[i], byPod[string(pods[i].ID)], what)
	})
	n := 0
	for i := range out {
		if done[i] {
			out[n] = out[i]
			n++
		}
	}
	return out[:n]
}

// SampleContainerStats reads running containers for the CRI stats (as
// SampleStats reads them), several at once; ok[i] says whether ctrs[i]
// was read (its cgroup may be gone or unreadable: logged).
func (c *Collector) SampleContainerStats(ctx context.Context, ctrs []*state.Container) (out []ContainerSample, ok []bool) {
	out, ok = make([]ContainerSample, len(ctrs)), make([]bool, len(ctrs))
	c.each(ctx, len(ctrs), func(i int) {
		lg := log.FromContext(ctx).WithFields(logrus.Fields{"pod": ctrs[i].SandboxID.Short(), "container": ctrs[i].ID.Short()})
		out[i], ok[i] = c.container(ctx, lg, ctrs[i], statsOnly)
	})
	return out, ok
}

// level is how much of a pod a reading covers.
type level int

const (
	// full is everything the metrics report.
	full level = iota
	// statsOnly is what the CRI stats report.
	statsOnly
)

// each runs fn(0..n-1), at most c.parallel at once, and says which ran
// (none once ctx ends).
func (c *Collector) each(ctx context.Context, n int, fn func(i int)) []bool {
	done := make([]bool, n)
	sem := make(chan struct{}, max(1, c.parallel))
	var wg sync.WaitGroup
	for i := range n {
		wg.Add(1)
		sem <- struct{}{}
		go func() {
			defer func() { <-sem; wg.Done() }()
			if ctx.Err() != nil {
				return
			}
			fn(i)
			done[i] = true
		}()
	}
	wg.Wait()
	return done
}

// Pod reads one pod and those of ctrs that run, in full.
func (c *Collector) Pod(ctx context.Context, sb *state.Sandbox, ctrs []*state.Container) PodSample {
	return c.pod(ctx, sb, ctrs, full)
}

func (c *Collector) pod(ctx context.Context, sb *state.Sandbox, ctrs []*state.Container, what level) PodSample {
	lg := log.FromContext(ctx).WithField("pod", sb.ID.Short())
	p := PodSample{Pod: sb, Timestamp: time.Now(), CgroupDir: podCgroupDir(sb.CgroupParent, c.o.Systemd)}
	if p.CgroupDir != "" {
		if cg, err := c.cgroups.read(p.CgroupDir, what); err != nil {
			logRead(lg, err, "reading the pod cgroup")
		} else {
			c.cgroups.nameDevices(cg)
			p.Cgroup = cg
			if p.Processes, err = processes(c.procRoot, c.cgroups.procsDir(p.CgroupDir), 0, what == full); err != nil {
				logRead(lg, err, "counting the pod's processes")
			}
		}
	}
	if sb.NetNSPath != "" {
		ifs, err := c.o.Network.Interfaces(sb.NetNSPath)
		switch {
		case errors.Is(err, os.ErrNotExist):
			// Unpinned by a StopPodSandbox running now.
			lg.WithError(err).Debug("reading the pod's network counters")
		case err != nil:
			lg.WithError(err).Warn("reading the pod's network counters")
		default:
			p.Network = ifs
		}
	}
	for _, ctr := range ctrs {
		if ctr.State != state.ContainerRunning {
			continue
		}
		if s, ok := c.container(ctx, lg.WithField("container", ctr.ID.Short()), ctr, what); ok {
			p.Containers = append(p.Containers, s)
		}
	}
	return p
}

// container reads one running container; false leaves it out of its
// pod's sample (its cgroup is gone or unreadable).
func (c *Collector) container(ctx context.Context, lg *logrus.Entry, ctr *state.Container, what level) (ContainerSample, bool) {
	s := ContainerSample{Container: ctr}
	if ctr.CgroupsPath == "" {
		lg.Warn("container has no cgroup recorded: left out of the pod's metrics")
		return s, false
	}
	s.CgroupDir = CgroupDir(ctr.CgroupsPath)
	cg, err := c.cgroups.read(s.CgroupDir, what)
	if err != nil {
		logRead(lg, err, "reading the container's cgroup: left out of the pod's metrics")
		return s, false
	}
	c.cgroups.nameDevices(cg)
	s.Cgroup = *cg
	if what == full {
		if s.Processes, err = processes(c.procRoot, c.cgroups.procsDir(s.CgroupDir), ctr.Pid, true); err != nil {
			logRead(lg, err, "counting the container's processes")
		}
	}
	if c.o.Layers != nil && ctr.StorageID != "" && ctx.Err() == nil {
		if u, err := c.o.Layers.WritableLayerUsage(ctr.StorageID); err != nil {
			lg.WithError(err).Warn("measuring the container's writable layer")
		} else if s.WritableLayer, err = c.fs.sample(u); err != nil {
			lg.WithError(err).Warn("reading the writable layer's filesystem")
		}
	}
	return s, true
}

// logRead logs a failed read: at debug level when the cgroup just went
// away (the container exited or the pod is stopping: a race, not a
// fault), as a warning otherwise.
func logRead(lg *logrus.Entry, err error, what string) {
	if errors.Is(err, errCgroupGone) {
		lg.WithError(err).Debug(what)
		return
	}
	lg.WithError(err).Warn(what)
}
