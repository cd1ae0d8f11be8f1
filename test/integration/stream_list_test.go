//go:build integration

package integration

import (
	"context"
	"errors"
	"io"
	"os"
	"slices"
	"testing"
	"time"

	"google.golang.org/grpc"
	"google.golang.org/protobuf/proto"
	runtimeapi "k8s.io/cri-api/pkg/apis/runtime/v1"
)

// streamItems reads a Stream* RPC to its end, as the kubelet's cri-client
// does, and checks the contract on the way: every message carries at
// least one item and the stream ends with EOF.
func streamItems[R any, T any](t *testing.T, name string, open func(context.Context) (grpc.ServerStreamingClient[R], error), items func(*R) []T) []T {
	t.Helper()
	ctx, cancel := context.WithTimeout(context.Background(), 2*time.Minute)
	defer cancel()
	s, err := open(ctx)
	if err != nil {
		t.Fatalf("%s: %v", name, err)
	}
	var out []T
	for {
		m, err := s.Recv()
		if errors.Is(err, io.EOF) {
			return out
		}
		if err != nil {
			t.Fatalf("%s after %d items: %v", name, len(out), err)
		}
		got := items(m)
		if len(got) == 0 {
			t.Fatalf("%s: a message without items", name)
		}
		out = append(out, got...)
	}
}

// sameItems checks that stream holds list's items, each once: by key, and
// equal as messages when whole is set (items that do not change between
// two calls; stats and metrics are sampled anew by each).
func sameItems[T proto.Message](t *testing.T, stream, list []T, key func(T) string, whole bool) {
	t.Helper()
	byKey := map[string]T{}
	for _, it := range stream {
		k := key(it)
		if _, dup := byKey[k]; dup {
			t.Fatalf("stream sent %s twice", k)
		}
		byKey[k] = it
	}
	var sk, lk []string
	for k := range byKey {
		sk = append(sk, k)
	}
	for _, it := range list {
		lk = append(lk, key(it))
		if s, ok := byKey[key(it)]; ok && whole && !proto.Equal(s, it) {
			t.Errorf("%s: stream %v, list %v", key(it), s, it)
		}
	}
	slices.Sort(sk)
	slices.Sort(lk)
	if !slices.Equal(sk, lk) {
		t.Fatalf("stream %v, list %v", sk, lk)
	}
}

