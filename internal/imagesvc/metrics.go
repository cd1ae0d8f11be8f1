package imagesvc

import (
	"github.com/prometheus/client_golang/prometheus"
)

const (
	metricsNamespace = "noded"
	metricsSubsystem = "image_pull"
)

type metrics struct {
	bytes          prometheus.Counter
	blobsFetched   prometheus.Counter
	blobsSkipped   *prometheus.CounterVec
	layersUnpacked prometheus.Counter
	layersReused   prometheus.Counter
	inFlight       prometheus.Gauge
	duration       *prometheus.HistogramVec
}

func newMetrics() *metrics {
	opts := func(name, help string) prometheus.Opts {
		return prometheus.Opts{Namespace: metricsNamespace, Subsystem: metricsSubsystem, Name: name, Help: help}
	}
	return &metrics{
		bytes: prometheus.NewCounter(prometheus.CounterOpts(opts("bytes_total",
			"Bytes of blobs (layers, configs) received from registries."))),
		blobsFetched: prometheus.NewCounter(prometheus.CounterOpts(opts("blobs_fetched_total",
			"Blobs downloaded from registries (each concurrent group downloads a blob once)."))),
		blobsSkipped: prometheus.NewCounterVec(prometheus.CounterOpts(opts("blobs_skipped_total",
			"Blobs a pull needed but did not download: reason=present (its layer was already in storage) or coalesced (it joined a download in flight).")),
			[]string{"reason"}),
		layersUnpacked: prometheus.NewCounter(prometheus.CounterOpts(opts("layers_unpacked_total",
			"Layers unpacked into storage."))),
		layersReused: prometheus.NewCounter(prometheus.CounterOpts(opts("layers_reused_total",
			"Layers a pull found already in storage instead of unpacking them."))),
		inFlight: prometheus.NewGauge(prometheus.GaugeOpts(opts("in_flight",
			"PullImage calls in progress."))),
		duration: prometheus.NewHistogramVec(prometheus.HistogramOpts{
			Namespace: metricsNamespace, Subsystem: metricsSubsystem, Name: "duration_seconds",
			Help:    "Duration of PullImage calls, by result (success or error).",
			Buckets: prometheus.ExponentialBuckets(0.05, 2, 15), // 50 ms .. ~27 min
		}, []string{"result"}),
	}
}

// Collectors are the service's Prometheus collectors, for
// metrics.Registry.Register.
func (s *Service) Collectors() []prometheus.Collector {
	m := s.metrics
	return []prometheus.Collector{m.bytes, m.blobsFetched, m.blobsSkipped, m.layersUnpacked, m.layersReused, m.inFlight, m.duration}
}
