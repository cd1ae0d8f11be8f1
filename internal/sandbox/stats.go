package sandbox

import (
	"context"
	"sync"
	"time"

	runtimeapi "k8s.io/cri-api/pkg/apis/runtime/v1"

	"github.com/noded-dev/noded/internal/cgroupstats"
	"github.com/noded-dev/noded/internal/ids"
	"github.com/noded-dev/noded/internal/log"
	"github.com/noded-dev/noded/internal/state"
)

// cpuSamples keeps each container's previous CPU sample, so that a stats
// call can report usage_nano_cores (the rate) besides the cumulative time.
type cpuSamples struct {
	mu   sync.Mutex
	last map[string]cpuSample
}

type cpuSample struct {
	at    time.Time
	nanos uint64
}

// rate records a sample and returns the CPU rate since the previous one,
// in nanoseconds per second (nano-cores); 0 for a first sample.
func (c *cpuSamples) rate(id string, at time.Time, nanos uint64) uint64 {
	c.mu.Lock()
	defer c.mu.Unlock()
	if c.last == nil {
		c.last = map[string]cpuSample{}
	}
	prev, ok := c.last[id]
	c.last[id] = cpuSample{at: at, nanos: nanos}
	if !ok || !at.After(prev.at) || nanos < prev.nanos {
		return 0
	}
	return uint64(float64(nanos-prev.nanos) / at.Sub(prev.at).Seconds())
}

func (c *cpuSamples) forget(id string) {
	c.mu.Lock()
	defer c.mu.Unlock()
	delete(c.last, id)
}

// Stats samples containers' cgroups for the kubelet's stats RPCs. It
// owns the previous CPU sample of each container (for the usage rate).
type Stats struct {
	*base
	cgroups cgroupstats.Reader
	cpu     cpuSamples
}

func newStats(b *base) *Stats { return &Stats{base: b, cgroups: cgroupstats.NewReader()} }

// forget drops a removed container's sample.
func (s *Stats) forget(id ids.ContainerID) { s.cpu.forget(string(id)) }

// ContainerStats samples one container's cgroup.
func (s *Stats) ContainerStats(ctx context.Context, id ids.ContainerID) (*runtimeapi.ContainerStats, error) {
	c, err := s.o.Store.Container(id)
	if err != nil {
		return nil, err
	}
	return s.statsOf(ctx, c), nil
}

// ListContainerStats samples the containers matching filter.
func (s *Stats) ListContainerStats(ctx context.Context, f *runtimeapi.ContainerStatsFilter) []*runtimeapi.ContainerStats {
	var out []*runtimeapi.ContainerStats
	for _, c := range s.o.Store.Containers() {
		if matchContainer(c, f) {
			out = append(out, s.statsOf(ctx, c))
		}
	}
	return out
}

// statsOf reports what the container's cgroup says. A container without a
// cgroup (created, or exited and cleaned up) reports zero usage with valid
// timestamps, as containerd does.
func (s *Stats) statsOf(ctx context.Context, c *state.Container) *runtimeapi.ContainerStats {
	now := time.Now()
	st := &runtimeapi.ContainerStats{
		Attributes: &runtimeapi.ContainerAttributes{
			Id: string(c.ID), Metadata: c.Config.GetMetadata(),
			Labels: c.Config.GetLabels(), Annotations: c.Config.GetAnnotations(),
		},
		Cpu:    &runtimeapi.CpuUsage{Timestamp: now.UnixNano()},
		Memory: &runtimeapi.MemoryUsage{Timestamp: now.UnixNano()},
	}
	if c.State != state.ContainerRunning {
		return st
	}
	sample, err := s.cgroups.Read(c.CgroupsPath)
	if err != nil {
		if !cgroupstats.IsGone(err) {
			log.FromContext(ctx).WithError(err).WithField("container", c.ID.Short()).Debug("reading cgroup stats")
		}
		return st
	}
	st.Cpu.UsageCoreNanoSeconds = &runtimeapi.UInt64Value{Value: sample.CPUNanos}
	st.Cpu.UsageNanoCores = &runtimeapi.UInt64Value{Value: s.cpu.rate(string(c.ID), now, sample.CPUNanos)}
	st.Memory.WorkingSetBytes = &runtimeapi.UInt64Value{Value: sample.WorkingSet}
	st.Memory.UsageBytes = &runtimeapi.UInt64Value{Value: sample.MemoryUsage}
	st.Memory.RssBytes = &runtimeapi.UInt64Value{Value: sample.RSS}
	st.Memory.PageFaults = &runtimeapi.UInt64Value{Value: sample.PageFaults}
	st.Memory.MajorPageFaults = &runtimeapi.UInt64Value{Value: sample.MajorFaults}
	return st
}
