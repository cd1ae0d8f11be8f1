package state

import (
	"errors"
	"os"
	"path/filepath"
	"testing"

	runtimeapi "k8s.io/cri-api/pkg/apis/runtime/v1"

	"github.com/noded-dev/noded/internal/errdefs"
	"github.com/noded-dev/noded/internal/ids"
)

func newSandbox() *Sandbox {
	return &Sandbox{
		ID: ids.NewSandboxID(), Name: "web_default_uid_0", State: SandboxReady, CreatedAt: 1,
		Config: &runtimeapi.PodSandboxConfig{
			Metadata: &runtimeapi.PodSandboxMetadata{Name: "web", Namespace: "default", Uid: "uid"},
			Labels:   map[string]string{"app": "web"},
		},
		IPs: []string{"10.88.0.2"},
	}
}

func TestStorePersistsAcrossReopen(t *testing.T) {
	dir := t.TempDir()
	s, _, err := Open(dir)
	if err != nil {
		t.Fatal(err)
	}
	sb := newSandbox()
	if err := s.AddSandbox(sb); err != nil {
		t.Fatal(err)
	}
	c := &Container{ID: ids.NewContainerID(), SandboxID: sb.ID, Name: "c", State: ContainerCreated, CreatedAt: 2,
		Config: &runtimeapi.ContainerConfig{Metadata: &runtimeapi.ContainerMetadata{Name: "c", Attempt: 1}}}
	if err := s.AddContainer(c); err != nil {
		t.Fatal(err)
	}
	if _, err := s.UpdateContainer(c.ID, func(c *Container) error {
		c.State, c.Pid = ContainerRunning, 42
		return nil
	}); err != nil {
		t.Fatal(err)
	}

	re, warnings, err := Open(dir)
	if err != nil || len(warnings) > 0 {
		t.Fatalf("reopen: %v %v", err, warnings)
	}
	gotSb, err := re.Sandbox(sb.ID)
	if err != nil {
		t.Fatal(err)
	}
	if gotSb.Config.GetLabels()["app"] != "web" || gotSb.IPs[0] != "10.88.0.2" || gotSb.State != SandboxReady {
		t.Errorf("sandbox after reopen: %+v", gotSb)
	}
	gotC, err := re.Container(c.ID)
	if err != nil {
		t.Fatal(err)
	}
	if gotC.State != ContainerRunning || gotC.Pid != 42 || gotC.Config.GetMetadata().GetAttempt() != 1 {
		t.Errorf("container after reopen: %+v", gotC)
	}
}

func TestTransitions(t *testing.T) {
	tests := []struct {
		desc    string
		path    []ContainerState
		wantErr bool
	}{
		{desc: "normal life", path: []ContainerState{ContainerRunning, ContainerExited}},
		{desc: "stop before start", path: []ContainerState{ContainerExited}},
		{desc: "idempotent", path: []ContainerState{ContainerRunning, ContainerRunning}},
		{desc: "no restart of an exited container", path: []ContainerState{ContainerRunning, ContainerExited, ContainerRunning}, wantErr: true},
		{desc: "no going back to created", path: []ContainerState{ContainerRunning, ContainerCreated}, wantErr: true},
	}
	for _, tt := range tests {
		t.Run(tt.desc, func(t *testing.T) {
			s, _, err := Open(t.TempDir())
			if err != nil {
				t.Fatal(err)
			}
			sb := newSandbox()
			_ = s.AddSandbox(sb)
			c := &Container{ID: ids.NewContainerID(), SandboxID: sb.ID, State: ContainerCreated}
			if err := s.AddContainer(c); err != nil {
				t.Fatal(err)
			}
			var last error
			for _, st := range tt.path {
				_, last = s.UpdateContainer(c.ID, func(c *Container) error { c.State = st; return nil })
				if last != nil {
					break
				}
			}
			if (last != nil) != tt.wantErr {
				t.Fatalf("err = %v, wantErr %v", last, tt.wantErr)
			}
			if tt.wantErr && !errors.Is(last, errdefs.ErrFailedPrecondition) {
				t.Fatalf("transition error has the wrong class: %v", last)
			}
		})
	}
}

func TestFailedUpdateChangesNothing(t *testing.T) {
	s, _, _ := Open(t.TempDir())
	sb := newSandbox()
	_ = s.AddSandbox(sb)
	_, err := s.UpdateSandbox(sb.ID, func(sb *Sandbox) error {
		sb.IPs = nil
		return errdefs.InvalidArgument("nope")
	})
	if err == nil {
		t.Fatal("expected error")
	}
	got, _ := s.Sandbox(sb.ID)
	if len(got.IPs) != 1 {
		t.Fatal("a failed update leaked into the record")
	}
}

func TestDeleteAndNotFound(t *testing.T) {
	s, _, _ := Open(t.TempDir())
	sb := newSandbox()
	_ = s.AddSandbox(sb)
	c := &Container{ID: ids.NewContainerID(), SandboxID: sb.ID, State: ContainerCreated}
	_ = s.AddContainer(c)
	if err := s.DeleteSandbox(sb.ID); err == nil {
		t.Fatal("deleted a sandbox that still has a container")
	}
	if err := s.DeleteContainer(c.ID); err != nil {
		t.Fatal(err)
	}
	if err := s.DeleteContainer(c.ID); err != nil {
		t.Fatalf("second delete: %v", err)
	}
	if err := s.DeleteSandbox(sb.ID); err != nil {
		t.Fatal(err)
	}
	if _, err := s.Sandbox(sb.ID); !errdefs.IsNotFound(err) {
		t.Fatalf("after delete: %v", err)
	}
	if err := s.AddContainer(&Container{ID: ids.NewContainerID(), SandboxID: sb.ID, State: ContainerCreated}); !errdefs.IsNotFound(err) {
		t.Fatalf("container in a missing sandbox: %v", err)
	}
}

func TestCorruptFileIsMovedAside(t *testing.T) {
	dir := t.TempDir()
	s, _, _ := Open(dir)
	sb := newSandbox()
	_ = s.AddSandbox(sb)
	bad := filepath.Join(dir, "containers", string(ids.NewContainerID())+".json")
	if err := os.WriteFile(bad, []byte("{not json"), 0o600); err != nil {
		t.Fatal(err)
	}
	re, warnings, err := Open(dir)
	if err != nil {
		t.Fatal(err)
	}
	if len(warnings) != 1 || len(re.Sandboxes()) != 1 {
		t.Fatalf("warnings %v sandboxes %d", warnings, len(re.Sandboxes()))
	}
	if _, err := os.Stat(bad + ".corrupt"); err != nil {
		t.Fatalf("corrupt file not moved aside: %v", err)
	}
}
