package oci

import (
	"time"

	"github.com/prometheus/client_golang/prometheus"

	"github.com/noded-dev/noded/internal/errdefs"
	"github.com/noded-dev/noded/internal/oci/wire"
)

// monitorMetrics are the Prometheus metrics of noded's calls to the pod
// monitors and of what they report. The collectors are registered by
// cmd/noded (Runtime.Collectors); nothing registers itself.
type monitorMetrics struct {
	calls     *prometheus.CounterVec
	durations *prometheus.HistogramVec
	oomKilled prometheus.Counter
}

func newMonitorMetrics() *monitorMetrics {
	return &monitorMetrics{
		calls: prometheus.NewCounterVec(prometheus.CounterOpts{
			Namespace: "noded", Name: "monitor_calls_total",
			Help: "Calls to the pod monitors (conmon-go), by operation and result (ok, not_found, unavailable: no monitor answered, error).",
		}, []string{"op", "result"}),
		durations: prometheus.NewHistogramVec(prometheus.HistogramOpts{
			Namespace: "noded", Name: "monitor_call_duration_seconds",
			Help: "Latency of calls to the pod monitors, by operation (not wait, which lasts until the container exits).",
			// From 100 µs (state) to ~20 s (a create under load).
			Buckets: prometheus.ExponentialBuckets(0.0001, 2.5, 12),
		}, []string{"op"}),
		oomKilled: prometheus.NewCounter(prometheus.CounterOpts{
			Namespace: "noded", Name: "containers_oom_killed_total",
			Help: "Container exits the kernel's OOM killer caused, as the monitors report them while noded runs.",
		}),
	}
}

// observe records one finished monitor call.
func (m *monitorMetrics) observe(op string, err error, d time.Duration) {
	result := "ok"
	switch {
	case err == nil:
	case isUnavailable(err):
		result = "unavailable"
	case errdefs.IsNotFound(err):
		result = "not_found"
	default:
		result = "error"
	}
	m.calls.WithLabelValues(op, result).Inc()
	if op != wire.OpWait {
		m.durations.WithLabelValues(op).Observe(d.Seconds())
	}
}

// Collectors are the metrics of the runtime, for the daemon's registry.
func (r *Runtime) Collectors() []prometheus.Collector {
	return []prometheus.Collector{r.metrics.calls, r.metrics.durations, r.metrics.oomKilled}
}
