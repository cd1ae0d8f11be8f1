package cgwarm

import (
	"os"
	"path/filepath"
	"reflect"
	"testing"
	"time"
)

func TestOwnDirs(t *testing.T) {
	for _, tc := range []struct {
		name, cgroup string
		want         []string
	}{
		{"hybrid: unified first, name= hierarchies skipped",
			"9:name=systemd:/\n8:pids:/a\n1:cpu,cpuacct:/b c\n0::/u\n",
			[]string{"/R/u", "/R/unified/u", "/R/pids/a", "/R/cpu,cpuacct/b c"}},
		{"unified only", "0::/system.slice/noded.service\n",
			[]string{"/R/system.slice/noded.service", "/R/unified/system.slice/noded.service"}},
		{"v1 only", "3:memory:/x\n", []string{"/R/memory/x"}},
		{"malformed lines", "junk\n5:devices\n4:blkio:relative\n", nil},
	} {
		t.Run(tc.name, func(t *testing.T) {
			p := filepath.Join(t.TempDir(), "cgroup")
			if err := os.WriteFile(p, []byte(tc.cgroup), 0o644); err != nil {
				t.Fatal(err)
			}
			got, err := ownDirs(p, "/R")
			if err != nil {
				t.Fatal(err)
			}
			if !reflect.DeepEqual(got, tc.want) {
				t.Fatalf("ownDirs = %q, want %q", got, tc.want)
			}
		})
	}
}

// A directory that is not on a cgroup file system is never written to,
// even with a cgroup.procs file in it.
func TestOpenRefusesWhatIsNotACgroup(t *testing.T) {
	root := t.TempDir()
	if err := os.MkdirAll(filepath.Join(root, "pids", "a"), 0o755); err != nil {
		t.Fatal(err)
	}
	procs := filepath.Join(root, "pids", "a", "cgroup.procs")
	if err := os.WriteFile(procs, nil, 0o644); err != nil {
		t.Fatal(err)
	}
	self := filepath.Join(root, "self")
	if err := os.WriteFile(self, []byte("8:pids:/a\n"), 0o644); err != nil {
		t.Fatal(err)
	}
	if w, err := openIn(self, root); err == nil {
		w.Close()
		t.Fatal("opened a cgroup.procs on a plain file system")
	}
	var w *Warmer // nil: every method does nothing
	w.Warm()
	if w.Warmed() != 0 || w.Close() != nil {
		t.Fatal("nil Warmer")
	}
}

// The real thing: a warm-up moves this process into the cgroups it is in
// (nothing changes), a second one right after is folded into the first,
// and a later one moves again.
func TestWarmMovesIntoOwnCgroup(t *testing.T) {
	if os.Geteuid() != 0 {
		t.Skip("needs root: writes cgroup.procs")
	}
	w, err := Open()
	if err != nil {
		t.Skipf("no writable cgroup of our own: %v", err)
	}
	before, err := os.ReadFile("/proc/self/cgroup")
	if err != nil {
		t.Fatal(err)
	}
	waitFor := func(n int64) {
		t.Helper()
		deadline := time.Now().Add(5 * time.Second)
		for w.Warmed() < n || w.busy.Load() {
			if time.Now().After(deadline) {
				t.Fatalf("warmed %d times, want %d", w.Warmed(), n)
			}
			time.Sleep(time.Millisecond)
		}
	}
	w.Warm()
	w.Warm()
	waitFor(1)
	if got := w.Warmed(); got != 1 {
		t.Fatalf("two warm-ups at once moved %d times", got)
	}
	time.Sleep(2 * recent)
	w.Warm()
	waitFor(2)
	if err := w.Close(); err != nil {
		t.Fatal(err)
	}
	after, err := os.ReadFile("/proc/self/cgroup")
	if err != nil {
		t.Fatal(err)
	}
	if string(before) != string(after) {
		t.Fatalf("cgroups changed:\n%s\nto\n%s", before, after)
	}
}
