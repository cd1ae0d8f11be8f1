package sandbox

import (
	"context"
	"fmt"
	"path/filepath"
	"slices"
	"testing"

	runtimeapi "k8s.io/cri-api/pkg/apis/runtime/v1"

	"github.com/noded-dev/noded/internal/ids"
	"github.com/noded-dev/noded/internal/state"
)

// newStreamStore records pods p0..p3 (p0 and p2 ready, even ones
// app=web, odd ones app=db) created newest ID first, and three
// containers in each (running, exited, created; label n=<index>).
func newStreamStore(t *testing.T) *state.Store {
	t.Helper()
	st, _, err := state.Open(filepath.Join(t.TempDir(), "state"))
	if err != nil {
		t.Fatal(err)
	}
	ctrStates := []state.ContainerState{state.ContainerRunning, state.ContainerExited, state.ContainerCreated}
	for p := range 4 {
		sbState, app := state.SandboxNotReady, "db"
		if p%2 == 0 {
			sbState, app = state.SandboxReady, "web"
		}
		pod := ids.SandboxID(fmt.Sprintf("%x%063x", p, 0))
		if err := st.AddSandbox(&state.Sandbox{ID: pod, State: sbState, CreatedAt: int64(10 - p), Config: &runtimeapi.PodSandboxConfig{
			Metadata: &runtimeapi.PodSandboxMetadata{Name: fmt.Sprintf("p%d", p)}, Labels: map[string]string{"app": app},
		}}); err != nil {
			t.Fatal(err)
		}
		for i, cs := range ctrStates {
			n := p*len(ctrStates) + i
			if err := st.AddContainer(&state.Container{
				ID: ids.ContainerID(fmt.Sprintf("%02x%062x", n, 0)), SandboxID: pod, State: cs, CreatedAt: int64(100 - n),
				Config: &runtimeapi.ContainerConfig{Metadata: &runtimeapi.ContainerMetadata{Name: fmt.Sprintf("c%d", n)}, Labels: map[string]string{"n": fmt.Sprint(n)}},
			}); err != nil {
				t.Fatal(err)
			}
		}
	}
	return st
}

// sameIDs reports whether stream and list hold the same IDs, each once.
func sameIDs[T any](t *testing.T, stream, list []T, id func(T) string) {
	t.Helper()
	var a, b []string
	for _, x := range stream {
		a = append(a, id(x))
	}
	for _, x := range list {
		b = append(b, id(x))
	}
	if len(slices.Compact(slices.Sorted(slices.Values(a)))) != len(a) {
		t.Fatalf("stream yields an item twice: %v", a)
	}
	if !slices.Equal(slices.Sorted(slices.Values(a)), slices.Sorted(slices.Values(b))) {
		t.Fatalf("stream %v, list %v", a, b)
	}
}

