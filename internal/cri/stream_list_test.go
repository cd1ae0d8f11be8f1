package cri

import (
	"context"
	"errors"
	"fmt"
	"io"
	"iter"
	"net"
	"strings"
	"sync"
	"testing"

	"github.com/sirupsen/logrus"
	"github.com/sirupsen/logrus/hooks/test"
	"google.golang.org/grpc"
	"google.golang.org/grpc/codes"
	"google.golang.org/grpc/credentials/insecure"
	"google.golang.org/grpc/status"
	"google.golang.org/grpc/test/bufconn"
	"google.golang.org/protobuf/proto"
	runtimeapi "k8s.io/cri-api/pkg/apis/runtime/v1"

	"github.com/noded-dev/noded/internal/errdefs"
	"github.com/noded-dev/noded/internal/imagesvc"
	nlog "github.com/noded-dev/noded/internal/log"
	"github.com/noded-dev/noded/internal/storage"
)

// endless makes a fake producer yield until its consumer stops it.
const endless = -1

// fakeLists is the domain side of every Stream* RPC: each producer yields
// n generated items (or endlessly), records the filter it was given, and
// counts the producers that returned, so that a test sees a producer stop.
type fakeLists struct {
	podService
	containerService
	statsService
	podStatsService
	metricsService
	imageService

	n int
	// failAt makes the image producer fail after that many items (with
	// failErr); 0 never.
	failAt  int
	failErr error

	mu       sync.Mutex
	filter   any
	produced int
	returned chan struct{} // one value per producer that returned
}

func newFakeLists(n int) *fakeLists { return &fakeLists{n: n, returned: make(chan struct{}, 16)} }

func (f *fakeLists) options() Options {
	return Options{Pods: f, Containers: f, Stats: f, PodStats: f, Metrics: f, Images: f}
}

// seq yields item(i) for each item, counting them.
func seq[T any](f *fakeLists, filter any, item func(i int) T) iter.Seq[T] {
	return func(yield func(T) bool) {
		defer func() { f.returned <- struct{}{} }()
		f.mu.Lock()
		f.filter = filter
		f.mu.Unlock()
		for i := 0; f.n == endless || i < f.n; i++ {
			f.mu.Lock()
			f.produced++
			f.mu.Unlock()
			if !yield(item(i)) {
				return
			}
		}
	}
}

func (f *fakeLists) StreamPodSandboxes(flt *runtimeapi.PodSandboxFilter) iter.Seq[*runtimeapi.PodSandbox] {
	return seq(f, flt, func(i int) *runtimeapi.PodSandbox { return &runtimeapi.PodSandbox{Id: fmt.Sprintf("pod-%06d", i)} })
}

func (f *fakeLists) StreamContainers(flt *runtimeapi.ContainerFilter) iter.Seq[*runtimeapi.Container] {
	return seq(f, flt, func(i int) *runtimeapi.Container { return &runtimeapi.Container{Id: fmt.Sprintf("ctr-%06d", i)} })
}

func (f *fakeLists) StreamContainerStats(_ context.Context, flt *runtimeapi.ContainerStatsFilter) iter.Seq[*runtimeapi.ContainerStats] {
	return seq(f, flt, func(i int) *runtimeapi.ContainerStats {
		return &runtimeapi.ContainerStats{Attributes: &runtimeapi.ContainerAttributes{Id: fmt.Sprintf("ctr-%06d", i)}}
	})
}

func (f *fakeLists) StreamPodSandboxStats(_ context.Context, flt *runtimeapi.PodSandboxStatsFilter) iter.Seq[*runtimeapi.PodSandboxStats] {
	return seq(f, flt, func(i int) *runtimeapi.PodSandboxStats {
		return &runtimeapi.PodSandboxStats{Attributes: &runtimeapi.PodSandboxAttributes{Id: fmt.Sprintf("pod-%06d", i)}}
	})
}

