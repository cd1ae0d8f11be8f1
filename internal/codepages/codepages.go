// Package codepages drops an idle process's mappings of its own
// executable's code and read-only data, once a burst of work is over.
//
// The kernel maps a program's pages around each one it faults in (fault
// around, 64 KiB at a time), and a Go program touches code everywhere as
// it works, so a process ends up with most of its executable's text and
// read-only data mapped: ~2.5 MiB of an idle monitor's ~3.6 MiB resident
// set, ~29 MiB of noded's ~41 MiB after a benchmark's pulls, although an
// idle process needs almost none of it. Drop unmaps them (madvise
// MADV_DONTNEED): they are clean copies of the file, still in the page
// cache (and shared by every process of the executable), so nothing is
// lost, and the next piece of work faults back in what it runs, a window
// of 64 KiB at a time, from memory. The pages stay charged to whichever
// memory cgroup read them first; what falls is the resident set and, as
// unmapped page cache is the kernel's first choice to reclaim, what a
// node under memory pressure keeps.
//
// Only mappings that hold nothing but the file's own bytes are dropped:
// private, not writable, and with no anonymous (copied-on-write) page. A
// dynamically linked program's RELRO segment is such a read-only private
// mapping of the executable whose pages the dynamic loader wrote (the
// relocated GOT) before making it read-only: dropping it would bring back
// the unrelocated bytes. Read-only mappings cannot be written afterwards
// without an mprotect, which nothing in these programs does, so a mapping
// found clean stays clean. The program's data and every other file are
// never touched.
//
// The package uses the standard library and x/sys only: the per-pod
// monitor links it and must stay small.
package codepages

import (
	"bufio"
	"bytes"
	"io"
	"os"

	"golang.org/x/sys/unix"
)

// Range is one mapping, [Start, End).
type Range struct{ Start, End uintptr }

// Drop unmaps this process's clean, read-only mappings of its own
// executable from its page tables and returns how many it dropped. Best
// effort: what cannot be read leaves everything mapped. Call it last when
// trimming: a garbage collection reads the runtime's tables, in the
// read-only data, and maps back every large folio it touches.
func Drop() int {
	exe, err := os.Readlink("/proc/self/exe")
	if err != nil {
		return 0
	}
	// Read as a stream: smaps is ~1 KiB per mapping, and a buffer for
	// all of it, allocated after the heap was trimmed, stayed in a
	// monitor's resident set (+150 KiB per pod); a 4 KiB one is all that
	// is left of this.
	f, err := os.Open("/proc/self/smaps")
	if err != nil {
		return 0
	}
	clean := CleanMappingsOf(f, exe)
	f.Close()
	n := 0
	for _, r := range clean {
		// Raw addresses of our own mappings: unix.Madvise wants a slice,
		// which would need an unsafe conversion for nothing.
		if _, _, errno := unix.Syscall(unix.SYS_MADVISE, r.Start, r.End-r.Start, unix.MADV_DONTNEED); errno == 0 {
			n++
		}
	}
	return n
}

// CleanMappingsOf returns, from a /proc/<pid>/smaps listing, the private,
// non-writable mappings of the file exe that hold no anonymous page. A
// mapping whose Anonymous line is missing or unreadable is left out. It
// parses the lines in place, without allocating for each: it runs right
// after the heap was returned to the kernel, and the garbage of a
// string and a slice per line stayed resident (20–44 KiB more anonymous
// memory per monitor in TestMonitorMemory).
func CleanMappingsOf(smaps io.Reader, exe string) []Range {
	var (
		out  []Range
		cur  Range
		want bool // cur is a candidate whose Anonymous line is still to come
	)
	sc := bufio.NewScanner(smaps)
	sc.Buffer(make([]byte, 0, 4096), bufio.MaxScanTokenSize)
	anonymous := []byte("Anonymous:")
	for sc.Scan() {
		line := sc.Bytes()
		if r, perms, path, ok := header(line); ok {
			cur = r
			want = string(path) == exe && len(perms) == 4 && perms[1] == '-' && perms[3] == 'p'
			continue
		}
		if want && bytes.HasPrefix(line, anonymous) {
			if kb, ok := parseUint(bytes.TrimSpace(bytes.TrimSuffix(bytes.TrimSpace(line[len(anonymous):]), []byte("kB"))), 10); ok && kb == 0 {
				out = append(out, cur)
			}
			want = false
		}
	}
	return out
}

// header parses a mapping's first line in smaps or maps: "start-end perms
// offset dev inode [path]"; path is the rest of the line (as
// /proc/self/exe reads: a path may hold spaces, and ends in " (deleted)"
// once the file was replaced). The slices point into line.
func header(line []byte) (r Range, perms, path []byte, ok bool) {
	var f [5][]byte
	rest := line
	for i := range f {
		rest = bytes.TrimLeft(rest, " \t")
		end := bytes.IndexAny(rest, " \t")
		if end < 0 {
			end = len(rest)
		}
		f[i], rest = rest[:end], rest[end:]
		if len(f[i]) == 0 {
			return Range{}, nil, nil, false
		}
	}
	lo, hi, found := bytes.Cut(f[0], []byte("-"))
	if !found || bytes.HasSuffix(f[0], []byte(":")) {
		return Range{}, nil, nil, false
	}
	start, ok1 := parseUint(lo, 16)
	end, ok2 := parseUint(hi, 16)
	if !ok1 || !ok2 || end <= start {
		return Range{}, nil, nil, false
	}
	return Range{uintptr(start), uintptr(end)}, f[1], bytes.TrimLeft(rest, " \t"), true
}

// parseUint parses digits of base 10 or 16 (strconv would allocate the
// string it is given when it fails).
func parseUint(b []byte, base uint64) (uint64, bool) {
	if len(b) == 0 || len(b) > 16 {
		return 0, false
	}
	var n uint64
	for _, c := range b {
		var d uint64
		switch {
		case '0' <= c && c <= '9':
			d = uint64(c - '0')
		case base == 16 && 'a' <= c && c <= 'f':
			d = uint64(c-'a') + 10
		default:
			return 0, false
		}
		n = n*base + d
	}
	return n, true
}
