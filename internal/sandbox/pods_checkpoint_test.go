package sandbox

import (
	"context"
	"errors"
	"path/filepath"
	"testing"

	runtimeapi "k8s.io/cri-api/pkg/apis/runtime/v1"

	"github.com/noded-dev/noded/internal/checkpoint"
	"github.com/noded-dev/noded/internal/errdefs"
	"github.com/noded-dev/noded/internal/ids"
)

// fakeCheckpoints records what it was asked to checkpoint.
type fakeCheckpoints struct {
	ctrs []ids.ContainerID
	pods [][]ids.ContainerID
}

func (f *fakeCheckpoints) Checkpoint(_ context.Context, r checkpoint.Request) error {
	f.ctrs = append(f.ctrs, r.Container.ID)
	return nil
}

func (f *fakeCheckpoints) CheckpointPod(_ context.Context, r checkpoint.PodRequest) error {
	var got []ids.ContainerID
	for _, c := range r.Containers {
		got = append(got, c.ID)
	}
	f.pods = append(f.pods, got)
	return nil
}

func TestCheckpointRefusals(t *testing.T) {
	s, _ := newTestService(t, nil)
	ctx := context.Background()
	fake := &fakeCheckpoints{}
	s.Pods.o.Checkpoints = fake
	pod, err := s.Pods.RunPodSandbox(ctx, podConfig("ck"), "")
	if err != nil {
		t.Fatal(err)
	}
	other, err := s.Pods.RunPodSandbox(ctx, podConfig("ck-other"), "")
	if err != nil {
		t.Fatal(err)
	}
	run := func(pod ids.SandboxID, name string, start bool) ids.ContainerID {
		id, err := s.Containers.CreateContainer(ctx, pod, containerConfig(name))
		if err != nil {
			t.Fatal(err)
		}
		if start {
			if err := s.Containers.StartContainer(ctx, id); err != nil {
				t.Fatal(err)
			}
		}
		return id
	}
	a, b, created, elsewhere := run(pod, "a", true), run(pod, "b", true), run(pod, "c", false), run(other, "d", true)
	loc := filepath.Join(t.TempDir(), "c.tar")
	out := t.TempDir()

	for _, tc := range []struct {
		desc string
		call func() error
		want error
	}{
		{"container: running", func() error { return s.Containers.CheckpointContainer(ctx, a, loc, 0) }, nil},
		{"container: created", func() error { return s.Containers.CheckpointContainer(ctx, created, loc, 0) }, errdefs.ErrFailedPrecondition},
		{"container: unknown", func() error { return s.Containers.CheckpointContainer(ctx, "0123456789", loc, 0) }, errdefs.ErrNotFound},
		{"container: relative location", func() error { return s.Containers.CheckpointContainer(ctx, a, "c.tar", 0) }, errdefs.ErrInvalidArgument},
		{"pod: two running", func() error { return s.Pods.CheckpointPod(ctx, pod, out, []ids.ContainerID{a, b}, nil) }, nil},
		{"pod: an option", func() error {
			return s.Pods.CheckpointPod(ctx, pod, out, []ids.ContainerID{a}, map[string]string{"k": "v"})
		}, errdefs.ErrInvalidArgument},
		{"pod: none", func() error { return s.Pods.CheckpointPod(ctx, pod, out, nil, nil) }, errdefs.ErrInvalidArgument},
		{"pod: twice", func() error { return s.Pods.CheckpointPod(ctx, pod, out, []ids.ContainerID{a, a}, nil) }, errdefs.ErrInvalidArgument},
		{"pod: another pod's", func() error { return s.Pods.CheckpointPod(ctx, pod, out, []ids.ContainerID{a, elsewhere}, nil) }, errdefs.ErrInvalidArgument},
		{"pod: created", func() error { return s.Pods.CheckpointPod(ctx, pod, out, []ids.ContainerID{a, created}, nil) }, errdefs.ErrFailedPrecondition},
		{"pod: unknown", func() error { return s.Pods.CheckpointPod(ctx, "0123456789", out, []ids.ContainerID{a}, nil) }, errdefs.ErrNotFound},
		{"pod: relative directory", func() error { return s.Pods.CheckpointPod(ctx, pod, "out", []ids.ContainerID{a}, nil) }, errdefs.ErrInvalidArgument},
		{"restore: an option", func() error {
			_, _, err := s.Pods.RestorePod(ctx, out, podConfig("r"), "", map[string]string{"k": "v"}, []*runtimeapi.ContainerConfig{containerConfig("a")})
			return err
		}, errdefs.ErrInvalidArgument},
		{"restore: unknown handler", func() error {
			_, _, err := s.Pods.RestorePod(ctx, out, podConfig("r"), "kata", nil, []*runtimeapi.ContainerConfig{containerConfig("a")})
			return err
		}, errdefs.ErrInvalidArgument},
		{"restore: not a pod checkpoint", func() error {
			_, _, err := s.Pods.RestorePod(ctx, out, podConfig("r"), "", nil, []*runtimeapi.ContainerConfig{containerConfig("a")})
			return err
		}, errdefs.ErrInvalidArgument},
	} {
		t.Run(tc.desc, func(t *testing.T) {
			err := tc.call()
			if (tc.want == nil) != (err == nil) || (tc.want != nil && !errors.Is(err, tc.want)) {
				t.Fatalf("got %v, want %v", err, tc.want)
			}
		})
	}
	if len(fake.ctrs) != 1 || fake.ctrs[0] != a || len(fake.pods) != 1 || len(fake.pods[0]) != 2 {
		t.Errorf("checkpointed %v and pods %v; want only the accepted calls", fake.ctrs, fake.pods)
	}

	s.Pods.o.Checkpoints = nil
	if err := s.Containers.CheckpointContainer(ctx, a, loc, 0); !errors.Is(err, errdefs.ErrNotImplemented) {
		t.Errorf("without checkpoints: %v", err)
	}
	if _, err := s.Containers.CreateContainer(ctx, pod, &runtimeapi.ContainerConfig{
		Metadata: &runtimeapi.ContainerMetadata{Name: "r"}, Image: &runtimeapi.ImageSpec{Image: loc},
	}); !errdefs.IsInvalidArgument(err) {
		t.Errorf("a restore without checkpoints: %v", err)
	}
}
