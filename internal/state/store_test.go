package state

import (
	"errors"
	"os"
	"path/filepath"
	"reflect"
	"strings"
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

// Records written before the container fields replaced the "extra" map
// are read into the new fields; fields a record already has win.
func TestLegacyContainerExtra(t *testing.T) {
	tests := []struct {
		desc   string
		fields string // JSON members added to the record
		want   Container
	}{
		{
			desc:   "every legacy key",
			fields: `"extra": {"stopSignal": "15", "user": "1000:100:10,20", "terminationMessageFile": "/pods/x/term", "cgroupsPath": "/kubepods/pod1/c1"}`,
			want: Container{StopSignal: 15, User: User{UID: 1000, GID: 100, AdditionalGIDs: []uint32{10, 20}},
				TerminationMessageFile: "/pods/x/term", CgroupsPath: "/kubepods/pod1/c1"},
		},
		{
			desc:   "user without additional groups",
			fields: `"extra": {"user": "65534:65534:"}`,
			want:   Container{User: User{UID: 65534, GID: 65534}},
		},
		{
			desc:   "signal 0 is the default",
			fields: `"extra": {"stopSignal": "0", "user": "0:0:"}`,
			want:   Container{},
		},
		{
			desc:   "unparsable values are left out",
			fields: `"extra": {"stopSignal": "TERM", "user": "root", "cgroupsPath": "/c"}`,
			want:   Container{CgroupsPath: "/c"},
		},
		{
			desc:   "a bad group drops the whole user",
			fields: `"extra": {"user": "1:2:x"}`,
			want:   Container{},
		},
		{
			desc: "new fields win over the legacy map",
			fields: `"stopSignal": 9, "user": {"uid": 7, "gid": 8}, "terminationMessageFile": "/new", "cgroupsPath": "/new-cg",
				"extra": {"stopSignal": "15", "user": "1:2:3", "terminationMessageFile": "/old", "cgroupsPath": "/old-cg"}`,
			want: Container{StopSignal: 9, User: User{UID: 7, GID: 8}, TerminationMessageFile: "/new", CgroupsPath: "/new-cg"},
		},
		{
			desc:   "new format",
			fields: `"stopSignal": 2, "user": {"uid": 1, "gid": 1, "additionalGids": [5]}`,
			want:   Container{StopSignal: 2, User: User{UID: 1, GID: 1, AdditionalGIDs: []uint32{5}}},
		},
		{
			desc: "no extra at all",
		},
	}
	for _, tt := range tests {
		t.Run(tt.desc, func(t *testing.T) {
			dir := t.TempDir()
			s, _, err := Open(dir)
			if err != nil {
				t.Fatal(err)
			}
			sb := newSandbox()
			if err := s.AddSandbox(sb); err != nil {
				t.Fatal(err)
			}
			id := ids.NewContainerID()
			rec := `{"id": "` + string(id) + `", "sandboxId": "` + string(sb.ID) + `", "name": "c", "state": "running",
				"createdAt": 2, "exitCode": 0, "imageRef": "busybox", "imageId": "abc", "bundle": "/b",
				"config": {"metadata": {"name": "c", "attempt": 3}}`
			if tt.fields != "" {
				rec += ", " + tt.fields
			}
			rec += "}"
			if err := os.WriteFile(filepath.Join(dir, "containers", string(id)+".json"), []byte(rec), 0o600); err != nil {
				t.Fatal(err)
			}
			re, warnings, err := Open(dir)
			if err != nil || len(warnings) > 0 {
				t.Fatalf("reopen: %v %v", err, warnings)
			}
			got, err := re.Container(id)
			if err != nil {
				t.Fatal(err)
			}
			if got.State != ContainerRunning || got.Config.GetMetadata().GetAttempt() != 3 || got.ImageRef != "busybox" {
				t.Errorf("base fields: %+v", got)
			}
			gotFields := Container{StopSignal: got.StopSignal, User: got.User, TerminationMessageFile: got.TerminationMessageFile, CgroupsPath: got.CgroupsPath}
			if !reflect.DeepEqual(gotFields, tt.want) {
				t.Errorf("migrated fields = %+v, want %+v", gotFields, tt.want)
			}

			// The next write is in the new form, without the legacy map,
			// and reads back the same.
			if _, err := re.UpdateContainer(id, func(*Container) error { return nil }); err != nil {
				t.Fatal(err)
			}
			b, err := os.ReadFile(filepath.Join(dir, "containers", string(id)+".json"))
			if err != nil {
				t.Fatal(err)
			}
			if strings.Contains(string(b), `"extra"`) {
				t.Errorf("rewritten record still has the legacy map:\n%s", b)
			}
			again, _, err := Open(dir)
			if err != nil {
				t.Fatal(err)
			}
			got2, err := again.Container(id)
			if err != nil {
				t.Fatal(err)
			}
			if !reflect.DeepEqual(got2.User, got.User) || got2.StopSignal != got.StopSignal ||
				got2.TerminationMessageFile != got.TerminationMessageFile || got2.CgroupsPath != got.CgroupsPath {
				t.Errorf("after rewrite: %+v, before: %+v", got2, got)
			}
		})
	}
}

// Copies handed out are independent of the stored record, down to the
// slices they hold.
func TestRecordsAreCopies(t *testing.T) {
	s, _, err := Open(t.TempDir())
	if err != nil {
		t.Fatal(err)
	}
	sb := newSandbox()
	if err := s.AddSandbox(sb); err != nil {
		t.Fatal(err)
	}
	c := &Container{ID: ids.NewContainerID(), SandboxID: sb.ID, State: ContainerCreated, User: User{AdditionalGIDs: []uint32{1, 2}}}
	if err := s.AddContainer(c); err != nil {
		t.Fatal(err)
	}
	sb.IPs[0] = "changed by the caller"
	c.User.AdditionalGIDs[0] = 99
	got, _ := s.Container(c.ID)
	got.User.AdditionalGIDs[1] = 98
	gotSb, _ := s.Sandbox(sb.ID)
	gotSb.IPs[0] = "changed too"

	again, _ := s.Container(c.ID)
	if !reflect.DeepEqual(again.User.AdditionalGIDs, []uint32{1, 2}) {
		t.Errorf("container groups = %v, want [1 2]", again.User.AdditionalGIDs)
	}
	if sbAgain, _ := s.Sandbox(sb.ID); sbAgain.IPs[0] != "10.88.0.2" {
		t.Errorf("sandbox IPs = %v", sbAgain.IPs)
	}
}

// Writes go through atomicfile: nothing but the records is left in the
// directories, and the files are private.
func TestWritesLeaveOnlyRecords(t *testing.T) {
	dir := t.TempDir()
	s, _, err := Open(dir)
	if err != nil {
		t.Fatal(err)
	}
	sb := newSandbox()
	if err := s.AddSandbox(sb); err != nil {
		t.Fatal(err)
	}
	for range 3 {
		if _, err := s.UpdateSandbox(sb.ID, func(sb *Sandbox) error { sb.PausePID++; return nil }); err != nil {
			t.Fatal(err)
		}
	}
	entries, err := os.ReadDir(filepath.Join(dir, "sandboxes"))
	if err != nil {
		t.Fatal(err)
	}
	if len(entries) != 1 || entries[0].Name() != string(sb.ID)+".json" {
		t.Fatalf("sandboxes dir holds %v", entries)
	}
	fi, err := entries[0].Info()
	if err != nil {
		t.Fatal(err)
	}
	if perm := fi.Mode().Perm(); perm != 0o600 {
		t.Errorf("record mode %v, want 0600", perm)
	}
}

// TestRecordContainerExit checks the exit published before its write: seen
// at once, on disk after written, refused for anything but an exit, and
// ordered before a later removal of the record's file.
func TestRecordContainerExit(t *testing.T) {
	exit := func(c *Container) error {
		c.State, c.ExitCode, c.Pid = ContainerExited, 137, 0
		return nil
	}
	tests := []struct {
		desc string
		fn   func(*Container) error
		// then runs right after RecordContainerExit, before written.
		then    func(*Store, ids.ContainerID) error
		wantErr func(error) bool
		// want is the container's state after a reopen ("" = no record).
		want ContainerState
	}{
		{desc: "exit", fn: exit, want: ContainerExited},
		{desc: "not an exit", fn: func(c *Container) error { c.Pid = 7; return nil },
			wantErr: func(err error) bool { return err != nil }, want: ContainerRunning},
		{desc: "illegal transition", fn: func(c *Container) error { c.State = ContainerCreated; return nil },
			wantErr: func(err error) bool { return errors.Is(err, errdefs.ErrFailedPrecondition) }, want: ContainerRunning},
		{desc: "removal after the exit", fn: exit,
			then: func(s *Store, id ids.ContainerID) error { return s.DeleteContainer(id) }},
		{desc: "update after the exit", fn: exit, want: ContainerExited,
			then: func(s *Store, id ids.ContainerID) error {
				_, err := s.UpdateContainer(id, func(c *Container) error { c.Message = "later"; return nil })
				return err
			}},
	}
	for _, tt := range tests {
		t.Run(tt.desc, func(t *testing.T) {
			dir := t.TempDir()
			s, _, err := Open(dir)
			if err != nil {
				t.Fatal(err)
			}
			sb := newSandbox()
			if err := s.AddSandbox(sb); err != nil {
				t.Fatal(err)
			}
			c := &Container{ID: ids.NewContainerID(), SandboxID: sb.ID, Name: "c", State: ContainerRunning, Pid: 42, CreatedAt: 2}
			if err := s.AddContainer(c); err != nil {
				t.Fatal(err)
			}
			got, written, err := s.RecordContainerExit(c.ID, tt.fn)
			if tt.wantErr != nil {
				if !tt.wantErr(err) || written != nil {
					t.Fatalf("got %v (written %v), want an error", err, written != nil)
				}
			} else {
				if err != nil {
					t.Fatal(err)
				}
				if got.State != ContainerExited || got.ExitCode != 137 {
					t.Fatalf("returned %+v", got)
				}
				// Seen at once, whether or not the file is written yet.
				if cur, err := s.Container(c.ID); err != nil || cur.State != ContainerExited {
					t.Fatalf("read after the exit: %+v %v", cur, err)
				}
				if tt.then != nil {
					if err := tt.then(s, c.ID); err != nil {
						t.Fatal(err)
					}
				}
				if err := written(); err != nil {
					t.Fatal(err)
				}
				if err := written(); err != nil {
					t.Fatalf("second call: %v", err)
				}
			}
			re, _, err := Open(dir)
			if err != nil {
				t.Fatal(err)
			}
			rc, err := re.Container(c.ID)
			switch {
			case tt.want == "" && !errdefs.IsNotFound(err):
				t.Fatalf("after reopen: %+v %v, want no record", rc, err)
			case tt.want != "" && (err != nil || rc.State != tt.want):
				t.Fatalf("after reopen: %+v %v, want %s", rc, err, tt.want)
			}
			if tt.desc == "update after the exit" && rc.Message != "later" {
				t.Fatalf("the later update was overwritten by the exit's write: %+v", rc)
			}
		})
	}
}

// A write killed before its rename leaves its temporary file; the next
// Open removes it and keeps the record it was to replace.
func TestOpenRemovesCutWrites(t *testing.T) {
	dir := t.TempDir()
	s, _, err := Open(dir)
	if err != nil {
		t.Fatal(err)
	}
	sb := newSandbox()
	if err := s.AddSandbox(sb); err != nil {
		t.Fatal(err)
	}
	cut := filepath.Join(dir, "sandboxes", ".tmp-"+string(sb.ID)+".json-123456")
	if err := os.WriteFile(cut, []byte(`{"id":`), 0o600); err != nil {
		t.Fatal(err)
	}
	re, warnings, err := Open(dir)
	if err != nil || len(warnings) > 0 {
		t.Fatalf("reopen: %v %v", err, warnings)
	}
	if _, err := os.Stat(cut); !os.IsNotExist(err) {
		t.Errorf("temporary file left: %v", err)
	}
	if got, err := re.Sandbox(sb.ID); err != nil || got.State != SandboxReady {
		t.Errorf("record after reopen: %+v %v", got, err)
	}
}

// SandboxContainers and SandboxIDsOldestFirst answer from the index and
// the records without copying the others: right after adds and deletes,
// and after a reopen.
func TestSandboxContainersIndex(t *testing.T) {
	dir := t.TempDir()
	s, _, err := Open(dir)
	if err != nil {
		t.Fatal(err)
	}
	a, b := newSandbox(), newSandbox()
	b.CreatedAt = 0 // older than a
	for _, sb := range []*Sandbox{a, b} {
		if err := s.AddSandbox(sb); err != nil {
			t.Fatal(err)
		}
	}
	var inA []ids.ContainerID
	for i, pod := range []ids.SandboxID{a.ID, a.ID, b.ID, a.ID} {
		c := &Container{ID: ids.NewContainerID(), SandboxID: pod, Name: "c", State: ContainerCreated, CreatedAt: int64(10 - i)}
		if err := s.AddContainer(c); err != nil {
			t.Fatal(err)
		}
		if pod == a.ID {
			inA = append([]ids.ContainerID{c.ID}, inA...) // newest added first: oldest first
		}
	}
	if err := s.DeleteContainer(inA[1]); err != nil {
		t.Fatal(err)
	}
	inA = append(inA[:1], inA[2:]...)
	re, _, err := Open(dir)
	if err != nil {
		t.Fatal(err)
	}
	for name, st := range map[string]*Store{"same": s, "reopened": re} {
		t.Run(name, func(t *testing.T) {
			var got []ids.ContainerID
			for _, c := range st.SandboxContainers(a.ID) {
				got = append(got, c.ID)
			}
			if !reflect.DeepEqual(got, inA) {
				t.Errorf("containers of a: %v, want %v", got, inA)
			}
			if n := len(st.SandboxContainers(b.ID)); n != 1 {
				t.Errorf("containers of b: %d, want 1", n)
			}
			if got := st.SandboxIDsOldestFirst(); !reflect.DeepEqual(got, []ids.SandboxID{b.ID, a.ID}) {
				t.Errorf("sandboxes oldest first: %v, want %v", got, []ids.SandboxID{b.ID, a.ID})
			}
			if err := st.DeleteSandbox(b.ID); !errors.Is(err, errdefs.ErrFailedPrecondition) {
				t.Errorf("deleting a sandbox with a container: %v", err)
			}
		})
	}
}
