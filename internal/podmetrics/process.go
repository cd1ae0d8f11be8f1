package podmetrics

import (
	"bufio"
	"errors"
	"os"
	"path/filepath"
	"strconv"
	"strings"

	"github.com/opencontainers/cgroups"
)

// processes counts a cgroup's processes (its subtree's, as cadvisor
// does) and, with fds, their open file descriptors and sockets, reading
// procRoot (/proc). A process that exits while it is looked at is skipped.
func processes(procRoot, procsDir string, mainPid int, fds bool) (*ProcessSample, error) {
	pids, err := cgroups.GetAllPids(procsDir)
	if err != nil {
		return nil, gone(err)
	}
	p := &ProcessSample{Processes: uint64(len(pids))}
	if !fds {
		return p, nil
	}
	for _, pid := range pids {
		fdDir := filepath.Join(procRoot, strconv.Itoa(pid), "fd")
		fds, err := os.ReadDir(fdDir)
		if err != nil {
			continue // exited, or a kernel thread's
		}
		p.FDs += uint64(len(fds))
		for _, fd := range fds {
			if target, err := os.Readlink(filepath.Join(fdDir, fd.Name())); err == nil && strings.HasPrefix(target, "socket:") {
				p.Sockets++
			}
		}
	}
	if mainPid > 0 {
		if n, err := openFilesSoft(filepath.Join(procRoot, strconv.Itoa(mainPid), "limits")); err == nil {
			p.OpenFilesSoft = &n
		}
	}
	return p, nil
}

// openFilesSoft reads the soft "Max open files" of a /proc/<pid>/limits
// file. It is always a number: the kernel caps RLIMIT_NOFILE at
// fs.nr_open, so "unlimited" cannot occur (and would fail to parse).
func openFilesSoft(path string) (uint64, error) {
	f, err := os.Open(path)
	if err != nil {
		return 0, err
	}
	defer f.Close()
	sc := bufio.NewScanner(f)
	for sc.Scan() {
		rest, ok := strings.CutPrefix(sc.Text(), "Max open files")
		if !ok {
			continue
		}
		fields := strings.Fields(rest)
		if len(fields) == 0 {
			break
		}
		return strconv.ParseUint(fields[0], 10, 64)
	}
	if err := sc.Err(); err != nil {
		return 0, err
	}
	return 0, errors.New(path + ": no Max open files line")
}
