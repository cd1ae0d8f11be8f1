package runclayout

import (
	"os"
	"path/filepath"
	"slices"
	"testing"
)

// The facts themselves are checked against runc in conmon-go/runtime
// (TestRuncLayout); this checks the helpers built on them.

func TestPaths(t *testing.T) {
	for _, tc := range []struct {
		name string
		got  string
		want string
	}{
		{"state directory", ContainerDir("/run/oci/pod1", "c1"), "/run/oci/pod1/c1"},
		{"state file", StatePath("/run/oci/pod1", "c1"), "/run/oci/pod1/c1/state.json"},
		{"exec fifo", ExecFifoPath("/run/oci/pod1", "c1"), "/run/oci/pod1/c1/exec.fifo"},
	} {
		t.Run(tc.name, func(t *testing.T) {
			if tc.got != tc.want {
				t.Fatalf("got %s, want %s", tc.got, tc.want)
			}
		})
	}
}

func TestExistsAndContainerIDs(t *testing.T) {
	root := t.TempDir()
	for _, d := range []string{"b", "a"} {
		if err := os.Mkdir(filepath.Join(root, d), 0o711); err != nil {
			t.Fatal(err)
		}
	}
	if err := os.WriteFile(filepath.Join(root, "not-a-container"), nil, 0o600); err != nil {
		t.Fatal(err)
	}
	for _, tc := range []struct {
		name, root, id string
		want           bool
	}{
		{"a state directory", root, "a", true},
		{"any entry counts, as libcontainer.Create refuses to make one over it", root, "not-a-container", true},
		{"no state directory", root, "c", false},
		{"no root", filepath.Join(root, "gone"), "a", false},
	} {
		t.Run(tc.name, func(t *testing.T) {
			if got := Exists(tc.root, tc.id); got != tc.want {
				t.Fatalf("Exists = %v, want %v", got, tc.want)
			}
		})
	}
	for _, tc := range []struct {
		name string
		root string
		want []string
	}{
		{"directories only, in order", root, []string{"a", "b"}},
		{"missing root", filepath.Join(root, "gone"), nil},
	} {
		t.Run(tc.name, func(t *testing.T) {
			got, err := ContainerIDs(tc.root)
			if err != nil || !slices.Equal(got, tc.want) {
				t.Fatalf("got %v, %v; want %v", got, err, tc.want)
			}
		})
	}
}
