package sandbox

import (
	"context"
	"fmt"
	"path/filepath"
	"runtime"
	"testing"

	runtimeapi "k8s.io/cri-api/pkg/apis/runtime/v1"

	"github.com/noded-dev/noded/internal/ids"
	"github.com/noded-dev/noded/internal/state"
)

// liveHeap is the heap still reachable: garbage collected first.
func liveHeap() uint64 {
	runtime.GC()
	var ms runtime.MemStats
	runtime.ReadMemStats(&ms)
	return ms.HeapAlloc
}

// podStatsStreamBound is what streaming the stats of 500 pods (two
// containers each) may add to the live heap: their IDs and one chunk of
// records and stats, ~100 KiB measured. Copying every record up front, as
// the stream did before, is ~450 KiB (logged below for comparison).
const podStatsStreamBound = 192 << 10

// StreamPodSandboxStats copies the records of one chunk of pods at a time
// (the store's per-pod index gives a pod's containers): the live heap
// while the stream runs grows by at most podStatsStreamBound, and every
// pod comes once, oldest first.
func TestStreamPodSandboxStatsHoldsAChunk(t *testing.T) {
	st, _, err := state.Open(filepath.Join(t.TempDir(), "state"))
	if err != nil {
		t.Fatal(err)
	}
	const n = 500
	labels := map[string]string{
		"io.kubernetes.pod.name": "app", "io.kubernetes.pod.namespace": "default", "io.kubernetes.pod.uid": "0123",
	}
	for i := range n {
		pod := ids.SandboxID(fmt.Sprintf("%064x", 0x1000+i))
		// Not ready: nothing to sample, the records alone are measured.
		if err := st.AddSandbox(&state.Sandbox{ID: pod, State: state.SandboxNotReady, CreatedAt: int64(n - i),
			Config: &runtimeapi.PodSandboxConfig{
				Metadata: &runtimeapi.PodSandboxMetadata{Name: fmt.Sprintf("app-%d", i), Namespace: "default", Uid: "0123"},
				Labels:   labels, Annotations: map[string]string{"kubernetes.io/config.seen": "2026-01-01T00:00:00Z"},
			}}); err != nil {
			t.Fatal(err)
		}
		for j := range 2 {
			if err := st.AddContainer(&state.Container{
				ID: ids.ContainerID(fmt.Sprintf("%064x", 0x100000+2*i+j)), SandboxID: pod, State: state.ContainerExited,
				ImageRef: "registry.example/app:v1", Bundle: "/run/noded/pods/x/bundle", LogPath: "/var/log/pods/x/app/0.log",
				Config: &runtimeapi.ContainerConfig{
					Metadata: &runtimeapi.ContainerMetadata{Name: fmt.Sprintf("app-%d", j)},
					Image:    &runtimeapi.ImageSpec{Image: "registry.example/app:v1"},
					Labels:   labels,
				},
			}); err != nil {
				t.Fatal(err)
			}
		}
	}
	svcs := New(Options{Store: st})
	t.Cleanup(svcs.Close)

	base := liveHeap()
	var peak uint64
	seen := 0
	for ps := range svcs.Stats.StreamPodSandboxStats(context.Background(), nil) {
		if id, want := ps.GetAttributes().GetId(), fmt.Sprintf("%064x", 0x1000+n-1-seen); id != want {
			t.Fatalf("pod %d is %s, want %s (oldest first)", seen, id, want)
		}
		if len(ps.GetLinux().GetContainers()) != 2 {
			t.Fatalf("pod %s: %d containers, want 2", ps.GetAttributes().GetId(), len(ps.GetLinux().GetContainers()))
		}
		if seen++; seen%25 == 0 {
			peak = max(peak, liveHeap())
		}
	}
	if seen != n {
		t.Fatalf("%d pods streamed, want %d", seen, n)
	}
	growth := int64(peak) - int64(base)
	t.Logf("stream: live heap grew by at most %d KiB", growth>>10)
	if growth > podStatsStreamBound {
		t.Fatalf("live heap grew by %d KiB while streaming, want at most %d KiB", growth>>10, podStatsStreamBound>>10)
	}
	base = liveHeap()
	sbs, ctrs := st.Sandboxes(), st.Containers()
	t.Logf("every record copied, for comparison: %d KiB", (int64(liveHeap())-int64(base))>>10)
	runtime.KeepAlive(sbs)
	runtime.KeepAlive(ctrs)
}