// TestStreamListsMatchUnary drives the six Stream* RPCs of the kubelet's
// CRIListStreaming gate against a daemon with two running pods (two
// containers each, one also exited), a stopped pod and two images, and
// checks each, filter for filter, against its unary List call.
func TestStreamListsMatchUnary(t *testing.T) {
	e := newPodEnv(t)
	ctx := context.Background()
	runPod := func(name string, cmds ...[]string) (string, []string) {
		pcfg := e.podConfig(name)
		pcfg.Labels = map[string]string{"test": "pods", "stream": name}
		if err := os.MkdirAll(pcfg.LogDirectory, 0o755); err != nil {
			t.Fatal(err)
		}
		pod, err := e.rt.RunPodSandbox(ctx, &runtimeapi.RunPodSandboxRequest{Config: pcfg})
		if err != nil {
			t.Fatalf("RunPodSandbox %s: %v\n%s", name, err, e.d.Log)
		}
		var ctrs []string
		for i, cmd := range cmds {
			ctrs = append(ctrs, e.createStart(t, pod.GetPodSandboxId(), pcfg, "c"+string(rune('0'+i)), cmd))
		}
		return pod.GetPodSandboxId(), ctrs
	}
	podA, ctrsA := runPod("stream-a", []string{"sleep", "3600"}, []string{"true"})
	podB, _ := runPod("stream-b", []string{"sleep", "3600"}, []string{"sleep", "3600"})
	podC, _ := runPod("stream-c", []string{"sleep", "3600"})
	e.waitExited(t, ctrsA[1], time.Minute)
	if _, err := e.rt.StopPodSandbox(ctx, &runtimeapi.StopPodSandboxRequest{PodSandboxId: podC}); err != nil {
		t.Fatal(err)
	}

	t.Run("StreamPodSandboxes", func(t *testing.T) {
		for _, tt := range []struct {
			f    *runtimeapi.PodSandboxFilter
			want int
		}{
			{nil, 3},
			{&runtimeapi.PodSandboxFilter{LabelSelector: map[string]string{"stream": "stream-b"}}, 1},
			{&runtimeapi.PodSandboxFilter{State: &runtimeapi.PodSandboxStateValue{State: runtimeapi.PodSandboxState_SANDBOX_READY}}, 2},
			{&runtimeapi.PodSandboxFilter{State: &runtimeapi.PodSandboxStateValue{State: runtimeapi.PodSandboxState_SANDBOX_NOTREADY}}, 1},
			{&runtimeapi.PodSandboxFilter{Id: podA[:12]}, 1},
			{&runtimeapi.PodSandboxFilter{Id: "ffffffffffff"}, 0},
		} {
			f := tt.f
			list, err := e.rt.ListPodSandbox(ctx, &runtimeapi.ListPodSandboxRequest{Filter: f})
			if err != nil {
				t.Fatal(err)
			}
			stream := streamItems(t, "StreamPodSandboxes", func(ctx context.Context) (grpc.ServerStreamingClient[runtimeapi.StreamPodSandboxesResponse], error) {
				return e.rt.StreamPodSandboxes(ctx, &runtimeapi.StreamPodSandboxesRequest{Filter: f})
			}, (*runtimeapi.StreamPodSandboxesResponse).GetPodSandboxes)
			sameItems(t, stream, list.GetItems(), (*runtimeapi.PodSandbox).GetId, true)
			if len(stream) != tt.want {
				t.Fatalf("filter %v: %d pods, want %d", f, len(stream), tt.want)
			}
		}
	})
	t.Run("StreamContainers", func(t *testing.T) {
		for _, tt := range []struct {
			f    *runtimeapi.ContainerFilter
			want int
		}{
			{nil, 5},
			{&runtimeapi.ContainerFilter{PodSandboxId: podB}, 2},
			// podC's container was stopped with its pod.
			{&runtimeapi.ContainerFilter{State: &runtimeapi.ContainerStateValue{State: runtimeapi.ContainerState_CONTAINER_RUNNING}}, 3},
			{&runtimeapi.ContainerFilter{State: &runtimeapi.ContainerStateValue{State: runtimeapi.ContainerState_CONTAINER_EXITED}}, 2},
			{&runtimeapi.ContainerFilter{Id: ctrsA[0][:12]}, 1},
			{&runtimeapi.ContainerFilter{PodSandboxId: podA, State: &runtimeapi.ContainerStateValue{State: runtimeapi.ContainerState_CONTAINER_EXITED}}, 1},
		} {
			f := tt.f
			list, err := e.rt.ListContainers(ctx, &runtimeapi.ListContainersRequest{Filter: f})
			if err != nil {
				t.Fatal(err)
			}
			stream := streamItems(t, "StreamContainers", func(ctx context.Context) (grpc.ServerStreamingClient[runtimeapi.StreamContainersResponse], error) {
				return e.rt.StreamContainers(ctx, &runtimeapi.StreamContainersRequest{Filter: f})
			}, (*runtimeapi.StreamContainersResponse).GetContainers)
			sameItems(t, stream, list.GetContainers(), (*runtimeapi.Container).GetId, true)
			if len(stream) != tt.want {
				t.Fatalf("filter %v: %d containers, want %d", f, len(stream), tt.want)
			}
		}
	})
	t.Run("StreamContainerStats", func(t *testing.T) {
		for _, f := range []*runtimeapi.ContainerStatsFilter{nil, {PodSandboxId: podA}, {Id: ctrsA[0]}} {
			list, err := e.rt.ListContainerStats(ctx, &runtimeapi.ListContainerStatsRequest{Filter: f})
			if err != nil {
				t.Fatal(err)
			}
			stream := streamItems(t, "StreamContainerStats", func(ctx context.Context) (grpc.ServerStreamingClient[runtimeapi.StreamContainerStatsResponse], error) {
				return e.rt.StreamContainerStats(ctx, &runtimeapi.StreamContainerStatsRequest{Filter: f})
			}, (*runtimeapi.StreamContainerStatsResponse).GetContainerStats)
			sameItems(t, stream, list.GetStats(), func(s *runtimeapi.ContainerStats) string { return s.GetAttributes().GetId() }, false)
			for _, s := range stream {
				if s.GetAttributes().GetId() == ctrsA[0] && s.GetMemory().GetWorkingSetBytes() == nil {
					t.Errorf("running container %s streamed without usage: %v", ctrsA[0], s)
				}
			}
		}
	})
	t.Run("StreamPodSandboxStats", func(t *testing.T) {
		for _, f := range []*runtimeapi.PodSandboxStatsFilter{nil, {LabelSelector: map[string]string{"stream": "stream-a"}}, {Id: podC}} {
			list, err := e.rt.ListPodSandboxStats(ctx, &runtimeapi.ListPodSandboxStatsRequest{Filter: f})
			if err != nil {
				t.Fatal(err)
			}
			stream := streamItems(t, "StreamPodSandboxStats", func(ctx context.Context) (grpc.ServerStreamingClient[runtimeapi.StreamPodSandboxStatsResponse], error) {
				return e.rt.StreamPodSandboxStats(ctx, &runtimeapi.StreamPodSandboxStatsRequest{Filter: f})
			}, (*runtimeapi.StreamPodSandboxStatsResponse).GetPodSandboxStats)
			sameItems(t, stream, list.GetStats(), func(s *runtimeapi.PodSandboxStats) string { return s.GetAttributes().GetId() }, false)
		}
	})
	t.Run("StreamPodSandboxMetrics", func(t *testing.T) {
		list, err := e.rt.ListPodSandboxMetrics(ctx, &runtimeapi.ListPodSandboxMetricsRequest{})
		if err != nil {
			t.Fatal(err)
		}
		stream := streamItems(t, "StreamPodSandboxMetrics", func(ctx context.Context) (grpc.ServerStreamingClient[runtimeapi.StreamPodSandboxMetricsResponse], error) {
			return e.rt.StreamPodSandboxMetrics(ctx, &runtimeapi.StreamPodSandboxMetricsRequest{})
		}, (*runtimeapi.StreamPodSandboxMetricsResponse).GetPodSandboxMetrics)
		// The ready pods, each with its running containers.
		key := func(m *runtimeapi.PodSandboxMetrics) string {
			k := m.GetPodSandboxId()
			var ctrs []string
			for _, c := range m.GetContainerMetrics() {
				ctrs = append(ctrs, c.GetContainerId())
			}
			slices.Sort(ctrs)
			for _, c := range ctrs {
				k += "/" + c
			}
			return k
		}
		sameItems(t, stream, list.GetPodMetrics(), key, false)
		if len(stream) != 2 {
			t.Fatalf("metrics of %d pods, want the 2 ready ones", len(stream))
		}
	})
	t.Run("StreamImages", func(t *testing.T) {
		for _, f := range []*runtimeapi.ImageFilter{nil, {Image: &runtimeapi.ImageSpec{Image: busyboxImage}}, {Image: &runtimeapi.ImageSpec{Image: "registry.invalid/none:1"}}} {
			list, err := e.img.ListImages(ctx, &runtimeapi.ListImagesRequest{Filter: f})
			if err != nil {
				t.Fatal(err)
			}
			stream := streamItems(t, "StreamImages", func(ctx context.Context) (grpc.ServerStreamingClient[runtimeapi.StreamImagesResponse], error) {
				return e.img.StreamImages(ctx, &runtimeapi.StreamImagesRequest{Filter: f})
			}, (*runtimeapi.StreamImagesResponse).GetImages)
			sameItems(t, stream, list.GetImages(), (*runtimeapi.Image).GetId, true)
			if f == nil && len(stream) < 2 {
				t.Fatalf("%d images, want the pause image and busybox at least", len(stream))
			}
		}
	})
}
