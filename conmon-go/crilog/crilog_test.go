package crilog

import (
	"bytes"
	"io"
	"os"
	"path/filepath"
	"strings"
	"sync"
	"testing"
	"time"
)

var t0 = time.Date(2016, 10, 6, 0, 17, 9, 669794202, time.UTC)

func fixedClock() time.Time { return t0 }

func readLog(t *testing.T, path string) []string {
	t.Helper()
	b, err := os.ReadFile(path)
	if err != nil {
		t.Fatal(err)
	}
	s := strings.TrimSuffix(string(b), "\n")
	if s == "" {
		return nil
	}
	return strings.Split(s, "\n")
}

func TestEntryFormat(t *testing.T) {
	path := filepath.Join(t.TempDir(), "c.log")
	w, err := Open(path, WithClock(fixedClock))
	if err != nil {
		t.Fatal(err)
	}
	defer w.Close()
	if err := w.WriteEntry(t0, Stdout, false, []byte("text")); err != nil {
		t.Fatal(err)
	}
	// A non-UTC time is converted; a zero fraction keeps nine digits.
	loc := time.FixedZone("x", 3600)
	if err := w.WriteEntry(time.Date(2020, 1, 2, 4, 4, 5, 0, loc), Stderr, true, []byte("p")); err != nil {
		t.Fatal(err)
	}
	got := readLog(t, path)
	want := []string{
		"2016-10-06T00:17:09.669794202Z stdout F text",
		"2020-01-02T03:04:05.000000000Z stderr P p",
	}
	if strings.Join(got, "\n") != strings.Join(want, "\n") {
		t.Fatalf("got\n%q\nwant\n%q", got, want)
	}
	// The kubelet parses timestamps with RFC3339Nano.
	ts := strings.SplitN(got[0], " ", 2)[0]
	if p, err := time.Parse(time.RFC3339Nano, ts); err != nil || !p.Equal(t0) {
		t.Fatalf("parse %q: %v %v", ts, p, err)
	}
}

func TestCopier(t *testing.T) {
	long := strings.Repeat("a", 10) + strings.Repeat("b", 10) + "cc"
	tests := []struct {
		name    string
		maxLine int
		tty     bool
		chunks  []string // written one by one
		want    []string // "tag content"
	}{
		{name: "lines", maxLine: 100, chunks: []string{"one\ntwo\n"}, want: []string{"F one", "F two"}},
		{name: "empty line", maxLine: 100, chunks: []string{"\n\nx\n"}, want: []string{"F ", "F ", "F x"}},
		{name: "chunked line", maxLine: 100, chunks: []string{"he", "ll", "o\nwor", "ld\n"}, want: []string{"F hello", "F world"}},
		{name: "no trailing newline", maxLine: 100, chunks: []string{"a\nbc"}, want: []string{"F a", "P bc"}},
		{name: "long line split", maxLine: 10, chunks: []string{long + "\n"}, want: []string{"P aaaaaaaaaa", "P bbbbbbbbbb", "F cc"}},
		{name: "long line in pieces", maxLine: 10, chunks: []string{"aaaaaaa", "aaabbbbb", "bbbbbcc\n"}, want: []string{"P aaaaaaaaaa", "P bbbbbbbbbb", "F cc"}},
		{name: "exact max then newline", maxLine: 4, chunks: []string{"abcd", "\n"}, want: []string{"F abcd"}},
		{name: "exact max line", maxLine: 4, chunks: []string{"abcd\nefghi\n"}, want: []string{"F abcd", "P efgh", "F i"}},
		{name: "long unterminated", maxLine: 4, chunks: []string{"abcdefghij"}, want: []string{"P abcd", "P efgh", "P ij"}},
		{name: "tty crlf", maxLine: 100, tty: true, chunks: []string{"a\r\nb\r", "\n"}, want: []string{"F a", "F b"}},
		{name: "no tty keeps cr", maxLine: 100, chunks: []string{"a\r\n"}, want: []string{"F a\r"}},
	}
	for _, tc := range tests {
		t.Run(tc.name, func(t *testing.T) {
			path := filepath.Join(t.TempDir(), "c.log")
			w, err := Open(path, WithClock(fixedClock), WithMaxLine(tc.maxLine))
			if err != nil {
				t.Fatal(err)
			}
			c := w.NewCopier(Stdout, tc.tty)
			for _, ch := range tc.chunks {
				if n, err := c.Write([]byte(ch)); n != len(ch) || err != nil {
					t.Fatalf("write: %d %v", n, err)
				}
			}
			if err := c.Flush(); err != nil {
				t.Fatal(err)
			}
			w.Close()
			var want []string
			for _, e := range tc.want {
				want = append(want, "2016-10-06T00:17:09.669794202Z stdout "+e)
			}
			got := readLog(t, path)
			if strings.Join(got, "\n") != strings.Join(want, "\n") {
				t.Fatalf("got\n%q\nwant\n%q", got, want)
			}
		})
	}
}

