package ids

import (
	"testing"

	"github.com/noded-dev/noded/internal/errdefs"
)

func TestNewIDsAreValidAndUnique(t *testing.T) {
	a, b := NewSandboxID(), NewContainerID()
	if len(a) != 64 || len(b) != 64 || string(a) == string(b) {
		t.Fatalf("bad ids %q %q", a, b)
	}
	if a.Short() != string(a)[:12] {
		t.Fatalf("short = %q", a.Short())
	}
}

func TestNames(t *testing.T) {
	n := NewNames()
	if err := n.Reserve("pod_ns_uid_0", "id1"); err != nil {
		t.Fatal(err)
	}
	if err := n.Reserve("pod_ns_uid_0", "id1"); err != nil {
		t.Fatalf("re-reserving for the same key: %v", err)
	}
	err := n.Reserve("pod_ns_uid_0", "id2")
	if !errdefs.IsAlreadyExists(err) || !contains(err.Error(), "id1") {
		t.Fatalf("duplicate name: %v", err)
	}
	n.Release("id1")
	if err := n.Reserve("pod_ns_uid_0", "id2"); err != nil {
		t.Fatalf("after release: %v", err)
	}
	if k, ok := n.Get("pod_ns_uid_0"); !ok || k != "id2" {
		t.Fatalf("Get = %q %v", k, ok)
	}
}

func TestResolve(t *testing.T) {
	all := []ContainerID{"abc123", "abd456", "xyz"}
	tests := []struct {
		desc    string
		prefix  string
		want    ContainerID
		wantErr func(error) bool
	}{
		{desc: "full", prefix: "xyz", want: "xyz"},
		{desc: "unique prefix", prefix: "abc", want: "abc123"},
		{desc: "ambiguous", prefix: "ab", wantErr: errdefs.IsInvalidArgument},
		{desc: "unknown", prefix: "q", wantErr: errdefs.IsNotFound},
		{desc: "empty", prefix: "", wantErr: errdefs.IsInvalidArgument},
	}
	for _, tt := range tests {
		t.Run(tt.desc, func(t *testing.T) {
			got, err := Resolve(tt.prefix, all)
			if tt.wantErr != nil {
				if !tt.wantErr(err) {
					t.Fatalf("err = %v", err)
				}
				return
			}
			if err != nil || got != tt.want {
				t.Fatalf("Resolve(%q) = %q, %v", tt.prefix, got, err)
			}
		})
	}
}

func contains(s, sub string) bool {
	for i := 0; i+len(sub) <= len(s); i++ {
		if s[i:i+len(sub)] == sub {
			return true
		}
	}
	return false
}
