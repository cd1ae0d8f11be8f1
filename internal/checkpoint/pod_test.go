package checkpoint

import (
	"context"
	"errors"
	"os"
	"path/filepath"
	"slices"
	"testing"

	runtimeapi "k8s.io/cri-api/pkg/apis/runtime/v1"

	"github.com/noded-dev/noded/internal/ids"
	"github.com/noded-dev/noded/internal/oci"
	"github.com/noded-dev/noded/internal/state"
)

// fakeMonitor records pauses and resumes; its dumps fail with dumpErr
// (or write nothing and succeed), pauses of pauseFails fail.
type fakeMonitor struct {
	log        []string
	paused     map[oci.ContainerID]bool
	dumpErr    error
	pauseFails oci.ContainerID
}

func (f *fakeMonitor) Checkpoint(_ context.Context, _ oci.PodID, id oci.ContainerID, o oci.CheckpointOptions) error {
	f.log = append(f.log, "dump "+string(id))
	if !f.paused[id] {
		return errors.New("dumped a running container of a pod checkpoint")
	}
	if f.dumpErr != nil {
		return f.dumpErr
	}
	return os.MkdirAll(o.Dir, 0o700)
}

func (f *fakeMonitor) Pause(_ context.Context, _ oci.PodID, id oci.ContainerID) error {
	f.log = append(f.log, "pause "+string(id))
	if id == f.pauseFails {
		return errors.New("pause failed")
	}
	f.paused[id] = true
	return nil
}

func (f *fakeMonitor) Resume(_ context.Context, _ oci.PodID, id oci.ContainerID) error {
	f.log = append(f.log, "resume "+string(id))
	delete(f.paused, id)
	return nil
}

func TestCheckpointPodFailures(t *testing.T) {
	tests := []struct {
		desc       string
		dumpErr    error
		pauseFails oci.ContainerID
		want       []string
	}{
		{desc: "a dump fails", dumpErr: errors.New("criu failed"),
			want: []string{"pause a", "pause b", "dump a", "resume a", "resume b"}},
		{desc: "the second pause fails", pauseFails: "b",
			want: []string{"pause a", "pause b", "resume a", "resume b"}},
	}
	for _, tc := range tests {
		t.Run(tc.desc, func(t *testing.T) {
			m := &fakeMonitor{paused: map[oci.ContainerID]bool{}, dumpErr: tc.dumpErr, pauseFails: tc.pauseFails}
			stateDir := t.TempDir()
			s := New(Options{Monitor: m, StateDir: stateDir})
			out := t.TempDir()
			var ctrs []*state.Container
			for _, id := range []ids.ContainerID{"a", "b"} {
				ctrs = append(ctrs, &state.Container{ID: id, SandboxID: "p", Bundle: t.TempDir(),
					Config: &runtimeapi.ContainerConfig{Metadata: &runtimeapi.ContainerMetadata{Name: "n" + string(id)}}})
			}
			err := s.CheckpointPod(context.Background(), PodRequest{Pod: &state.Sandbox{ID: "p"}, Containers: ctrs, OutputPath: out})
			if err == nil {
				t.Fatal("no error")
			}
			if !slices.Equal(m.log, tc.want) {
				t.Errorf("calls %v, want %v", m.log, tc.want)
			}
			if len(m.paused) != 0 {
				t.Errorf("left paused: %v", m.paused)
			}
			for _, dir := range []string{out, stateDir} {
				if left, _ := os.ReadDir(dir); len(left) != 0 {
					t.Errorf("left in %s: %v", dir, left)
				}
			}
		})
	}
}

// A noded killed during a pod checkpoint leaves its marker: the next
// start resumes the containers and empties the output directory.
func TestRecover(t *testing.T) {
	stateDir, out := t.TempDir(), t.TempDir()
	if err := os.WriteFile(filepath.Join(out, "main.tar"), []byte("partial"), 0o600); err != nil {
		t.Fatal(err)
	}
	m := &fakeMonitor{paused: map[oci.ContainerID]bool{"a": true, "b": true}}
	s := New(Options{Monitor: m, StateDir: stateDir})
	if _, err := s.writeMarker("pod-p", podMarker(PodRequest{Pod: &state.Sandbox{ID: "p"}, OutputPath: out,
		Containers: []*state.Container{{ID: "a"}, {ID: "b"}}})); err != nil {
		t.Fatal(err)
	}
	work, partial := filepath.Join(t.TempDir(), "checkpoint-work"), filepath.Join(out, ".c.tar.noded-partial")
	if err := os.MkdirAll(filepath.Join(work, "checkpoint"), 0o700); err != nil {
		t.Fatal(err)
	}
	if _, err := s.writeMarker("container-a", &marker{Pod: "p", Work: work, Partial: partial}); err != nil {
		t.Fatal(err)
	}
	s.Recover(context.Background())
	if len(m.paused) != 0 || !slices.Equal(m.log, []string{"resume a", "resume b"}) {
		t.Errorf("calls %v, still paused %v", m.log, m.paused)
	}
	for _, dir := range []string{out, stateDir} {
		if left, _ := os.ReadDir(dir); len(left) != 0 {
			t.Errorf("left in %s: %v", dir, left)
		}
	}
	if _, err := os.Stat(work); !os.IsNotExist(err) {
		t.Errorf("a container checkpoint's work directory is left: %v", err)
	}
}
