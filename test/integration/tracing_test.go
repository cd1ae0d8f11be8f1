//go:build integration

package integration

import (
	"context"
	"encoding/hex"
	"net"
	"slices"
	"sync"
	"testing"
	"time"

	coltracepb "go.opentelemetry.io/proto/otlp/collector/trace/v1"
	tracepb "go.opentelemetry.io/proto/otlp/trace/v1"
	"google.golang.org/grpc"
	"google.golang.org/grpc/metadata"
	runtimeapi "k8s.io/cri-api/pkg/apis/runtime/v1"
)

// otlpReceiver is an OpenTelemetry collector in the test process: it keeps
// every span noded exports over OTLP/gRPC.
type otlpReceiver struct {
	coltracepb.UnimplementedTraceServiceServer
	mu    sync.Mutex
	spans []*tracepb.Span
}

func (r *otlpReceiver) Export(_ context.Context, req *coltracepb.ExportTraceServiceRequest) (*coltracepb.ExportTraceServiceResponse, error) {
	r.mu.Lock()
	defer r.mu.Unlock()
	for _, rs := range req.GetResourceSpans() {
		for _, ss := range rs.GetScopeSpans() {
			r.spans = append(r.spans, ss.GetSpans()...)
		}
	}
	return &coltracepb.ExportTraceServiceResponse{}, nil
}

func startOTLPReceiver(t *testing.T) (*otlpReceiver, string) {
	t.Helper()
	ln, err := net.Listen("tcp", "127.0.0.1:0")
	if err != nil {
		t.Fatal(err)
	}
	r := &otlpReceiver{}
	srv := grpc.NewServer()
	coltracepb.RegisterTraceServiceServer(srv, r)
	go func() { _ = srv.Serve(ln) }()
	t.Cleanup(srv.Stop)
	return r, ln.Addr().String()
}

// trace waits (up to 30 s: noded batches its spans for 5 s) until the
// request span named root has, below it, spans of every name in want; it
// returns the root and the spans below it.
func (r *otlpReceiver) trace(t *testing.T, root string, want ...string) (*tracepb.Span, []*tracepb.Span) {
	t.Helper()
	deadline := time.Now().Add(30 * time.Second)
	for {
		r.mu.Lock()
		spans := slices.Clone(r.spans)
		r.mu.Unlock()
		for _, s := range spans {
			if s.GetName() != root {
				continue
			}
			below := descendants(spans, s)
			if names := spanNames(below); containsAll(names, want) {
				return s, below
			}
		}
		if time.Now().After(deadline) {
			t.Fatalf("no %s trace with %v below it; spans: %v", root, want, spanNames(spans))
		}
		time.Sleep(100 * time.Millisecond)
	}
}

func descendants(spans []*tracepb.Span, root *tracepb.Span) []*tracepb.Span {
	var out []*tracepb.Span
	parents := map[string]bool{string(root.GetSpanId()): true}
	for grew := true; grew; {
		grew = false
		for _, s := range spans {
			if parents[string(s.GetParentSpanId())] && !parents[string(s.GetSpanId())] {
				parents[string(s.GetSpanId())] = true
				out = append(out, s)
				grew = true
			}
		}
	}
	return out
}

func spanNames(spans []*tracepb.Span) []string {
	var out []string
	for _, s := range spans {
		out = append(out, s.GetName())
	}
	return out
}

func containsAll(have, want []string) bool {
	for _, w := range want {
		if !slices.Contains(have, w) {
			return false
		}
	}
	return true
}

func boolAttr(s *tracepb.Span, key string) (value, ok bool) {
	for _, kv := range s.GetAttributes() {
		if kv.GetKey() == key {
			return kv.GetValue().GetBoolValue(), true
		}
	}
	return false, false
}

