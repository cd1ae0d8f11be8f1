package cri

import (
	"context"
	"fmt"
	"path/filepath"
	"runtime"
	"testing"

	"google.golang.org/grpc"
	runtimeapi "k8s.io/cri-api/pkg/apis/runtime/v1"

	"github.com/noded-dev/noded/internal/ids"
	"github.com/noded-dev/noded/internal/sandbox"
	"github.com/noded-dev/noded/internal/state"
)

// heapStream is a StreamContainers stream that keeps nothing it is sent
// and measures the live heap after each message.
type heapStream struct {
	grpc.ServerStream // only Context and Send are used
	items             int
	peak              uint64
}

func (s *heapStream) Context() context.Context { return context.Background() }

func (s *heapStream) Send(m *runtimeapi.StreamContainersResponse) error {
	s.items += len(m.GetContainers())
	s.peak = max(s.peak, liveHeap())
	return nil
}

// liveHeap is the heap still reachable: garbage collected first.
func liveHeap() uint64 {
	runtime.GC()
	var ms runtime.MemStats
	runtime.ReadMemStats(&ms)
	return ms.HeapAlloc
}

// streamMemoryBound is what streaming 1000 containers may add to the live
// heap: their IDs (16 bytes each) and one batch of copies, 10 to 25 KiB
// measured. The finished list of the same containers alone is about 270
// KiB (logged below for comparison), three times the bound.
const streamMemoryBound = 96 << 10

// StreamContainers over 1000 records of the real store, through the real
// container service, never holds them all: the live heap while the
// stream runs grows by at most streamMemoryBound.
func TestStreamContainersMemoryIsFlat(t *testing.T) {
	st, _, err := state.Open(filepath.Join(t.TempDir(), "state"))
	if err != nil {
		t.Fatal(err)
	}
	pod := ids.SandboxID(fmt.Sprintf("%064x", 1))
	if err := st.AddSandbox(&state.Sandbox{ID: pod, State: state.SandboxReady, Config: &runtimeapi.PodSandboxConfig{}}); err != nil {
		t.Fatal(err)
	}
	const n = 1000
	for i := range n {
		c := &state.Container{
			ID: ids.ContainerID(fmt.Sprintf("%064x", 0x1000+i)), SandboxID: pod, State: state.ContainerRunning,
			CreatedAt: int64(i), ImageRef: "registry.example/app:v1", ImageID: fmt.Sprintf("sha256:%064x", 7),
			Bundle: "/run/noded/pods/x/bundle", LogPath: "/var/log/pods/x/app/0.log",
			Config: &runtimeapi.ContainerConfig{
				Metadata: &runtimeapi.ContainerMetadata{Name: fmt.Sprintf("app-%d", i)},
				Image:    &runtimeapi.ImageSpec{Image: "registry.example/app:v1"},
				Labels: map[string]string{
					"io.kubernetes.pod.name": "app", "io.kubernetes.pod.namespace": "default",
					"io.kubernetes.container.name": "app", "io.kubernetes.pod.uid": "0123",
				},
				Annotations: map[string]string{"io.kubernetes.container.hash": "abcd", "io.kubernetes.container.restartCount": "0"},
			},
		}
		if err := st.AddContainer(c); err != nil {
			t.Fatal(err)
		}
	}
	svcs := sandbox.New(sandbox.Options{Store: st})
	t.Cleanup(svcs.Close)
	srv := NewServer(Options{Containers: svcs.Containers})

	s := &heapStream{}
	base := liveHeap()
	if err := srv.StreamContainers(&runtimeapi.StreamContainersRequest{}, s); err != nil {
		t.Fatal(err)
	}
	if s.items != n {
		t.Fatalf("%d containers streamed, want %d", s.items, n)
	}
	growth := int64(s.peak) - int64(base)
	t.Logf("stream: live heap grew by at most %d KiB", growth>>10)
	if growth > streamMemoryBound {
		t.Fatalf("live heap grew by %d KiB while streaming, want at most %d KiB", growth>>10, streamMemoryBound>>10)
	}

	base = liveHeap()
	list, err := srv.ListContainers(context.Background(), &runtimeapi.ListContainersRequest{})
	if err != nil {
		t.Fatal(err)
	}
	t.Logf("list, for comparison: %d KiB for %d containers", (int64(liveHeap())-int64(base))>>10, len(list.GetContainers()))
	runtime.KeepAlive(list)
}