func (f *fakeLists) StreamPodSandboxMetrics(context.Context) iter.Seq[*runtimeapi.PodSandboxMetrics] {
	return seq(f, nil, func(i int) *runtimeapi.PodSandboxMetrics {
		return &runtimeapi.PodSandboxMetrics{PodSandboxId: fmt.Sprintf("pod-%06d", i)}
	})
}

func (f *fakeLists) Stream(_ context.Context, filter string) iter.Seq2[*imagesvc.Image, error] {
	imgs := seq(f, filter, func(i int) *imagesvc.Image { return &imagesvc.Image{ID: storage.ImageID(fmt.Sprintf("%064x", i))} })
	return func(yield func(*imagesvc.Image, error) bool) {
		i := 0
		for img := range imgs {
			if f.failAt > 0 && i == f.failAt {
				yield(nil, f.failErr)
				return
			}
			if !yield(img, nil) {
				return
			}
			i++
		}
	}
}

// serve runs a gRPC server with noded's interceptors on an in-memory
// listener and returns clients of it.
func serve(t *testing.T, opts Options) (runtimeapi.RuntimeServiceClient, runtimeapi.ImageServiceClient) {
	t.Helper()
	base, _ := test.NewNullLogger()
	return serveLogging(t, opts, logrus.NewEntry(base))
}

func serveLogging(t *testing.T, opts Options, log *logrus.Entry) (runtimeapi.RuntimeServiceClient, runtimeapi.ImageServiceClient) {
	t.Helper()
	srv := NewServer(opts)
	gs := grpc.NewServer(grpc.ChainUnaryInterceptor(UnaryInterceptor(log, nil)), grpc.ChainStreamInterceptor(StreamInterceptor(log, nil)))
	runtimeapi.RegisterRuntimeServiceServer(gs, srv.RuntimeServer)
	runtimeapi.RegisterImageServiceServer(gs, srv.ImageServer)
	ln := bufconn.Listen(1 << 20)
	go func() { _ = gs.Serve(ln) }()
	t.Cleanup(gs.Stop)
	conn, err := grpc.NewClient("passthrough:///bufconn",
		grpc.WithContextDialer(func(ctx context.Context, _ string) (net.Conn, error) { return ln.DialContext(ctx) }),
		grpc.WithTransportCredentials(insecure.NewCredentials()))
	if err != nil {
		t.Fatal(err)
	}
	t.Cleanup(func() { _ = conn.Close() })
	return runtimeapi.NewRuntimeServiceClient(conn), runtimeapi.NewImageServiceClient(conn)
}

// streamCase is one Stream* RPC as a client sees it: open starts the
// stream, and each received message is turned into its items' IDs.
type streamCase struct {
	name string
	// filter is the one sent; wantFilter what the domain must get.
	wantFilter any
	open       func(ctx context.Context, rt runtimeapi.RuntimeServiceClient, im runtimeapi.ImageServiceClient) (recv func() ([]string, error), err error)
}

// recvIDs adapts a typed stream client to streamCase.open.
func recvIDs[R any](s grpc.ServerStreamingClient[R], ids func(*R) []string) func() ([]string, error) {
	return func() ([]string, error) {
		m, err := s.Recv()
		if err != nil {
			return nil, err
		}
		return ids(m), nil
	}
}

