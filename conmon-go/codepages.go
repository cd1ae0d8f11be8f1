package main

import (
	"bufio"
	"bytes"
	"os"
	"strconv"
	"strings"

	"golang.org/x/sys/unix"
)

// Code pages of an idle monitor.
//
// The kernel maps a program's pages around each one it faults in (fault
// around, 64 KiB at a time), and the Go runtime reads its tables at start,
// so a monitor ends up with all of its executable's text and read-only
// data mapped: ~2.5 MiB of its ~3.6 MiB resident set, although an idle
// monitor (blocked in epoll, its containers running) needs almost none of
// it. Once a burst of operations is over, the trimmer drops those mappings
// (madvise MADV_DONTNEED on the executable's read-only, private mappings):
// they are clean copies of the file, still in the page cache and shared by
// every monitor, so nothing is lost and the next operation faults back in
// what it runs, a few windows of 64 KiB. Writable mappings (the program's
// data) are never touched.

// codeRange is one mapping of the executable that may be dropped.
type codeRange struct{ start, end uintptr }

// readOnlyMappingsOf returns the private, non-writable mappings of the
// file exe in a /proc/<pid>/maps listing.
func readOnlyMappingsOf(maps []byte, exe string) []codeRange {
	var out []codeRange
	sc := bufio.NewScanner(bytes.NewReader(maps))
	for sc.Scan() {
		// address perms offset dev inode path
		f := strings.Fields(sc.Text())
		if len(f) < 6 || f[5] != exe || len(f[1]) != 4 || f[1][1] != '-' || f[1][3] != 'p' {
			continue
		}
		lo, hi, ok := strings.Cut(f[0], "-")
		if !ok {
			continue
		}
		start, err1 := strconv.ParseUint(lo, 16, 64)
		end, err2 := strconv.ParseUint(hi, 16, 64)
		if err1 != nil || err2 != nil || end <= start {
			continue
		}
		out = append(out, codeRange{uintptr(start), uintptr(end)})
	}
	return out
}

// dropCodePages unmaps the monitor's own code and read-only data pages
// from its page tables (see above). Best effort: any failure leaves them
// mapped.
func dropCodePages() {
	exe, err := os.Readlink("/proc/self/exe")
	if err != nil {
		return
	}
	maps, err := os.ReadFile("/proc/self/maps")
	if err != nil {
		return
	}
	for _, r := range readOnlyMappingsOf(maps, exe) {
		// Raw addresses of our own mappings: unix.Madvise wants a slice,
		// which would need an unsafe conversion for nothing.
		_, _, _ = unix.Syscall(unix.SYS_MADVISE, r.start, r.end-r.start, unix.MADV_DONTNEED)
	}
}
