package main

import (
	"os"
	"strconv"
	"strings"
	"testing"
)

// Only the executable's private, non-writable mappings are dropped: never
// its data, another file's, or anonymous memory.
func TestReadOnlyMappingsOf(t *testing.T) {
	const exe = "/usr/bin/conmon-go"
	maps := `00400000-0051f000 r-xp 00000000 fe:00 10757828                           /usr/bin/conmon-go
0051f000-00674000 r--p 0011f000 fe:00 10757828                           /usr/bin/conmon-go
00674000-00683000 rw-p 00274000 fe:00 10757828                           /usr/bin/conmon-go
00683000-006b4000 rw-p 00000000 00:00 0
7f0000000000-7f0000001000 r-xs 00000000 fe:00 1                          /usr/bin/conmon-go
7f96a6e78000-7f96a6e7a000 r-xp 00000000 00:00 0                          [vdso]
7f96a6e80000-7f96a6e90000 r-xp 00000000 fe:00 2                          /usr/lib/libc.so.6
garbage line
`
	got := readOnlyMappingsOf([]byte(maps), exe)
	want := []codeRange{{0x400000, 0x51f000}, {0x51f000, 0x674000}}
	if len(got) != len(want) {
		t.Fatalf("got %x, want %x", got, want)
	}
	for i := range want {
		if got[i] != want[i] {
			t.Errorf("mapping %d: %x, want %x", i, got[i], want[i])
		}
	}
}

// Dropping the test binary's own code pages leaves it running with fewer
// of them mapped; they come back as it runs.
func TestDropCodePages(t *testing.T) {
	exe, err := os.Readlink("/proc/self/exe")
	if err != nil {
		t.Skip(err)
	}
	codeRSS := func() int {
		t.Helper()
		smaps, err := os.ReadFile("/proc/self/smaps")
		if err != nil {
			t.Skip(err)
		}
		kb, in := 0, false
		for _, line := range strings.Split(string(smaps), "\n") {
			if f := strings.Fields(line); len(f) >= 5 && strings.Contains(f[0], "-") && len(f[1]) == 4 {
				in = len(f) >= 6 && f[5] == exe && f[1][1] == '-'
			} else if in && len(f) == 3 && f[0] == "Rss:" {
				n, _ := strconv.Atoi(f[1])
				kb += n
			}
		}
		return kb
	}
	before := codeRSS()
	dropCodePages()
	after := codeRSS()
	t.Logf("code and read-only data resident: %d KiB, then %d KiB", before, after)
	if before == 0 || after >= before {
		t.Errorf("resident code %d KiB, then %d KiB after dropping it", before, after)
	}
}