// Reassembling the entries of a stream gives back the original bytes.
func TestRoundTrip(t *testing.T) {
	var in bytes.Buffer
	for i := 0; i < 300; i++ {
		in.WriteString(strings.Repeat(string(rune('a'+i%26)), i*7%53))
		if i%5 != 4 {
			in.WriteByte('\n')
		}
	}
	in.WriteString("tail")
	path := filepath.Join(t.TempDir(), "c.log")
	w, err := Open(path, WithMaxLine(16))
	if err != nil {
		t.Fatal(err)
	}
	c := w.NewCopier(Stderr, false)
	if _, err := c.ReadFrom(io.MultiReader(bytes.NewReader(in.Bytes()[:100]), bytes.NewReader(in.Bytes()[100:]))); err != nil {
		t.Fatal(err)
	}
	w.Close()
	var out bytes.Buffer
	for _, l := range readLog(t, path) {
		f := strings.SplitN(l, " ", 4)
		if len(f) != 4 || f[1] != "stderr" || len(f[3]) > 16 {
			t.Fatalf("bad entry %q", l)
		}
		out.WriteString(f[3])
		if f[2] == "F" {
			out.WriteByte('\n')
		} else if f[2] != "P" {
			t.Fatalf("bad tag in %q", l)
		}
	}
	if out.String() != in.String() {
		t.Fatalf("round trip differs:\n%q\n%q", out.String(), in.String())
	}
}

func TestReopen(t *testing.T) {
	dir := t.TempDir()
	path := filepath.Join(dir, "c.log")
	w, err := Open(path, WithClock(fixedClock))
	if err != nil {
		t.Fatal(err)
	}
	defer w.Close()
	c := w.NewCopier(Stdout, false)
	if _, err := c.Write([]byte("before\n")); err != nil {
		t.Fatal(err)
	}
	// The kubelet renames the file, then asks for a reopen.
	if err := os.Rename(path, path+".1"); err != nil {
		t.Fatal(err)
	}
	if _, err := c.Write([]byte("between\n")); err != nil {
		t.Fatal(err)
	}
	if err := w.Reopen(); err != nil {
		t.Fatal(err)
	}
	if _, err := c.Write([]byte("after\n")); err != nil {
		t.Fatal(err)
	}
	if got := readLog(t, path+".1"); len(got) != 2 || !strings.HasSuffix(got[1], "F between") {
		t.Fatalf("rotated file: %q", got)
	}
	if got := readLog(t, path); len(got) != 1 || !strings.HasSuffix(got[0], "F after") {
		t.Fatalf("new file: %q", got)
	}
	// Reopen fails when the directory is gone; the old file stays usable.
	os.RemoveAll(dir)
	if err := w.Reopen(); err == nil {
		t.Fatal("reopen in a removed directory succeeded")
	}
	if err := w.WriteEntry(t0, Stdout, false, []byte("x")); err != nil {
		t.Fatalf("write after failed reopen: %v", err)
	}
}

func TestWriteAfterClose(t *testing.T) {
	w, err := Open(filepath.Join(t.TempDir(), "c.log"))
	if err != nil {
		t.Fatal(err)
	}
	w.Close()
	c := w.NewCopier(Stdout, false)
	if n, err := c.Write([]byte("x\n")); n != 2 || err != nil {
		t.Fatalf("Copier.Write must not fail: %d %v", n, err)
	}
	if err := c.Flush(); err == nil {
		t.Fatal("Flush did not report the write error")
	}
}

// Entries of two streams written concurrently are never interleaved.
func TestConcurrentStreams(t *testing.T) {
	path := filepath.Join(t.TempDir(), "c.log")
	w, err := Open(path, WithMaxLine(64))
	if err != nil {
		t.Fatal(err)
	}
	var wg sync.WaitGroup
	for _, s := range []Stream{Stdout, Stderr} {
		wg.Add(1)
		go func(s Stream) {
			defer wg.Done()
			c := w.NewCopier(s, false)
			for i := 0; i < 500; i++ {
				if _, err := c.Write([]byte(strings.Repeat(string(s[3]), 40) + "\n")); err != nil {
					t.Error(err)
					return
				}
			}
			c.Flush()
		}(s)
	}
	wg.Wait()
	w.Close()
	lines := readLog(t, path)
	if len(lines) != 1000 {
		t.Fatalf("got %d lines", len(lines))
	}
	for _, l := range lines {
		f := strings.SplitN(l, " ", 4)
		if f[3] != strings.Repeat(string(f[1][3]), 40) {
			t.Fatalf("corrupt entry %q", l)
		}
	}
}
