// Package podmetrics samples pods for the kubelet: their cgroups, their
// containers' cgroups, processes and writable layers, and their network
// namespaces (Collector, one PodSample per pod), and serves the CRI
// metrics RPCs, ListMetricDescriptors and ListPodSandboxMetrics, from
// those samples with cadvisor's metric names and labels (Metrics).
//
// Samples are taken when asked for, never in the background: the kubelet
// scrapes at its own pace, and a node with no scraper pays nothing.
package podmetrics

import (
	"context"
	"iter"
	"slices"
	"time"

	runtimeapi "k8s.io/cri-api/pkg/apis/runtime/v1"
)

// Metrics serves the CRI metrics RPCs.
type Metrics struct {
	c *Collector
}

// NewMetrics serves metrics from c's samples.
func NewMetrics(c *Collector) *Metrics { return &Metrics{c: c} }

// ListMetricDescriptors describes every metric ListPodSandboxMetrics may
// report. It is fixed: the kubelet reads it once, when it starts.
func (m *Metrics) ListMetricDescriptors() []*runtimeapi.MetricDescriptor {
	out := make([]*runtimeapi.MetricDescriptor, len(families))
	for i, f := range families {
		keys := append(append(make([]string, 0, len(baseLabels)+len(f.labels)), baseLabels...), f.labels...)
		out[i] = &runtimeapi.MetricDescriptor{Name: f.name, Help: f.help, LabelKeys: keys}
	}
	return out
}

// ListPodSandboxMetrics samples every ready pod: the
// StreamPodSandboxMetrics items, collected.
func (m *Metrics) ListPodSandboxMetrics(ctx context.Context) []*runtimeapi.PodSandboxMetrics {
	return slices.Collect(m.StreamPodSandboxMetrics(ctx))
}

// StreamPodSandboxMetrics samples every ready pod and yields each pod's
// metrics in turn. The pods are read together (in parallel, at one
// moment), but their CRI metrics, the bulk (a few dozen labelled series
// per container), are built one pod at a time as they are sent.
func (m *Metrics) StreamPodSandboxMetrics(ctx context.Context) iter.Seq[*runtimeapi.PodSandboxMetrics] {
	return func(yield func(*runtimeapi.PodSandboxMetrics) bool) {
		samples := m.c.Sample(ctx)
		for i := range samples {
			if !yield(PodSandboxMetrics(&samples[i])) {
				return
			}
		}
	}
}

// PodSandboxMetrics turns a sample into the CRI's metrics: the pod's own
// (its cgroup, as cadvisor's pod-level series with an empty container
// label, and its network) and each container's.
func PodSandboxMetrics(s *PodSample) *runtimeapi.PodSandboxMetrics {
	md := s.Pod.Config.GetMetadata()
	pod := target{
		// The name label is the sandbox ID: two attempts of a pod have
		// the same name and namespace (and, without a cgroup parent, no
		// cgroup), and the kubelet rejects a scrape with a series twice.
		base: []string{"", s.CgroupDir, "", string(s.Pod.ID), md.GetNamespace(), md.GetName()},
		cg:   s.Cgroup, proc: s.Processes, net: s.Network,
		start: time.Unix(0, s.Pod.CreatedAt), seen: s.Timestamp,
	}
	out := &runtimeapi.PodSandboxMetrics{PodSandboxId: string(s.Pod.ID), Metrics: metricsOf(&pod)}
	for i := range s.Containers {
		c := &s.Containers[i]
		t := target{
			base: []string{c.Container.Config.GetMetadata().GetName(), c.CgroupDir, c.Container.ImageRef, string(c.Container.ID), md.GetNamespace(), md.GetName()},
			cg:   &c.Cgroup, proc: c.Processes, fs: c.WritableLayer,
			seen: s.Timestamp,
		}
		if c.Container.StartedAt != 0 {
			t.start = time.Unix(0, c.Container.StartedAt)
		}
		out.ContainerMetrics = append(out.ContainerMetrics, &runtimeapi.ContainerMetrics{
			ContainerId: string(c.Container.ID), Metrics: metricsOf(&t),
		})
	}
	return out
}

// metricsOf is every family's points for one target. Timestamps are 0:
// the values were read just now, not cached (the CRI's convention).
func metricsOf(t *target) []*runtimeapi.Metric {
	var out []*runtimeapi.Metric
	for _, f := range families {
		for _, p := range f.points(t) {
			labels := append(append(make([]string, 0, len(t.base)+len(p.labels)), t.base...), p.labels...)
			out = append(out, &runtimeapi.Metric{Name: f.name, MetricType: f.typ, LabelValues: labels, Value: &runtimeapi.UInt64Value{Value: p.value}})
		}
	}
	return out
}