func streamCases() []streamCase {
	podFilter := &runtimeapi.PodSandboxFilter{Id: "pod", LabelSelector: map[string]string{"a": "b"}}
	ctrFilter := &runtimeapi.ContainerFilter{PodSandboxId: "pod", State: &runtimeapi.ContainerStateValue{State: runtimeapi.ContainerState_CONTAINER_RUNNING}}
	statsFilter := &runtimeapi.ContainerStatsFilter{Id: "ctr", LabelSelector: map[string]string{"x": "y"}}
	podStatsFilter := &runtimeapi.PodSandboxStatsFilter{Id: "pod", LabelSelector: map[string]string{"x": "y"}}
	return []streamCase{
		{"StreamPodSandboxes", podFilter, func(ctx context.Context, rt runtimeapi.RuntimeServiceClient, _ runtimeapi.ImageServiceClient) (func() ([]string, error), error) {
			s, err := rt.StreamPodSandboxes(ctx, &runtimeapi.StreamPodSandboxesRequest{Filter: podFilter})
			return recvIDs(s, func(m *runtimeapi.StreamPodSandboxesResponse) (out []string) {
				for _, p := range m.GetPodSandboxes() {
					out = append(out, p.GetId())
				}
				return out
			}), err
		}},
		{"StreamContainers", ctrFilter, func(ctx context.Context, rt runtimeapi.RuntimeServiceClient, _ runtimeapi.ImageServiceClient) (func() ([]string, error), error) {
			s, err := rt.StreamContainers(ctx, &runtimeapi.StreamContainersRequest{Filter: ctrFilter})
			return recvIDs(s, func(m *runtimeapi.StreamContainersResponse) (out []string) {
				for _, c := range m.GetContainers() {
					out = append(out, c.GetId())
				}
				return out
			}), err
		}},
		{"StreamContainerStats", statsFilter, func(ctx context.Context, rt runtimeapi.RuntimeServiceClient, _ runtimeapi.ImageServiceClient) (func() ([]string, error), error) {
			s, err := rt.StreamContainerStats(ctx, &runtimeapi.StreamContainerStatsRequest{Filter: statsFilter})
			return recvIDs(s, func(m *runtimeapi.StreamContainerStatsResponse) (out []string) {
				for _, c := range m.GetContainerStats() {
					out = append(out, c.GetAttributes().GetId())
				}
				return out
			}), err
		}},
		{"StreamPodSandboxStats", podStatsFilter, func(ctx context.Context, rt runtimeapi.RuntimeServiceClient, _ runtimeapi.ImageServiceClient) (func() ([]string, error), error) {
			s, err := rt.StreamPodSandboxStats(ctx, &runtimeapi.StreamPodSandboxStatsRequest{Filter: podStatsFilter})
			return recvIDs(s, func(m *runtimeapi.StreamPodSandboxStatsResponse) (out []string) {
				for _, p := range m.GetPodSandboxStats() {
					out = append(out, p.GetAttributes().GetId())
				}
				return out
			}), err
		}},
		{"StreamPodSandboxMetrics", nil, func(ctx context.Context, rt runtimeapi.RuntimeServiceClient, _ runtimeapi.ImageServiceClient) (func() ([]string, error), error) {
			s, err := rt.StreamPodSandboxMetrics(ctx, &runtimeapi.StreamPodSandboxMetricsRequest{})
			return recvIDs(s, func(m *runtimeapi.StreamPodSandboxMetricsResponse) (out []string) {
				for _, p := range m.GetPodSandboxMetrics() {
					out = append(out, p.GetPodSandboxId())
				}
				return out
			}), err
		}},
		{"StreamImages", "docker.io/library/busybox:latest", func(ctx context.Context, _ runtimeapi.RuntimeServiceClient, im runtimeapi.ImageServiceClient) (func() ([]string, error), error) {
			s, err := im.StreamImages(ctx, &runtimeapi.StreamImagesRequest{Filter: &runtimeapi.ImageFilter{Image: &runtimeapi.ImageSpec{Image: "docker.io/library/busybox:latest"}}})
			return recvIDs(s, func(m *runtimeapi.StreamImagesResponse) (out []string) {
				for _, i := range m.GetImages() {
					out = append(out, i.GetId())
				}
				return out
			}), err
		}},
	}
}

