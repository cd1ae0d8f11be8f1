package main

import (
	"bufio"
	"errors"
	"fmt"
	"os"
	"path/filepath"
	"strings"

	"github.com/opencontainers/runc/libcontainer"
	"github.com/sirupsen/logrus"

	"github.com/noded-dev/noded/conmon-go/internal/helperapi"
	"github.com/noded-dev/noded/internal/oci/wire"
)

// helperCheckpoint dumps a running container with CRIU (OpCheckpoint):
// its images go to req.Dir, CRIU's log (dump.log) to req.WorkDir. The
// container keeps running unless req.Exit, in which case CRIU kills it
// once dumped and the monitor records the exit.
//
// Established TCP connections are dumped (CRIU refuses a process that has
// any otherwise); the restore closes them (restore.go), as CRI-O's
// restores do with CRIU's tcp-close. File locks are dumped too.
func helperCheckpoint(lc *libcontainer.Container, req *helperapi.Request, log *logrus.Entry) error {
	st, err := lc.Status()
	if err != nil {
		return err
	}
	// Paused: a pod checkpoint froze it first; CRIU dumps it frozen
	// and leaves it so.
	if st != libcontainer.Running && st != libcontainer.Paused {
		return errf(wire.CodeFailedPrecondition, "container %s is %s, not running", req.ID, st)
	}
	if !filepath.IsAbs(req.Dir) || !filepath.IsAbs(req.WorkDir) {
		return errf(wire.CodeInvalidArgument, "checkpoint directories must be absolute paths")
	}
	if err := useCriu(req.CriuPath); err != nil {
		return err
	}
	err = lc.Checkpoint(&libcontainer.CriuOpts{
		ImagesDirectory: req.Dir,
		WorkDirectory:   req.WorkDir,
		LeaveRunning:    !req.Exit,
		TcpEstablished:  true,
		FileLocks:       true,
	})
	if err != nil {
		return fmt.Errorf("checkpoint of %s: %w%s", req.ID, err, criuErrors(filepath.Join(req.WorkDir, "dump.log")))
	}
	log.Infof("checkpointed into %s (left running: %v)", req.Dir, !req.Exit)
	return nil
}

// helperFreeze pauses (OpPause) or resumes (OpResume) the container
// through its freezer cgroup. Pausing a paused container, or resuming a
// running one, is no error: a pod checkpoint's resume runs whatever
// happened before it.
func helperFreeze(lc *libcontainer.Container, req *helperapi.Request) error {
	st, err := lc.Status()
	if err != nil {
		return err
	}
	switch {
	case req.Op == helperapi.OpPause && st == libcontainer.Paused, req.Op == helperapi.OpResume && st == libcontainer.Running:
		return nil
	case req.Op == helperapi.OpPause && st == libcontainer.Running:
		err = lc.Pause()
	case req.Op == helperapi.OpResume && st == libcontainer.Paused:
		err = lc.Resume()
	default:
		return errf(wire.CodeFailedPrecondition, "container %s is %s", req.ID, st)
	}
	if err != nil {
		return fmt.Errorf("%s %s: %w", req.Op, req.ID, err)
	}
	return nil
}

// useCriu makes libcontainer find the criu binary at path: it runs "criu"
// from PATH and has no option for another path, so path's directory goes
// first on this helper's PATH. An empty path keeps PATH as it is.
func useCriu(path string) error {
	if path == "" {
		return nil
	}
	if !filepath.IsAbs(path) || filepath.Base(path) != "criu" {
		return errf(wire.CodeInvalidArgument, "criu path %q: must be an absolute path to a file named criu", path)
	}
	if _, err := os.Stat(path); err != nil {
		return errf(wire.CodeFailedPrecondition, "criu: %v", err)
	}
	return os.Setenv("PATH", filepath.Dir(path)+string(os.PathListSeparator)+os.Getenv("PATH"))
}

// criuErrors returns the error lines of a CRIU log (at most the last
// few), prefixed for appending to an error: libcontainer's own error says
// only that CRIU failed.
func criuErrors(logFile string) string {
	f, err := os.Open(logFile)
	if err != nil {
		if errors.Is(err, os.ErrNotExist) {
			return ""
		}
		return fmt.Sprintf(" (%s: %v)", logFile, err)
	}
	defer f.Close()
	const keep = 5
	var lines []string
	sc := bufio.NewScanner(f)
	sc.Buffer(make([]byte, 64<<10), 1<<20)
	for sc.Scan() {
		if l := sc.Text(); strings.Contains(l, "Error") {
			lines = append(lines, strings.TrimSpace(l))
			if len(lines) > keep {
				lines = lines[1:]
			}
		}
	}
	if len(lines) == 0 {
		return fmt.Sprintf(" (see %s)", logFile)
	}
	return fmt.Sprintf(" (%s: %s)", logFile, strings.Join(lines, "; "))
}
