package cgroupstats

import (
	"os"
	"path/filepath"
	"testing"
)

func TestDir(t *testing.T) {
	tests := []struct{ in, want string }{
		{"/kubepods/besteffort/pod1/abc", "/kubepods/besteffort/pod1/abc"},
		{"kubepods-besteffort-pod1.slice:noded:abc", "/kubepods.slice/kubepods-besteffort.slice/kubepods-besteffort-pod1.slice/noded-abc.scope"},
		{":noded:abc", "/system.slice/noded-abc.scope"},
	}
	for _, tt := range tests {
		t.Run(tt.in, func(t *testing.T) {
			if got := Dir(tt.in); got != tt.want {
				t.Fatalf("Dir(%q) = %q, want %q", tt.in, got, tt.want)
			}
		})
	}
}

func write(t *testing.T, path, content string) {
	t.Helper()
	if err := os.MkdirAll(filepath.Dir(path), 0o755); err != nil {
		t.Fatal(err)
	}
	if err := os.WriteFile(path, []byte(content), 0o644); err != nil {
		t.Fatal(err)
	}
}

func TestReadV1AndV2(t *testing.T) {
	root := t.TempDir()
	write(t, filepath.Join(root, "cpuacct/pod/c/cpuacct.usage"), "123456789\n")
	write(t, filepath.Join(root, "memory/pod/c/memory.usage_in_bytes"), "10000\n")
	write(t, filepath.Join(root, "memory/pod/c/memory.stat"), "cache 1\ntotal_inactive_file 4000\ntotal_rss 3000\ntotal_pgfault 7\ntotal_pgmajfault 1\n")
	s, err := Reader{Root: root}.Read("/pod/c")
	if err != nil {
		t.Fatal(err)
	}
	if s != (Stats{CPUNanos: 123456789, MemoryUsage: 10000, WorkingSet: 6000, RSS: 3000, PageFaults: 7, MajorFaults: 1}) {
		t.Fatalf("v1: %+v", s)
	}

	write(t, filepath.Join(root, "v2/pod/c/cpu.stat"), "usage_usec 2000\nuser_usec 1000\n")
	write(t, filepath.Join(root, "v2/pod/c/memory.current"), "5000\n")
	write(t, filepath.Join(root, "v2/pod/c/memory.stat"), "anon 100\ninactive_file 6000\npgfault 3\npgmajfault 0\n")
	s, err = Reader{Root: filepath.Join(root, "v2"), V2: true}.Read("/pod/c")
	if err != nil {
		t.Fatal(err)
	}
	if s.CPUNanos != 2000000 || s.WorkingSet != 0 || s.RSS != 100 {
		t.Fatalf("v2: %+v", s)
	}
	if _, err := (Reader{Root: root}).Read("/gone"); !IsGone(err) {
		t.Fatalf("missing cgroup: %v", err)
	}
}
