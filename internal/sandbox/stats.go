package sandbox

import (
	"cmp"
	"context"
	"iter"
	"slices"
	"strings"
	"time"

	runtimeapi "k8s.io/cri-api/pkg/apis/runtime/v1"

	"github.com/noded-dev/noded/internal/ids"
	"github.com/noded-dev/noded/internal/podmetrics"
	"github.com/noded-dev/noded/internal/specgen"
	"github.com/noded-dev/noded/internal/state"
)

// sampler reads pods and containers (podmetrics.Collector): the one
// reader of cgroups, network namespaces and writable layers, shared with
// the CRI metrics.
type sampler interface {
	SampleStats(ctx context.Context, pods []*state.Sandbox, ctrs []*state.Container) []podmetrics.PodSample
	SampleContainerStats(ctx context.Context, ctrs []*state.Container) ([]podmetrics.ContainerSample, []bool)
}

// Stats serves the kubelet's stats RPCs, of containers and of pods with
// their containers, from podmetrics samples. It owns the previous CPU
// sample of each pod and container (for the usage rate).
type Stats struct {
	*base
	samples sampler
	cpu     podmetrics.CPURates
}

// newStats reads through a collector of its own that leaves writable
// layers out; UseCollector shares the daemon's, which measures them.
func newStats(b *base) *Stats {
	return &Stats{base: b, samples: podmetrics.NewCollector(podmetrics.Options{
		Records: b.o.Store, Systemd: b.o.Node.CgroupManager == specgen.SystemdManager,
	})}
}

// UseCollector makes the stats read through c (wired by cmd/noded, before
// serving, so that the stats and the metrics share one reader).
func (s *Stats) UseCollector(c *podmetrics.Collector) { s.samples = c }

// forget drops a removed container's sample.
func (s *Stats) forget(id ids.ContainerID) { s.cpu.Forget(string(id)) }

// ContainerStats samples one container.
func (s *Stats) ContainerStats(ctx context.Context, id ids.ContainerID) (*runtimeapi.ContainerStats, error) {
	c, err := s.o.Store.Container(id)
	if err != nil {
		return nil, err
	}
	return s.containerStats(ctx, []*state.Container{c})[0], nil
}

// ListContainerStats samples the containers matching filter, oldest
// first.
func (s *Stats) ListContainerStats(ctx context.Context, f *runtimeapi.ContainerStatsFilter) []*runtimeapi.ContainerStats {
	ctrs := slices.SortedFunc(eachContainer(s.o.Store, f), func(a, b *state.Container) int {
		return cmp.Or(cmp.Compare(a.CreatedAt, b.CreatedAt), strings.Compare(string(a.ID), string(b.ID)))
	})
	return s.containerStats(ctx, ctrs)
}

// StreamContainerStats is ListContainerStats a chunk of containers at a
// time (each chunk read in parallel, in ID order), stopping once ctx ends.
func (s *Stats) StreamContainerStats(ctx context.Context, f *runtimeapi.ContainerStatsFilter) iter.Seq[*runtimeapi.ContainerStats] {
	return func(yield func(*runtimeapi.ContainerStats) bool) {
		for chunk := range chunks(eachContainer(s.o.Store, f), streamChunk) {
			if ctx.Err() != nil {
				return
			}
			for _, st := range s.containerStats(ctx, chunk) {
				if !yield(st) {
					return
				}
			}
		}
	}
}

// containerStats reads the running ones of ctrs; any other (created,
// exited, or whose cgroup just went away) reports zero usage with valid
// timestamps, as containerd does.
func (s *Stats) containerStats(ctx context.Context, ctrs []*state.Container) []*runtimeapi.ContainerStats {
	var run []*state.Container
	for _, c := range ctrs {
		if c.State == state.ContainerRunning {
			run = append(run, c)
		}
	}
	samples, ok := s.samples.SampleContainerStats(ctx, run)
	read := map[ids.ContainerID]*podmetrics.ContainerSample{}
	for i := range run {
		if ok[i] {
			read[run[i].ID] = &samples[i]
		}
	}
	now := time.Now()
	out := make([]*runtimeapi.ContainerStats, 0, len(ctrs))
	for _, c := range ctrs {
		out = append(out, podmetrics.ContainerStats(c, read[c.ID], now, &s.cpu))
	}
	return out
}

