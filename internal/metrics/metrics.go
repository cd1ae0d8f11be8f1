// Package metrics owns noded's Prometheus registry and its /metrics server.
// It uses its own registry rather than the global default so that nothing
// registers itself behind the daemon's back: every collector is handed to
// Registry explicitly by cmd/noded.
package metrics

import (
	"context"
	"errors"
	"net"
	"net/http"
	"time"

	"github.com/prometheus/client_golang/prometheus"
	"github.com/prometheus/client_golang/prometheus/collectors"
	"github.com/prometheus/client_golang/prometheus/promhttp"
	"google.golang.org/grpc/codes"
)

// Namespace prefixes every metric noded exports.
const Namespace = "noded"

// Registry is noded's collector registry.
type Registry struct {
	reg      *prometheus.Registry
	requests *prometheus.CounterVec
	latency  *prometheus.HistogramVec
}

// New returns a registry with the Go runtime and process collectors and the
// per-RPC request metrics.
func New() *Registry {
	r := &Registry{
		reg: prometheus.NewRegistry(),
		requests: prometheus.NewCounterVec(prometheus.CounterOpts{
			Namespace: Namespace,
			Name:      "cri_requests_total",
			Help:      "CRI requests served, by RPC method and gRPC status code.",
		}, []string{"method", "code"}),
		latency: prometheus.NewHistogramVec(prometheus.HistogramOpts{
			Namespace: Namespace,
			Name:      "cri_request_duration_seconds",
			Help:      "Latency of CRI requests, by RPC method.",
			// From 1 ms (Version, List*) to ~80 s (image pulls).
			Buckets: prometheus.ExponentialBuckets(0.001, 2.5, 14),
		}, []string{"method"}),
	}
	r.reg.MustRegister(
		collectors.NewGoCollector(),
		collectors.NewProcessCollector(collectors.ProcessCollectorOpts{}),
		r.requests, r.latency,
	)
	return r
}

// Register adds collectors owned by domain packages (image pulls, pods).
func (r *Registry) Register(cs ...prometheus.Collector) error {
	for _, c := range cs {
		if err := r.reg.Register(c); err != nil {
			return err
		}
	}
	return nil
}

// Observe records one finished RPC; it implements cri.Observer.
func (r *Registry) Observe(method string, code codes.Code, d time.Duration) {
	r.requests.WithLabelValues(method, code.String()).Inc()
	r.latency.WithLabelValues(method).Observe(d.Seconds())
}

// Gatherer exposes the registry for tests and the HTTP handler.
func (r *Registry) Gatherer() prometheus.Gatherer { return r.reg }

// Server serves /metrics on a TCP address.
type Server struct {
	srv *http.Server
	ln  net.Listener
}

// Listen binds addr and returns a server ready to Serve. Binding happens
// here, not in Serve, so a taken port stops start-up with a clear error.
func (r *Registry) Listen(addr string) (*Server, error) {
	ln, err := net.Listen("tcp", addr)
	if err != nil {
		return nil, err
	}
	mux := http.NewServeMux()
	mux.Handle("/metrics", promhttp.HandlerFor(r.reg, promhttp.HandlerOpts{Registry: r.reg}))
	return &Server{ln: ln, srv: &http.Server{Handler: mux, ReadHeaderTimeout: 10 * time.Second}}, nil
}

// Addr is the bound address (useful with port 0).
func (s *Server) Addr() net.Addr { return s.ln.Addr() }

// Serve blocks until Shutdown.
func (s *Server) Serve() error {
	if err := s.srv.Serve(s.ln); !errors.Is(err, http.ErrServerClosed) {
		return err
	}
	return nil
}

// Shutdown stops the server, waiting for in-flight scrapes until ctx ends.
func (s *Server) Shutdown(ctx context.Context) error { return s.srv.Shutdown(ctx) }