// With tracing-endpoint set, each CRI request is a trace with spans for
// the stages that matter (issue 15): RunPodSandbox with its CNI ADD and
// monitor calls, continuing the caller's W3C trace; PullImage with each
// blob's fetch and each layer's unpack; a pull that joins another's marked
// coalesced.
func TestTracingSpans(t *testing.T) {
	recv, addr := startOTLPReceiver(t)
	e := newPodEnv(t, "--tracing-endpoint", addr)
	ctx := context.Background()

	t.Run("RunPodSandbox in the caller's trace", func(t *testing.T) {
		traceID, parentID := "4bf92f3577b34da6a3ce929d0e0e4736", "00f067aa0ba902b7"
		pcfg := e.podConfig("traced")
		mctx := metadata.AppendToOutgoingContext(ctx, "traceparent", "00-"+traceID+"-"+parentID+"-01")
		if _, err := e.rt.RunPodSandbox(mctx, &runtimeapi.RunPodSandboxRequest{Config: pcfg}); err != nil {
			t.Fatal(err)
		}
		root, below := recv.trace(t, "runtime.v1.RuntimeService/RunPodSandbox", "cni.add", "monitor.spawn", "monitor.hello")
		if got := hex.EncodeToString(root.GetTraceId()); got != traceID {
			t.Errorf("RunPodSandbox span in trace %s, want the caller's %s", got, traceID)
		}
		if got := hex.EncodeToString(root.GetParentSpanId()); got != parentID {
			t.Errorf("RunPodSandbox span's parent %s, want the caller's span %s", got, parentID)
		}
		for _, s := range below {
			if s.GetEndTimeUnixNano() < s.GetStartTimeUnixNano() || s.GetStartTimeUnixNano() < root.GetStartTimeUnixNano() {
				t.Errorf("span %s is not inside the request's time", s.GetName())
			}
		}
	})

	t.Run("PullImage with fetch and unpack spans", func(t *testing.T) {
		// newPodEnv pulled busybox: a pull of its own, nothing to join.
		root, below := recv.trace(t, "runtime.v1.ImageService/PullImage", "image.pull", "image.blob.fetch", "image.blob.wait", "image.layer.unpack")
		_ = root
		for _, s := range below {
			if s.GetName() == "image.pull" {
				if c, ok := boolAttr(s, "noded.coalesced"); !ok || c {
					t.Errorf("the only pull is marked coalesced=%v (set %v)", c, ok)
				}
			}
		}
	})

	t.Run("concurrent pulls: the joiner is coalesced", func(t *testing.T) {
		const ref = "registry.k8s.io/e2e-test-images/nginx:1.14-2"
		var wg sync.WaitGroup
		for range 4 {
			wg.Add(1)
			go func() {
				defer wg.Done()
				if _, err := e.img.PullImage(ctx, &runtimeapi.PullImageRequest{Image: &runtimeapi.ImageSpec{Image: ref}}); err != nil {
					t.Error(err)
				}
			}()
		}
		wg.Wait()
		deadline := time.Now().Add(30 * time.Second)
		for {
			recv.mu.Lock()
			var own, joined int
			for _, s := range recv.spans {
				if s.GetName() != "image.pull" || !hasStringAttr(s, "noded.image", ref) {
					continue
				}
				if c, _ := boolAttr(s, "noded.coalesced"); c {
					joined++
				} else {
					own++
				}
			}
			recv.mu.Unlock()
			if own+joined == 4 {
				if own < 1 || joined < 1 {
					t.Errorf("4 concurrent pulls: %d own, %d coalesced; want at least one of each", own, joined)
				}
				break
			}
			if time.Now().After(deadline) {
				t.Fatalf("%d image.pull spans of %s, want 4", own+joined, ref)
			}
			time.Sleep(100 * time.Millisecond)
		}
	})
}

func hasStringAttr(s *tracepb.Span, key, value string) bool {
	for _, kv := range s.GetAttributes() {
		if kv.GetKey() == key && kv.GetValue().GetStringValue() == value {
			return true
		}
	}
	return false
}