// The streams yield what the lists list, filter for filter (one filter
// function serves both); the lists are oldest first.
func TestStreamsMatchLists(t *testing.T) {
	st := newStreamStore(t)
	b := &base{o: Options{Store: st}}
	pods, ctrs := &Pods{base: b}, &Containers{base: b}
	stats := &Stats{base: b, samples: &fakeSampler{}}
	ctx := context.Background()
	pod1 := fmt.Sprintf("%x%063x", 1, 0)

	podFilters := []struct {
		name string
		f    *runtimeapi.PodSandboxFilter
		want int
	}{
		{"nil", nil, 4},
		{"id prefix", &runtimeapi.PodSandboxFilter{Id: pod1[:5]}, 1},
		{"ready", &runtimeapi.PodSandboxFilter{State: &runtimeapi.PodSandboxStateValue{State: runtimeapi.PodSandboxState_SANDBOX_READY}}, 2},
		{"labels", &runtimeapi.PodSandboxFilter{LabelSelector: map[string]string{"app": "db"}}, 2},
		{"no match", &runtimeapi.PodSandboxFilter{Id: "ff"}, 0},
	}
	for _, tt := range podFilters {
		t.Run("pods/"+tt.name, func(t *testing.T) {
			list := pods.ListPodSandbox(tt.f)
			if len(list) != tt.want {
				t.Fatalf("%d pods, want %d", len(list), tt.want)
			}
			if !slices.IsSortedFunc(list, func(a, b *runtimeapi.PodSandbox) int { return int(a.CreatedAt - b.CreatedAt) }) {
				t.Fatal("list not oldest first")
			}
			sameIDs(t, slices.Collect(pods.StreamPodSandboxes(tt.f)), list, (*runtimeapi.PodSandbox).GetId)
		})
		statsFilter := &runtimeapi.PodSandboxStatsFilter{Id: tt.f.GetId(), LabelSelector: tt.f.GetLabelSelector()}
		t.Run("pod stats/"+tt.name, func(t *testing.T) {
			id := func(s *runtimeapi.PodSandboxStats) string { return s.GetAttributes().GetId() }
			sameIDs(t, slices.Collect(stats.StreamPodSandboxStats(ctx, statsFilter)), stats.ListPodSandboxStats(ctx, statsFilter), id)
		})
	}

	ctrFilters := []struct {
		name string
		f    *runtimeapi.ContainerFilter
		want int
	}{
		{"nil", nil, 12},
		{"id prefix", &runtimeapi.ContainerFilter{Id: "05"}, 1},
		{"pod", &runtimeapi.ContainerFilter{PodSandboxId: pod1}, 3},
		{"running", &runtimeapi.ContainerFilter{State: &runtimeapi.ContainerStateValue{State: runtimeapi.ContainerState_CONTAINER_RUNNING}}, 4},
		{"pod and state", &runtimeapi.ContainerFilter{PodSandboxId: pod1, State: &runtimeapi.ContainerStateValue{State: runtimeapi.ContainerState_CONTAINER_EXITED}}, 1},
		{"labels", &runtimeapi.ContainerFilter{LabelSelector: map[string]string{"n": "7"}}, 1},
		{"no match", &runtimeapi.ContainerFilter{Id: "ff"}, 0},
	}
	for _, tt := range ctrFilters {
		t.Run("containers/"+tt.name, func(t *testing.T) {
			list := ctrs.ListContainers(tt.f)
			if len(list) != tt.want {
				t.Fatalf("%d containers, want %d", len(list), tt.want)
			}
			if !slices.IsSortedFunc(list, func(a, b *runtimeapi.Container) int { return int(a.CreatedAt - b.CreatedAt) }) {
				t.Fatal("list not oldest first")
			}
			sameIDs(t, slices.Collect(ctrs.StreamContainers(tt.f)), list, (*runtimeapi.Container).GetId)
		})
		if tt.f.GetState() != nil {
			continue // the stats filter has no state
		}
		statsFilter := &runtimeapi.ContainerStatsFilter{Id: tt.f.GetId(), PodSandboxId: tt.f.GetPodSandboxId(), LabelSelector: tt.f.GetLabelSelector()}
		t.Run("container stats/"+tt.name, func(t *testing.T) {
			id := func(s *runtimeapi.ContainerStats) string { return s.GetAttributes().GetId() }
			got := slices.Collect(stats.StreamContainerStats(ctx, statsFilter))
			if len(got) != tt.want {
				t.Fatalf("%d stats, want %d", len(got), tt.want)
			}
			sameIDs(t, got, stats.ListContainerStats(ctx, statsFilter), id)
		})
	}
}

// A container removed while a stream runs is left out; one the consumer
// stops before is never read; a cancelled context ends the stats stream.
func TestStreamsWhileRecordsChange(t *testing.T) {
	st := newStreamStore(t)
	b := &base{o: Options{Store: st}}
	ctrs := &Containers{base: b}
	stats := &Stats{base: b, samples: &fakeSampler{}}

	t.Run("removed meanwhile", func(t *testing.T) {
		var got []string
		for c := range ctrs.StreamContainers(nil) {
			if len(got) == 0 {
				// The stream is in ID order: the last one is not read yet.
				if err := st.DeleteContainer(ids.ContainerID(fmt.Sprintf("%02x%062x", 11, 0))); err != nil {
					t.Fatal(err)
				}
			}
			got = append(got, c.GetId())
		}
		if len(got) != 11 || slices.Contains(got, fmt.Sprintf("%02x%062x", 11, 0)) {
			t.Fatalf("%d containers %v: want the 11 left", len(got), got)
		}
	})
	t.Run("consumer stops", func(t *testing.T) {
		n := 0
		for range ctrs.StreamContainers(nil) {
			n++
			if n == 2 {
				break
			}
		}
		if n != 2 {
			t.Fatalf("%d", n)
		}
	})
	t.Run("cancelled", func(t *testing.T) {
		ctx, cancel := context.WithCancel(context.Background())
		cancel()
		if got := slices.Collect(stats.StreamContainerStats(ctx, nil)); len(got) != 0 {
			t.Fatalf("%d stats after cancel", len(got))
		}
		if got := slices.Collect(stats.StreamPodSandboxStats(ctx, nil)); len(got) != 0 {
			t.Fatalf("%d pod stats after cancel", len(got))
		}
	})
}