// PodSandboxStats samples one pod and its containers. A pod that is not
// ready has nothing to read: its attributes come back without usage.
func (s *Stats) PodSandboxStats(ctx context.Context, id ids.SandboxID) (*runtimeapi.PodSandboxStats, error) {
	sb, err := s.o.Store.Sandbox(id)
	if err != nil {
		return nil, err
	}
	return s.podStats(ctx, []*state.Sandbox{sb}, s.o.Store.SandboxContainers(id))[0], nil
}

// ListPodSandboxStats samples the pods matching filter (ID prefix and
// labels, as ListPodSandbox matches them), ready or not. It also drops
// the CPU samples of pods and containers removed since the last call.
func (s *Stats) ListPodSandboxStats(ctx context.Context, f *runtimeapi.PodSandboxStatsFilter) []*runtimeapi.PodSandboxStats {
	return slices.AppendSeq([]*runtimeapi.PodSandboxStats{}, s.StreamPodSandboxStats(ctx, f))
}

// StreamPodSandboxStats is ListPodSandboxStats a chunk of pods at a time
// (each chunk read in parallel, oldest pods first), stopping once ctx
// ends. Only the IDs are read up front: a pod's record, and its
// containers' (the store's per-pod index), are copied when its chunk is
// reached, so no more than a chunk's records and samples are held. A pod
// removed meanwhile is left out, none comes twice.
func (s *Stats) StreamPodSandboxStats(ctx context.Context, f *runtimeapi.PodSandboxStatsFilter) iter.Seq[*runtimeapi.PodSandboxStats] {
	return func(yield func(*runtimeapi.PodSandboxStats) bool) {
		defer s.keepLive()
		pods := func(yield func(*state.Sandbox) bool) {
			for _, id := range s.o.Store.SandboxIDsOldestFirst() {
				if !strings.HasPrefix(string(id), f.GetId()) {
					continue // ruled out by its ID: no copy made
				}
				sb, err := s.o.Store.Sandbox(id)
				if err != nil || !matchLabels(f.GetLabelSelector(), sb.Config.GetLabels()) {
					continue // removed since the IDs were read, or filtered out
				}
				if !yield(sb) {
					return
				}
			}
		}
		for chunk := range chunks(pods, streamChunk) {
			if ctx.Err() != nil {
				return
			}
			var ctrs []*state.Container
			for _, sb := range chunk {
				ctrs = append(ctrs, s.o.Store.SandboxContainers(sb.ID)...)
			}
			for _, st := range s.podStats(ctx, chunk, ctrs) {
				if !yield(st) {
					return
				}
			}
		}
	}
}

// podStats reads the ready ones of pods, each with its containers (those
// of all that are theirs: all may hold others).
func (s *Stats) podStats(ctx context.Context, pods []*state.Sandbox, all []*state.Container) []*runtimeapi.PodSandboxStats {
	ctrs := map[ids.SandboxID][]*state.Container{}
	for _, c := range all {
		ctrs[c.SandboxID] = append(ctrs[c.SandboxID], c)
	}
	var ready []*state.Sandbox
	for _, sb := range pods {
		if sb.State == state.SandboxReady {
			ready = append(ready, sb)
		}
	}
	read := map[ids.SandboxID]*podmetrics.PodSample{}
	samples := s.samples.SampleStats(ctx, ready, all)
	for i := range samples {
		read[samples[i].Pod.ID] = &samples[i]
	}
	now := time.Now()
	out := make([]*runtimeapi.PodSandboxStats, 0, len(pods))
	for _, sb := range pods {
		p := read[sb.ID]
		if p == nil {
			p = &podmetrics.PodSample{Pod: sb, Timestamp: now}
		}
		out = append(out, podmetrics.PodSandboxStats(p, ctrs[sb.ID], &s.cpu))
	}
	return out
}

// keepLive drops the CPU samples of pods and containers no longer
// recorded (a container's is dropped at its removal too, by forget; a
// pod's only here, and after a restart none are left to drop).
func (s *Stats) keepLive() {
	pods, ctrs := s.o.Store.SandboxIDs(), s.o.Store.ContainerIDs()
	live := make(map[string]bool, len(pods)+len(ctrs))
	for _, id := range pods {
		live[podmetrics.PodKey(string(id))] = true
	}
	for _, id := range ctrs {
		live[string(id)] = true
	}
	s.cpu.Keep(func(key string) bool { return live[key] })
}
