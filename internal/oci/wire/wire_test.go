package wire

import (
	"os"
	"strings"
	"testing"
)

func TestValidID(t *testing.T) {
	tests := []struct {
		id string
		ok bool
	}{
		{"abc", true},
		{"0123456789abcdef0123456789abcdef0123456789abcdef0123456789abcdef", true},
		{"a_b.c+d-e", true},
		{"", false},
		{"-a", false},
		{".hidden", false},
		{"a/b", false},
		{"..", false},
		{"a b", false},
		{strings.Repeat("a", 128), true},
		{strings.Repeat("a", 129), false},
	}
	for _, tc := range tests {
		if got := ValidID(tc.id); got != tc.ok {
			t.Errorf("ValidID(%q) = %v, want %v", tc.id, got, tc.ok)
		}
	}
}

func TestPaths(t *testing.T) {
	pod := "0123456789abcdef"
	if got := SocketPath("/run/noded/oci", pod); got != "/run/noded/oci/0123456789ab.sock" {
		t.Errorf("SocketPath = %q", got)
	}
	if got := MonitorDir("/run/x", "short"); got != "/run/x/short" {
		t.Errorf("MonitorDir = %q", got)
	}
}

func TestStateFile(t *testing.T) {
	dir := t.TempDir()
	st := &ContainerState{ID: "c1", Pod: "p", Status: StatusExited, ExitCode: 137, OOMKilled: true, FinishedAt: 42}
	if err := WriteStateFile(dir, st); err != nil {
		t.Fatal(err)
	}
	st.ExitCode = 3 // overwrite in place
	if err := WriteStateFile(dir, st); err != nil {
		t.Fatal(err)
	}
	got, err := ReadStateFile(dir, "c1")
	if err != nil {
		t.Fatal(err)
	}
	if *got != *st {
		t.Fatalf("read %+v, wrote %+v", got, st)
	}
	entries, _ := os.ReadDir(dir)
	if len(entries) != 1 {
		t.Fatalf("temporary files left: %v", entries)
	}
	if _, err := ReadStateFile(dir, "nope"); !os.IsNotExist(err) {
		t.Fatalf("missing file: %v", err)
	}
	if err := WriteStateFile(dir, &ContainerState{ID: "../x"}); err == nil {
		t.Fatal("wrote a state file for an invalid id")
	}
}
