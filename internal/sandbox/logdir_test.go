package sandbox

import (
	"context"
	"errors"
	"os"
	"path/filepath"
	"testing"

	"github.com/noded-dev/noded/internal/cleanup"
	"github.com/noded-dev/noded/internal/errdefs"
)

func TestMakeLogDir(t *testing.T) {
	ctx := context.Background()
	t.Run("missing directories are made, 0755, and rolled back while empty", func(t *testing.T) {
		root := t.TempDir()
		logPath := filepath.Join(root, "pods", "ns_pod_uid", "app", "0.log")
		var undo cleanup.Stack
		if err := makeLogDir(logPath, &undo); err != nil {
			t.Fatal(err)
		}
		for _, d := range []string{filepath.Join(root, "pods"), filepath.Join(root, "pods", "ns_pod_uid"), filepath.Dir(logPath)} {
			fi, err := os.Stat(d)
			if err != nil || !fi.IsDir() {
				t.Fatalf("%s: %v", d, err)
			}
			if m := fi.Mode().Perm(); m&0o755 != 0o755 {
				t.Errorf("%s mode %o, want 0755", d, m)
			}
		}
		if err := undo.Run(ctx, nil); err != nil {
			t.Fatal(err)
		}
		if _, err := os.Stat(filepath.Join(root, "pods")); !errors.Is(err, os.ErrNotExist) {
			t.Errorf("rollback left %s: %v", filepath.Join(root, "pods"), err)
		}
	})
	t.Run("a directory written to is kept by the rollback", func(t *testing.T) {
		root := t.TempDir()
		logPath := filepath.Join(root, "pod", "0.log")
		var undo cleanup.Stack
		if err := makeLogDir(logPath, &undo); err != nil {
			t.Fatal(err)
		}
		if err := os.WriteFile(logPath, []byte("x"), 0o640); err != nil {
			t.Fatal(err)
		}
		if err := undo.Run(ctx, nil); err != nil {
			t.Fatal(err)
		}
		if _, err := os.Stat(logPath); err != nil {
			t.Errorf("rollback removed the log: %v", err)
		}
	})
	t.Run("an existing directory needs nothing", func(t *testing.T) {
		var undo cleanup.Stack
		if err := makeLogDir(filepath.Join(t.TempDir(), "0.log"), &undo); err != nil || undo.Len() != 0 {
			t.Fatalf("err %v, %d undo steps", err, undo.Len())
		}
		if err := makeLogDir(os.DevNull, &undo); err != nil || undo.Len() != 0 {
			t.Fatalf("/dev/null: err %v, %d undo steps", err, undo.Len())
		}
	})
	t.Run("a file in the way", func(t *testing.T) {
		root := t.TempDir()
		if err := os.WriteFile(filepath.Join(root, "file"), nil, 0o644); err != nil {
			t.Fatal(err)
		}
		var undo cleanup.Stack
		err := makeLogDir(filepath.Join(root, "file", "pod", "0.log"), &undo)
		if !errdefs.IsInvalidArgument(err) {
			t.Fatalf("err %v, want InvalidArgument", err)
		}
	})
}
