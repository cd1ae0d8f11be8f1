// Package tracing is noded's OpenTelemetry tracing: a tracer provider that
// exports spans over OTLP/gRPC (tracing-endpoint), the gRPC server handler
// that gives each CRI request its span (joining the caller's trace when the
// kubelet sends one), and Start, which the domain packages call for their
// child spans (CNI ADD/DEL, monitor calls, layer fetches and unpacks,
// coalesced waits).
//
// There is no global tracer: a child span takes its provider from the span
// already in the context, so code reached from a request traces into that
// request's trace, and code reached from nowhere (tracing off, a request
// not sampled, start-up work) gets non-recording spans at no cost. Shared
// work that outlives the request that started it (a coalesced pull) runs
// on a context of its own; Detach hands it the starting request's span.
package tracing

import (
	"context"
	"fmt"
	"time"

	"go.opentelemetry.io/contrib/instrumentation/google.golang.org/grpc/otelgrpc"
	"go.opentelemetry.io/otel/attribute"
	"go.opentelemetry.io/otel/codes"
	"go.opentelemetry.io/otel/exporters/otlp/otlptrace/otlptracegrpc"
	"go.opentelemetry.io/otel/propagation"
	sdkresource "go.opentelemetry.io/otel/sdk/resource"
	sdktrace "go.opentelemetry.io/otel/sdk/trace"
	semconv "go.opentelemetry.io/otel/semconv/v1.43.0"
	"go.opentelemetry.io/otel/trace"
	"google.golang.org/grpc/stats"
)

// instrumentation is the name of noded's tracer.
const instrumentation = "github.com/noded-dev/noded"

// Options configure New.
type Options struct {
	// Endpoint is the OTLP/gRPC collector, host:port; empty turns tracing
	// off.
	Endpoint string
	// SamplingPerMillion is the share of new traces recorded, out of a
	// million (CRI-O's tracing_sampling_rate_per_million). A request that
	// arrives in a trace its caller sampled is always recorded.
	SamplingPerMillion int
	// Version is noded's version, a resource attribute of every span.
	Version string
	// BatchTimeout is how long spans wait before they are sent (0: 5 s,
	// the SDK's default; tests shorten it).
	BatchTimeout time.Duration
}

// Provider is noded's tracer provider; a nil *Provider is tracing off.
type Provider struct {
	tp *sdktrace.TracerProvider
}

// New returns the provider Options describe, or nil when tracing is off.
// The exporter connects lazily: a collector that is down costs dropped
// spans, never a failed start or a slow request.
func New(o Options) (*Provider, error) {
	if o.Endpoint == "" {
		return nil, nil
	}
	if o.SamplingPerMillion < 0 || o.SamplingPerMillion > 1_000_000 {
		return nil, fmt.Errorf("tracing sampling rate %d per million: want 0 to 1000000", o.SamplingPerMillion)
	}
	exp, err := otlptracegrpc.New(context.Background(), otlptracegrpc.WithEndpoint(o.Endpoint), otlptracegrpc.WithInsecure())
	if err != nil {
		return nil, fmt.Errorf("tracing exporter for %s: %w", o.Endpoint, err)
	}
	res := sdkresource.NewWithAttributes(semconv.SchemaURL,
		semconv.ServiceName("noded"), semconv.ServiceVersion(o.Version))
	var batch []sdktrace.BatchSpanProcessorOption
	if o.BatchTimeout > 0 {
		batch = append(batch, sdktrace.WithBatchTimeout(o.BatchTimeout))
	}
	tp := sdktrace.NewTracerProvider(
		sdktrace.WithBatcher(exp, batch...),
		sdktrace.WithResource(res),
		sdktrace.WithSampler(sdktrace.ParentBased(sdktrace.TraceIDRatioBased(float64(o.SamplingPerMillion)/1e6))),
	)
	return &Provider{tp: tp}, nil
}

// ServerHandler is the gRPC stats handler that opens a span per request
// (named after the method, e.g. runtime.v1.RuntimeService/RunPodSandbox)
// and continues the caller's W3C trace context. Tracing off: nil.
func (p *Provider) ServerHandler() stats.Handler {
	if p == nil {
		return nil
	}
	return otelgrpc.NewServerHandler(otelgrpc.WithTracerProvider(p.tp), otelgrpc.WithPropagators(propagation.TraceContext{}))
}

// Shutdown sends the spans still buffered and stops the exporter.
func (p *Provider) Shutdown(ctx context.Context) error {
	if p == nil {
		return nil
	}
	return p.tp.Shutdown(ctx)
}

// Start opens a child span of the span in ctx, with the same provider
// (see the package documentation); End it when the stage is over.
func Start(ctx context.Context, name string, attrs ...attribute.KeyValue) (context.Context, trace.Span) {
	return trace.SpanFromContext(ctx).TracerProvider().Tracer(instrumentation).
		Start(ctx, name, trace.WithAttributes(attrs...))
}

// End ends span, recording err (if any) as the span's error status.
func End(span trace.Span, err error) {
	if err != nil {
		span.RecordError(err)
		span.SetStatus(codes.Error, err.Error())
	}
	span.End()
}

// Detach returns work, the context of shared work, carrying the span of
// from, the request that started the work: the work's spans become
// children of that request's span (the trace shows where the time went),
// while the work keeps its own lifetime.
func Detach(work, from context.Context) context.Context {
	return trace.ContextWithSpan(work, trace.SpanFromContext(from))
}

// Coalesced is the attribute of a wait for work another request started.
func Coalesced(joined bool) attribute.KeyValue {
	return attribute.Bool("noded.coalesced", joined)
}