// Every Stream* RPC sends each of the domain's items exactly once, in
// messages of at least one and at most streamBatchItems items, passes the
// request's filter to the domain as is, and ends with EOF.
func TestStreamListsSendEveryItemOnce(t *testing.T) {
	for _, tc := range streamCases() {
		for _, n := range []int{0, 1, streamBatchItems, streamBatchItems + 1, 1000} {
			t.Run(fmt.Sprintf("%s/%d", tc.name, n), func(t *testing.T) {
				f := newFakeLists(n)
				rt, im := serve(t, f.options())
				recv, err := tc.open(context.Background(), rt, im)
				if err != nil {
					t.Fatal(err)
				}
				seen := map[string]bool{}
				for {
					ids, err := recv()
					if errors.Is(err, io.EOF) {
						break
					}
					if err != nil {
						t.Fatalf("after %d items: %v", len(seen), err)
					}
					if len(ids) == 0 || len(ids) > streamBatchItems {
						t.Fatalf("a message of %d items, want 1 to %d", len(ids), streamBatchItems)
					}
					for _, id := range ids {
						if seen[id] {
							t.Fatalf("%s sent twice", id)
						}
						seen[id] = true
					}
				}
				if len(seen) != n {
					t.Fatalf("%d items, want %d", len(seen), n)
				}
				<-f.returned
				if tc.wantFilter == nil {
					return
				}
				if m, ok := tc.wantFilter.(proto.Message); ok {
					if got, _ := f.filter.(proto.Message); !proto.Equal(got, m) {
						t.Fatalf("domain got filter %v, want %v", f.filter, m)
					}
				} else if f.filter != tc.wantFilter {
					t.Fatalf("domain got filter %v, want %v", f.filter, tc.wantFilter)
				}
			})
		}
	}
}

// A client that goes away mid-stream stops the producer: an endless one
// returns once the client has cancelled, instead of producing forever.
func TestStreamListsCancelledClientStopsProducer(t *testing.T) {
	for _, tc := range streamCases() {
		t.Run(tc.name, func(t *testing.T) {
			f := newFakeLists(endless)
			rt, im := serve(t, f.options())
			ctx, cancel := context.WithCancel(context.Background())
			recv, err := tc.open(ctx, rt, im)
			if err != nil {
				t.Fatal(err)
			}
			if ids, err := recv(); err != nil || len(ids) == 0 {
				t.Fatalf("first message: %d items, %v", len(ids), err)
			}
			cancel()
			<-f.returned // hangs (and the test times out) if the producer runs on
			for {        // messages already received may come first
				if _, err := recv(); err != nil {
					if status.Code(err) != codes.Canceled {
						t.Fatalf("after cancel: %v, want Canceled", err)
					}
					break
				}
			}
		})
	}
}

// Without its service an RPC answers Unimplemented (the kubelet falls back
// to the unary call); a domain error mid-stream ends the stream with the
// error's code, through the stream interceptor.
func TestStreamListsErrors(t *testing.T) {
	for _, tc := range streamCases() {
		t.Run(tc.name+"/no service", func(t *testing.T) {
			rt, im := serve(t, Options{})
			recv, err := tc.open(context.Background(), rt, im)
			if err == nil {
				_, err = recv()
			}
			if status.Code(err) != codes.Unimplemented {
				t.Fatalf("%v, want Unimplemented", err)
			}
		})
	}
	t.Run("StreamImages/fails mid-stream", func(t *testing.T) {
		f := newFakeLists(1000)
		f.failAt, f.failErr = streamBatchItems+3, errdefs.Unavailable("storage went away")
		_, im := serve(t, f.options())
		s, err := im.StreamImages(context.Background(), &runtimeapi.StreamImagesRequest{})
		if err != nil {
			t.Fatal(err)
		}
		n := 0
		for {
			m, err := s.Recv()
			if err != nil {
				if status.Code(err) != codes.Unavailable || !strings.Contains(err.Error(), "storage went away") {
					t.Fatalf("after %d items: %v, want Unavailable", n, err)
				}
				break
			}
			n += len(m.GetImages())
		}
		if n > f.failAt {
			t.Fatalf("%d items before the error, want at most %d", n, f.failAt)
		}
	})
	t.Run("StreamImages/unknown runtime handler", func(t *testing.T) {
		f := newFakeLists(1)
		_, im := serve(t, f.options())
		s, err := im.StreamImages(context.Background(), &runtimeapi.StreamImagesRequest{Filter: &runtimeapi.ImageFilter{Image: &runtimeapi.ImageSpec{RuntimeHandler: "kata"}}})
		if err == nil {
			_, err = s.Recv()
		}
		if status.Code(err) != codes.InvalidArgument {
			t.Fatalf("%v, want InvalidArgument", err)
		}
	})
}

