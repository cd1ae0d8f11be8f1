package codepages

import (
	"fmt"
	"os"
	"strconv"
	"strings"
	"testing"
)

// Only the executable's private, non-writable mappings without a copied
// page are dropped: never its data, its relocated RELRO page, another
// file's mappings, or anonymous memory.
func TestCleanMappingsOf(t *testing.T) {
	const exe = "/usr/bin/noded"
	mapping := func(header string, anonKB int) string {
		return header + "\nSize:                 64 kB\nRss:                  64 kB\nAnonymous:            " + strconv.Itoa(anonKB) + " kB\nVmFlags: rd mr mw me\n"
	}
	for _, tc := range []struct {
		name  string
		smaps string
		want  []Range
	}{
		{"text and read-only data", mapping("00400000-0051f000 r-xp 00000000 fe:00 10757828   /usr/bin/noded", 0) +
			mapping("0051f000-00674000 r--p 0011f000 fe:00 10757828   /usr/bin/noded", 0),
			[]Range{{0x400000, 0x51f000}, {0x51f000, 0x674000}}},
		{"RELRO page the loader relocated", mapping("02207000-02208000 r--p 01e06000 fe:00 10757828   /usr/bin/noded", 4), nil},
		{"writable data", mapping("00674000-00683000 rw-p 00274000 fe:00 10757828   /usr/bin/noded", 0), nil},
		{"shared mapping", mapping("7f0000000000-7f0000001000 r-xs 00000000 fe:00 1   /usr/bin/noded", 0), nil},
		{"anonymous memory", mapping("00683000-006b4000 rw-p 00000000 00:00 0", 0), nil},
		{"another file", mapping("7f96a6e80000-7f96a6e90000 r-xp 00000000 fe:00 2   /usr/lib/libc.so.6", 0), nil},
		{"a path that only starts like the executable's", mapping("00400000-0051f000 r-xp 00000000 fe:00 3   /usr/bin/noded.old", 0), nil},
		{"path with spaces", mapping("00400000-0051f000 r-xp 00000000 fe:00 4   /opt/my tools/noded", 0), nil},
		{"no Anonymous line", "00400000-0051f000 r-xp 00000000 fe:00 10757828   /usr/bin/noded\nRss: 64 kB\n", nil},
		{"garbage", "garbage line\nzz-yy r-xp 0 0 0 /usr/bin/noded\nAnonymous: 0 kB\n", nil},
	} {
		t.Run(tc.name, func(t *testing.T) {
			got := CleanMappingsOf(strings.NewReader(tc.smaps), exe)
			if len(got) != len(tc.want) {
				t.Fatalf("got %x, want %x", got, tc.want)
			}
			for i := range tc.want {
				if got[i] != tc.want[i] {
					t.Errorf("mapping %d: %x, want %x", i, got[i], tc.want[i])
				}
			}
		})
	}
	// A path with spaces is matched whole.
	if got := CleanMappingsOf(strings.NewReader(mapping("00400000-0051f000 r-xp 00000000 fe:00 4   /opt/my tools/noded", 0)), "/opt/my tools/noded"); len(got) != 1 {
		t.Errorf("path with spaces: got %x", got)
	}
}

// Dropping the test binary's own code pages leaves it running with fewer
// of them mapped; they come back as it runs.
func TestDrop(t *testing.T) {
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
			f := strings.Fields(line)
			if _, perms, path, ok := header([]byte(line)); ok {
				in = string(path) == exe && perms[1] == '-'
			} else if in && len(f) == 3 && f[0] == "Rss:" {
				n, _ := strconv.Atoi(f[1])
				kb += n
			}
		}
		return kb
	}
	before := codeRSS()
	n := Drop()
	after := codeRSS()
	t.Logf("%d mappings dropped; code and read-only data resident: %d KiB, then %d KiB", n, before, after)
	if n == 0 || before == 0 || after >= before {
		t.Errorf("%d mappings dropped; resident code %d KiB, then %d KiB", n, before, after)
	}
}

// Parsing allocates nothing per line: it runs right after the heap was
// returned to the kernel, and its garbage would stay resident.
func TestCleanMappingsOfAllocatesNothingPerLine(t *testing.T) {
	var b strings.Builder
	for i := 0; i < 100; i++ {
		fmt.Fprintf(&b, "%x-%x r--p 00000000 fe:00 %d   /usr/lib/lib%d.so\n", 0x7f0000000000+i*0x10000, 0x7f0000010000+i*0x10000, i, i)
		b.WriteString("Size:                 64 kB\nKernelPageSize:        4 kB\nRss:                  64 kB\nPss:                  64 kB\nAnonymous:             0 kB\nVmFlags: rd mr mw me\n")
	}
	smaps := b.String()
	allocs := testing.AllocsPerRun(20, func() { CleanMappingsOf(strings.NewReader(smaps), "/usr/bin/noded") })
	// The scanner and its buffer; nothing for each of the 700 lines.
	if allocs > 4 {
		t.Errorf("%.0f allocations for %d lines", allocs, strings.Count(smaps, "\n"))
	}
}

func TestParseUint(t *testing.T) {
	for _, tc := range []struct {
		in   string
		base uint64
		want uint64
		ok   bool
	}{
		{"0", 10, 0, true},
		{"1328", 10, 1328, true},
		{"7f96a6e80000", 16, 0x7f96a6e80000, true},
		{"ffffffffffffffff", 16, 0xffffffffffffffff, true},
		{"10000000000000000", 16, 0, false},
		{"", 10, 0, false},
		{"12a", 10, 0, false},
		{"FF", 16, 0, false},
		{"-1", 10, 0, false},
	} {
		if got, ok := parseUint([]byte(tc.in), tc.base); got != tc.want || ok != tc.ok {
			t.Errorf("parseUint(%q, %d) = %d, %v; want %d, %v", tc.in, tc.base, got, ok, tc.want, tc.ok)
		}
	}
}
