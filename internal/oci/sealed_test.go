package oci

import (
	"bytes"
	"fmt"
	"os"
	"os/exec"
	"path/filepath"
	"testing"

	"golang.org/x/sys/unix"
)

func TestSealedCopy(t *testing.T) {
	// A shell script is an executable that needs no build; the kernel
	// runs it from the memfd like a binary.
	src := filepath.Join(t.TempDir(), "prog")
	content := []byte("#!/bin/sh\necho sealed \"$@\"\n")
	if err := os.WriteFile(src, content, 0o755); err != nil {
		t.Fatal(err)
	}
	f, err := sealedCopy(src)
	if err != nil {
		t.Fatal(err)
	}
	defer f.Close()

	t.Run("sealed as libcontainer requires", func(t *testing.T) {
		seals, err := unix.FcntlInt(f.Fd(), unix.F_GET_SEALS, 0)
		if err != nil {
			t.Fatal(err)
		}
		if seals&baseSeals != baseSeals {
			t.Fatalf("seals %#x, want at least %#x", seals, baseSeals)
		}
	})
	t.Run("same content, not writable", func(t *testing.T) {
		got, err := os.ReadFile(fmt.Sprintf("/proc/self/fd/%d", f.Fd()))
		if err != nil {
			t.Fatal(err)
		}
		if !bytes.Equal(got, content) {
			t.Fatalf("content %q, want %q", got, content)
		}
		if _, err := f.WriteAt([]byte("x"), 0); err == nil {
			t.Fatal("writing the sealed copy succeeded")
		}
		if err := f.Truncate(0); err == nil {
			t.Fatal("truncating the sealed copy succeeded")
		}
	})
	t.Run("runs through its descriptor", func(t *testing.T) {
		cmd := exec.Command(fmt.Sprintf("/dev/fd/%d", 3), "ok")
		cmd.ExtraFiles = []*os.File{f}
		// As a monitor starts its helpers: from the inherited
		// descriptor (sh then reads the script through it).
		out, err := cmd.Output()
		if err != nil {
			t.Fatal(err)
		}
		if string(out) != "sealed ok\n" {
			t.Fatalf("output %q", out)
		}
	})
	t.Run("missing file", func(t *testing.T) {
		if _, err := sealedCopy(filepath.Join(t.TempDir(), "none")); err == nil {
			t.Fatal("no error for a missing file")
		}
	})
}