// A batch holds at most streamBatchBytes of encoded items, unless one
// item alone is larger: then it goes in a message of its own.
func TestSendBatchesBoundsMessageSize(t *testing.T) {
	big := strings.Repeat("x", streamBatchBytes/3)
	huge := strings.Repeat("y", streamBatchBytes+1)
	tests := []struct {
		name  string
		items []string
		want  []int // items per message
	}{
		{"empty", nil, nil},
		{"four big in two", []string{big, big, big, big}, []int{2, 2}},
		{"a huge one alone", []string{"a", huge, "b"}, []int{1, 1, 1}},
	}
	for _, tt := range tests {
		t.Run(tt.name, func(t *testing.T) {
			var got []int
			items := func(yield func(*runtimeapi.PodSandbox, error) bool) {
				for _, id := range tt.items {
					if !yield(&runtimeapi.PodSandbox{Id: id}, nil) {
						return
					}
				}
			}
			err := sendBatches(context.Background(), items, func(b []*runtimeapi.PodSandbox) error {
				size := 0
				for _, p := range b {
					size += proto.Size(p)
				}
				if len(b) > 1 && size > streamBatchBytes {
					t.Errorf("a batch of %d items and %d bytes", len(b), size)
				}
				got = append(got, len(b))
				return nil
			})
			if err != nil {
				t.Fatal(err)
			}
			if fmt.Sprint(got) != fmt.Sprint(tt.want) {
				t.Fatalf("batches %v, want %v", got, tt.want)
			}
		})
	}
}

// loggingMetrics logs from inside the domain call, as the domain packages
// do, then panics if told to.
type loggingMetrics struct {
	metricsService
	panics bool
}

func (m loggingMetrics) StreamPodSandboxMetrics(ctx context.Context) iter.Seq[*runtimeapi.PodSandboxMetrics] {
	return func(yield func(*runtimeapi.PodSandboxMetrics) bool) {
		nlog.FromContext(ctx).Info("inside the domain call")
		if m.panics {
			panic("boom")
		}
		yield(&runtimeapi.PodSandboxMetrics{PodSandboxId: "p"})
	}
}

// The stream interceptor gives a streaming call what the unary one gives
// a unary call: a logger with the call's id and method in its context, and
// a panic turned into codes.Internal instead of a crash.
func TestStreamInterceptor(t *testing.T) {
	for _, panics := range []bool{false, true} {
		t.Run(fmt.Sprintf("panics=%v", panics), func(t *testing.T) {
			base, hook := test.NewNullLogger()
			base.SetLevel(logrus.DebugLevel)
			rt, _ := serveLogging(t, Options{Metrics: loggingMetrics{panics: panics}}, logrus.NewEntry(base))
			s, err := rt.StreamPodSandboxMetrics(context.Background(), &runtimeapi.StreamPodSandboxMetricsRequest{})
			if err != nil {
				t.Fatal(err)
			}
			for err == nil {
				_, err = s.Recv()
			}
			want := codes.OK
			if panics {
				want = codes.Internal
			}
			if errors.Is(err, io.EOF) {
				err = nil
			}
			if status.Code(err) != want {
				t.Fatalf("stream ended with %v, want %v", err, want)
			}
			var domain *logrus.Entry
			for _, e := range hook.AllEntries() {
				if e.Message == "inside the domain call" {
					domain = e
				}
			}
			if domain == nil || domain.Data["method"] != "StreamPodSandboxMetrics" || domain.Data["id"] == "" || domain.Data["id"] == nil {
				t.Fatalf("domain line %v: want the call's id and method", domain)
			}
		})
	}
}
