package peer

import (
	"bufio"
	"fmt"
	"os"
	"path/filepath"
	"strconv"
	"strings"
)

// Mem is a process's memory: VmRSS and Pss, bytes.
type Mem struct{ RSS, PSS uint64 }

// Add adds o to m.
func (m *Mem) Add(o Mem) { m.RSS += o.RSS; m.PSS += o.PSS }

// MiB is b in MiB.
func MiB(b uint64) float64 { return float64(b) / (1 << 20) }

// MemOf reads VmRSS from status and Pss from smaps_rollup.
func MemOf(pid int) (Mem, error) {
	var m Mem
	for file, key := range map[string]string{"status": "VmRSS:", "smaps_rollup": "Pss:"} {
		f, err := os.Open(fmt.Sprintf("/proc/%d/%s", pid, file))
		if err != nil {
			return m, err
		}
		sc := bufio.NewScanner(f)
		for sc.Scan() {
			fields := strings.Fields(sc.Text())
			if len(fields) >= 2 && fields[0] == key {
				kb, _ := strconv.ParseUint(fields[1], 10, 64)
				if key == "VmRSS:" {
					m.RSS = kb << 10
				} else {
					m.PSS = kb << 10
				}
				break
			}
		}
		_ = f.Close()
	}
	return m, nil
}

// Overhead is what a runtime keeps per pod besides the pod's own
// processes, summed over the pods: the pause process, the process whose
// child it is (containerd's shim, noded's monitor), and that process's
// other children outside the pods' cgroups (noded's helpers, if any is
// still alive). Found the same way for every runtime, from the cgroups.
type Overhead struct {
	Pods                  int
	Monitor, Pause, Other Mem
	Others                int
}

// Total is the whole overhead per pod.
func (o Overhead) Total() Mem {
	if o.Pods == 0 {
		return Mem{}
	}
	var t Mem
	t.Add(o.Monitor)
	t.Add(o.Pause)
	t.Add(o.Other)
	return Mem{RSS: t.RSS / uint64(o.Pods), PSS: t.PSS / uint64(o.Pods)}
}

// PodOverhead measures the overhead of the pods below the cgroup parent
// cgroup (one component, in the memory hierarchy). A process in a pod
// cgroup whose command is `pause` is a pod's pause; a parent shared by
// several pods (a shim per pod is containerd's rule, but not a law) is
// counted once.
func PodOverhead(cgroup string) (Overhead, error) {
	var o Overhead
	entries, err := os.ReadDir("/proc")
	if err != nil {
		return o, err
	}
	inPod := map[int]bool{}
	parent := map[int]int{}
	var pauses []int
	for _, e := range entries {
		pid, err := strconv.Atoi(e.Name())
		if err != nil {
			continue
		}
		parent[pid] = ppid(pid)
		if !inCgroup(pid, cgroup) {
			continue
		}
		inPod[pid] = true
		cmdline, _ := os.ReadFile(filepath.Join("/proc", e.Name(), "cmdline"))
		argv0, _, _ := strings.Cut(string(cmdline), "\x00")
		if filepath.Base(argv0) == "pause" {
			pauses = append(pauses, pid)
		}
	}
	monitors := map[int]bool{}
	for _, p := range pauses {
		m, _ := MemOf(p)
		o.Pause.Add(m)
		monitors[parent[p]] = true
	}
	o.Pods = len(pauses)
	for m := range monitors {
		mm, _ := MemOf(m)
		o.Monitor.Add(mm)
	}
	for pid, pp := range parent {
		if monitors[pp] && !inPod[pid] {
			m, _ := MemOf(pid)
			o.Other.Add(m)
			o.Others++
		}
	}
	return o, nil
}

// inCgroup reports whether pid is below /cgroup in its memory hierarchy
// (cgroup v1) or the unified one.
func inCgroup(pid int, cgroup string) bool {
	b, err := os.ReadFile(fmt.Sprintf("/proc/%d/cgroup", pid))
	if err != nil {
		return false
	}
	for _, l := range strings.Split(string(b), "\n") {
		f := strings.SplitN(l, ":", 3)
		if len(f) == 3 && (f[1] == "memory" || f[0] == "0") && strings.HasPrefix(f[2], "/"+cgroup+"/") {
			return true
		}
	}
	return false
}

func ppid(pid int) int {
	b, err := os.ReadFile(fmt.Sprintf("/proc/%d/stat", pid))
	if err != nil {
		return 0
	}
	// The command may contain spaces: fields start after the last ')'.
	s := string(b)
	fields := strings.Fields(s[strings.LastIndexByte(s, ')')+1:])
	if len(fields) < 2 {
		return 0
	}
	n, _ := strconv.Atoi(fields[1])
	return n
}

// SocketOwner is the process that listens on the unix socket at path
// (from /proc/net/unix and the processes' descriptors), or 0.
func SocketOwner(path string) int {
	b, err := os.ReadFile("/proc/net/unix")
	if err != nil {
		return 0
	}
	var inode string
	for _, l := range strings.Split(string(b), "\n") {
		f := strings.Fields(l)
		// Num RefCount Protocol Flags Type St Inode Path; St 01 is listening.
		if len(f) >= 8 && f[7] == path && f[5] == "01" {
			inode = f[6]
			break
		}
	}
	if inode == "" {
		return 0
	}
	want := "socket:[" + inode + "]"
	entries, _ := os.ReadDir("/proc")
	for _, e := range entries {
		pid, err := strconv.Atoi(e.Name())
		if err != nil {
			continue
		}
		fds, _ := os.ReadDir(filepath.Join("/proc", e.Name(), "fd"))
		for _, fd := range fds {
			if l, _ := os.Readlink(filepath.Join("/proc", e.Name(), "fd", fd.Name())); l == want {
				return pid
			}
		}
	}
	return 0
}
