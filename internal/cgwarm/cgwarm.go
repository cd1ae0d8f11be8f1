// Package cgwarm takes the kernel's wait for a cgroup move off the path of
// a pod start or an exec.
//
// Every container process and every exec'd process is moved into its
// cgroups by libcontainer (a write to cgroup.procs). The kernel takes
// cgroup_threadgroup_rwsem for writing for each such move, and entering
// that per-CPU rwsem's writer side waits for an RCU grace period (rcu_sync)
// unless another writer left it less than about a grace period before:
// on this project's machine 8–15 ms the first time, 0.02 ms within ~20 ms
// of the last move (a python loop writing to cgroup.procs printed both).
// That wait is idle time on the critical path, twice per pod start (the
// pause container's init, the app container's init) and once per lone
// exec; containerd and CRI-O pay it too.
//
// A Warmer starts that wait early, at the beginning of a request that will
// move a process: it moves noded into the cgroup it is already in (a move
// to the same cgroup changes nothing, but the kernel takes the rwsem all
// the same), in a goroutine, so the grace period elapses while noded
// prepares the root filesystem, the bundle and the monitor's request, and
// the helper's own move finds the rwsem's fast path ready. A host whose
// cgroup2 mount has favordynmods never waits, and the warm-up costs a few
// microseconds there.
//
// Lifecycle: Open at start-up, Warm from any goroutine, Close at shutdown;
// Close waits for a warm-up in flight.
package cgwarm

import (
	"bufio"
	"fmt"
	"os"
	"path/filepath"
	"strings"
	"sync"
	"sync/atomic"
	"time"

	"golang.org/x/sys/unix"
)

// Warmer moves this process into its own cgroup ahead of a container's
// move. A nil *Warmer does nothing.
type Warmer struct {
	procs *os.File // cgroup.procs of our own cgroup, opened for writing
	busy  atomic.Bool
	last  atomic.Int64 // when the last move began, Unix ns
	wg    sync.WaitGroup
	// warmed counts the moves made (for tests).
	warmed atomic.Int64
}

// Open finds this process's cgroup in a mounted hierarchy (the unified one
// first) and opens its cgroup.procs. It fails where no cgroup file can be
// written (not root, no cgroup mount); the caller then runs without.
func Open() (*Warmer, error) {
	return openIn("/proc/self/cgroup", "/sys/fs/cgroup")
}

func openIn(selfCgroup, root string) (*Warmer, error) {
	dirs, err := ownDirs(selfCgroup, root)
	if err != nil {
		return nil, err
	}
	var errs []string
	for _, dir := range dirs {
		var st unix.Statfs_t
		if err := unix.Statfs(dir, &st); err != nil {
			errs = append(errs, err.Error())
			continue
		}
		if st.Type != unix.CGROUP_SUPER_MAGIC && st.Type != unix.CGROUP2_SUPER_MAGIC {
			errs = append(errs, dir+": not a cgroup file system")
			continue
		}
		f, err := os.OpenFile(filepath.Join(dir, "cgroup.procs"), os.O_WRONLY, 0)
		if err != nil {
			errs = append(errs, err.Error())
			continue
		}
		return &Warmer{procs: f}, nil
	}
	return nil, fmt.Errorf("no writable cgroup.procs of our own cgroup: %s", strings.Join(errs, "; "))
}

// ownDirs returns the directories of this process's cgroups under root,
// the unified hierarchy's first: "0::/p" is root/p (cgroup2 mounted at
// root) or root/unified/p (hybrid), "N:ctl,ctl:/p" is root/ctl,ctl/p.
func ownDirs(selfCgroup, root string) ([]string, error) {
	f, err := os.Open(selfCgroup)
	if err != nil {
		return nil, err
	}
	defer f.Close()
	var unified, v1 []string
	sc := bufio.NewScanner(f)
	for sc.Scan() {
		parts := strings.SplitN(sc.Text(), ":", 3)
		if len(parts) != 3 || !strings.HasPrefix(parts[2], "/") {
			continue
		}
		switch ctl, p := parts[1], parts[2]; {
		case parts[0] == "0" && ctl == "":
			unified = append(unified, filepath.Join(root, p), filepath.Join(root, "unified", p))
		case ctl != "" && !strings.HasPrefix(ctl, "name="):
			v1 = append(v1, filepath.Join(root, ctl, p))
		}
	}
	if err := sc.Err(); err != nil {
		return nil, err
	}
	return append(unified, v1...), nil
}

// recent: a request warmed less than this ago moves its own process
// about now (the helper's move follows the request by 5–15 ms), which
// keeps the rwsem's fast path ready for a grace period more: a burst of
// execs or of container creations needs a warm-up only every other
// request. Warming each of 200 execs in a row cost ~1 ms more machine CPU
// per exec than warming none (make bench-exec).
const recent = 15 * time.Millisecond

// Warm starts a move of this process into its own cgroup, unless one is
// under way or began less than recent ago (either serves the caller as
// well). It does not wait.
func (w *Warmer) Warm() {
	if w == nil {
		return
	}
	now := time.Now().UnixNano()
	if now-w.last.Load() < int64(recent) || !w.busy.CompareAndSwap(false, true) {
		return
	}
	w.last.Store(now)
	w.wg.Add(1)
	go func() {
		defer w.wg.Done()
		defer w.busy.Store(false)
		// "0" is the writing process: the whole of noded, into the
		// cgroup it is in. An error (the cgroup was removed under us)
		// only loses the head start.
		if _, err := w.procs.Write([]byte("0")); err == nil {
			w.warmed.Add(1)
		}
	}()
}

// Warmed returns how many moves were made.
func (w *Warmer) Warmed() int64 {
	if w == nil {
		return 0
	}
	return w.warmed.Load()
}

// Close waits for a move under way and closes the file.
func (w *Warmer) Close() error {
	if w == nil {
		return nil
	}
	w.wg.Wait()
	return w.procs.Close()
}
