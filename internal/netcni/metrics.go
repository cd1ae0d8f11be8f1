package netcni

import (
	"time"

	"github.com/prometheus/client_golang/prometheus"
)

// metrics are the Prometheus metrics of the CNI operations; cmd/noded
// registers them (Manager.Collectors).
type metrics struct {
	durations *prometheus.HistogramVec
}

func newMetrics() *metrics {
	return &metrics{durations: prometheus.NewHistogramVec(prometheus.HistogramOpts{
		Namespace: "noded", Name: "cni_operation_duration_seconds",
		Help: "Latency of CNI ADD and DEL of a pod's network (all plugins of the network list), by operation and result (ok, error).",
		// From 1 ms to ~40 s (a plugin that hangs until its timeout).
		Buckets: prometheus.ExponentialBuckets(0.001, 2.5, 12),
	}, []string{"operation", "result"})}
}

func (m *metrics) observe(op string, err error, d time.Duration) {
	result := "ok"
	if err != nil {
		result = "error"
	}
	m.durations.WithLabelValues(op, result).Observe(d.Seconds())
}

// Collectors are the manager's metrics, for the daemon's registry.
func (m *Manager) Collectors() []prometheus.Collector {
	return []prometheus.Collector{m.metrics.durations}
}
