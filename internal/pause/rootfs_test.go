package pause

import (
	"bytes"
	"os"
	"path/filepath"
	"syscall"
	"testing"
)

// WriteRootfs makes the binary and every mountpoint, leaves an unchanged
// binary's file alone (a running pause's), and replaces a changed one by
// a new file (the old inode stays with whoever has it open).
func TestWriteRootfs(t *testing.T) {
	dir := filepath.Join(t.TempDir(), "rootfs")
	inode := func() uint64 {
		t.Helper()
		st, err := os.Stat(filepath.Join(dir, EntryName))
		if err != nil {
			t.Fatal(err)
		}
		if st.Mode().Perm() != EntryMode {
			t.Errorf("/pause mode %v, want %v", st.Mode().Perm(), os.FileMode(EntryMode))
		}
		return st.Sys().(*syscall.Stat_t).Ino
	}
	if err := WriteRootfs(dir, fakeBinary); err != nil {
		t.Fatal(err)
	}
	first := inode()
	for _, m := range mountpoints {
		t.Run(m.path, func(t *testing.T) {
			st, err := os.Stat(filepath.Join(dir, m.path))
			if err != nil || st.IsDir() != m.dir {
				t.Errorf("%v, %v; want dir=%v", st, err, m.dir)
			}
		})
	}
	// A temporary file of a write that a kill cut short goes.
	stale := filepath.Join(dir, ".tmp-"+EntryName+"-123")
	if err := os.WriteFile(stale, []byte("half"), 0o600); err != nil {
		t.Fatal(err)
	}
	if err := WriteRootfs(dir, fakeBinary); err != nil {
		t.Fatal(err)
	}
	if _, err := os.Stat(stale); !os.IsNotExist(err) {
		t.Errorf("stale temporary file: %v", err)
	}
	if again := inode(); again != first {
		t.Errorf("the unchanged binary was rewritten (inode %d, then %d)", first, again)
	}
	newer := append([]byte("v2 "), fakeBinary...)
	if err := WriteRootfs(dir, newer); err != nil {
		t.Fatal(err)
	}
	if got, _ := os.ReadFile(filepath.Join(dir, EntryName)); !bytes.Equal(got, newer) || inode() == first {
		t.Errorf("changed binary: content %q, inode %d (was %d)", got, inode(), first)
	}
	if err := WriteRootfs(dir, nil); err == nil {
		t.Error("an empty binary was accepted")
	}
}
