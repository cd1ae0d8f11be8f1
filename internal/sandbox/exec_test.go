package sandbox

import (
	"bytes"
	"context"
	"errors"
	"slices"
	"testing"
	"time"

	"github.com/noded-dev/noded/internal/errdefs"
	"github.com/noded-dev/noded/internal/ids"
)

func TestStreamingExecAndAttach(t *testing.T) {
	s, f := newTestService(t, nil)
	ctx := context.Background()
	_, ctrID := runPodWithContainer(t, s, "web")
	var out bytes.Buffer
	if _, err := s.Exec.Exec(ctx, ctrID, []string{"true"}, Stdio{Out: &out}); !errors.Is(err, errdefs.ErrFailedPrecondition) {
		t.Fatalf("exec in a created container: %v", err)
	}
	// Attaching to a created container is fine: its output comes once it
	// starts.
	if err := s.Exec.Attach(ctx, ctrID, Stdio{Out: &out}); err != nil {
		t.Fatalf("attach to a created container: %v", err)
	}
	if err := s.Containers.StartContainer(ctx, ctrID); err != nil {
		t.Fatal(err)
	}
	code, err := s.Exec.Exec(ctx, ctrID, []string{"sh", "-c", "exit 3"}, Stdio{Out: &out})
	if err != nil || code != 3 || out.String() != "out" {
		t.Fatalf("exec: %d %v %q", code, err, out.String())
	}
	if _, err := s.Exec.Exec(ctx, ctrID, nil, Stdio{}); !errdefs.IsInvalidArgument(err) {
		t.Fatalf("empty command: %v", err)
	}
	if _, err := s.Exec.Exec(ctx, ids.ContainerID("nope"), []string{"true"}, Stdio{}); !errdefs.IsNotFound(err) {
		t.Fatalf("unknown container: %v", err)
	}
	if err := s.Exec.Attach(ctx, ids.ContainerID("nope"), Stdio{}); !errdefs.IsNotFound(err) {
		t.Fatalf("attach to an unknown container: %v", err)
	}
	if err := s.Containers.StopContainer(ctx, ctrID, time.Second); err != nil {
		t.Fatal(err)
	}
	if _, err := s.Exec.Exec(ctx, ctrID, []string{"true"}, Stdio{}); !errors.Is(err, errdefs.ErrFailedPrecondition) {
		t.Fatalf("exec in a stopped container: %v", err)
	}
	if err := s.Exec.Attach(ctx, ctrID, Stdio{}); !errors.Is(err, errdefs.ErrFailedPrecondition) {
		t.Fatalf("attach to a stopped container: %v", err)
	}
	f.mu.Lock()
	defer f.mu.Unlock()
	if want := []string{string(ctrID) + " sh -c exit 3"}; !slices.Equal(f.execs, want) {
		t.Errorf("monitor execs %q, want %q", f.execs, want)
	}
	if want := []string{string(ctrID)}; !slices.Equal(f.attaches, want) {
		t.Errorf("monitor attaches %q, want %q", f.attaches, want)
	}
}
