// Package procfs reads the few facts noded and its monitor need about a
// process from /proc/PID/stat: its state, parent and start time.
//
// The one subtle part is the command name (field 2): the kernel prints it
// between parentheses without escaping, so it may itself hold spaces and
// parentheses ("(sd-pam)", "a) b (c"). Fields are therefore counted after
// the last ')' of the line, never by splitting the whole line.
//
// The package has no dependencies beyond the standard library's basics, so
// that the monitor (conmon-go), which must stay small, can use it.
package procfs

import (
	"bytes"
	"errors"
	"fmt"
	"os"
	"strconv"
	"strings"
	"time"
)

// Stat is the part of /proc/PID/stat that is used.
type Stat struct {
	// Comm is the command name (field 2), without its parentheses.
	Comm string
	// State is the one-letter state (field 3): R, S, D, Z (zombie), X
	// (dead), T, t, I, ...
	State byte
	// PPid is the parent's pid (field 4).
	PPid int
	// StartTime is when the process started, in clock ticks after boot
	// (field 22). With the pid it identifies a process: a recycled pid has
	// another start time. libcontainer records the same value in its state
	// (InitProcessStartTime).
	StartTime uint64
}

// Exited reports whether the process has ended (a zombie waiting to be
// reaped, or dead), so that it only looks alive in /proc.
func (s Stat) Exited() bool { return s.State == 'Z' || s.State == 'X' }

// ReadStat reads and parses /proc/PID/stat. A process that does not exist
// gives an error for which errors.Is(err, os.ErrNotExist) holds.
func ReadStat(pid int) (Stat, error) {
	if pid <= 0 {
		return Stat{}, fmt.Errorf("pid %d: %w", pid, os.ErrNotExist)
	}
	b, err := os.ReadFile("/proc/" + strconv.Itoa(pid) + "/stat")
	if err != nil {
		return Stat{}, err
	}
	st, err := ParseStat(b)
	if err != nil {
		return Stat{}, fmt.Errorf("/proc/%d/stat: %w", pid, err)
	}
	return st, nil
}

// StartTime returns the start time (field 22) of pid.
func StartTime(pid int) (uint64, error) {
	st, err := ReadStat(pid)
	if err != nil {
		return 0, err
	}
	return st.StartTime, nil
}

// Alive reports whether pid exists and has not exited; when startTime is
// not 0 the process must also have started then (it is the same process,
// not a recycled pid).
func Alive(pid int, startTime uint64) bool {
	st, err := ReadStat(pid)
	if err != nil || st.Exited() {
		return false
	}
	return startTime == 0 || st.StartTime == startTime
}

// errMalformed: the line is not what the kernel writes.
var errMalformed = errors.New("malformed stat line")

// ParseStat parses the content of a /proc/PID/stat file.
func ParseStat(b []byte) (Stat, error) {
	open := bytes.IndexByte(b, '(')
	closing := bytes.LastIndexByte(b, ')')
	if open < 0 || closing < open {
		return Stat{}, fmt.Errorf("%w: no command name in parentheses", errMalformed)
	}
	// After the command name: field 3 (state) onwards, so field n is
	// rest[n-3].
	rest := bytes.Fields(b[closing+1:])
	const startTimeField = 22
	if len(rest) < startTimeField-2 {
		return Stat{}, fmt.Errorf("%w: %d fields after the command name, want at least %d", errMalformed, len(rest), startTimeField-2)
	}
	if len(rest[0]) != 1 {
		return Stat{}, fmt.Errorf("%w: state %q", errMalformed, rest[0])
	}
	ppid, err := strconv.Atoi(string(rest[4-3]))
	if err != nil {
		return Stat{}, fmt.Errorf("%w: ppid: %w", errMalformed, err)
	}
	start, err := strconv.ParseUint(string(rest[startTimeField-3]), 10, 64)
	if err != nil {
		return Stat{}, fmt.Errorf("%w: start time: %w", errMalformed, err)
	}
	return Stat{Comm: string(b[open+1 : closing]), State: rest[0][0], PPid: ppid, StartTime: start}, nil
}

// userHZ is the unit of /proc/stat's CPU times (USER_HZ, 100 on Linux).
const userHZ = 100

// BusyCPU is the machine's non-idle CPU time since boot, from the first
// line of /proc/stat: user, nice, system, irq, softirq and steal; not
// idle or iowait, and not guest time (already counted in user). Every
// process counts, the kernel's work for them too: benchmarks take two
// readings and report the difference per operation.
func BusyCPU() (time.Duration, error) {
	b, err := os.ReadFile("/proc/stat")
	if err != nil {
		return 0, err
	}
	return parseBusyCPU(string(b))
}

func parseBusyCPU(stat string) (time.Duration, error) {
	line, _, _ := strings.Cut(stat, "\n")
	f := strings.Fields(line) // cpu user nice system idle iowait irq softirq steal [guest guest_nice]
	if len(f) < 5 || f[0] != "cpu" {
		return 0, fmt.Errorf("/proc/stat: unexpected first line %q", line)
	}
	var busy uint64
	for i, v := range f[1:] {
		n, err := strconv.ParseUint(v, 10, 64)
		if err != nil {
			return 0, fmt.Errorf("/proc/stat: %q: %w", line, err)
		}
		if i != 3 && i != 4 && i < 8 {
			busy += n
		}
	}
	return time.Duration(busy) * time.Second / userHZ, nil
}
