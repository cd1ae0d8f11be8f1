package sandbox

import (
	"context"
	"errors"
	"io/fs"
	"os"
	"path/filepath"
	"syscall"

	"github.com/noded-dev/noded/internal/cleanup"
	"github.com/noded-dev/noded/internal/errdefs"
)

// makeLogDir creates the directory of a container's log file (the pod's
// log_directory and the directory of the container's log_path in it) when
// it does not exist yet, 0755 with its parents, as containerd and CRI-O
// do: the monitor opens the file and creates nothing else. The kubelet
// makes the pod's directory before RunPodSandbox, but other clients, or a
// kubelet whose log directory was cleaned up, do not. The directories it
// created are removed by the rollback if they are still empty then.
func makeLogDir(logPath string, undo *cleanup.Stack) error {
	if logPath == os.DevNull || !filepath.IsAbs(logPath) {
		return nil
	}
	dir := filepath.Dir(logPath)
	// The directories to create, deepest first.
	var missing []string
	for d := dir; ; d = filepath.Dir(d) {
		fi, err := os.Stat(d)
		if err == nil {
			if !fi.IsDir() {
				return errdefs.InvalidArgument("log directory %s: %s is not a directory", dir, d)
			}
			break
		}
		if errors.Is(err, syscall.ENOTDIR) {
			return errdefs.InvalidArgument("log directory %s: %v", dir, err)
		}
		if !errors.Is(err, fs.ErrNotExist) {
			return errdefs.FailedPrecondition("log directory %s: %v", dir, err)
		}
		missing = append(missing, d)
		if d == filepath.Dir(d) {
			break
		}
	}
	if len(missing) == 0 {
		return nil
	}
	undo.Push("remove created log directories", func(context.Context) error {
		for _, d := range missing {
			// Not if a log (or anything) was written there meanwhile.
			if err := os.Remove(d); err != nil && !errors.Is(err, fs.ErrNotExist) && !errors.Is(err, syscall.ENOTEMPTY) && !errors.Is(err, syscall.EEXIST) {
				return err
			}
		}
		return nil
	})
	if err := os.MkdirAll(dir, 0o755); err != nil {
		return errdefs.FailedPrecondition("creating the log directory %s: %v", dir, err)
	}
	return nil
}
