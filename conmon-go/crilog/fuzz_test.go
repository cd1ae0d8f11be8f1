package crilog

import (
	"bytes"
	"os"
	"path/filepath"
	"regexp"
	"testing"
	"time"
)

// entryRE is one CRI log entry as the kubelet parses it.
var entryRE = regexp.MustCompile(`^(\d{4}-\d\d-\d\dT\d\d:\d\d:\d\d\.\d{9}Z) (stdout|stderr) ([PF]) (.*)$`)

// FuzzCopier writes arbitrary output, cut into arbitrary chunks, through
// a Copier with a small maximum line, and checks that the file is well
// formed and loses and adds nothing: every entry parses, none is longer
// than the maximum, and the contents (each F entry's with its newline
// back) are the output exactly.
func FuzzCopier(f *testing.F) {
	f.Add([]byte("hello\nworld\n"), uint8(3), uint8(8))
	f.Add([]byte("no newline at the end"), uint8(1), uint8(4))
	f.Add([]byte("\n\n\nline\n"), uint8(2), uint8(1))
	f.Add(bytes.Repeat([]byte("x"), 100), uint8(7), uint8(16))
	f.Add([]byte("a\r\nb\x00c\nP F stdout \n"), uint8(5), uint8(3))
	f.Fuzz(func(t *testing.T, out []byte, chunk, maxLine uint8) {
		max := int(maxLine%32) + 1
		path := filepath.Join(t.TempDir(), "log")
		w, err := Open(path, WithMaxLine(max), WithClock(func() time.Time { return time.Unix(1, 2) }))
		if err != nil {
			t.Fatal(err)
		}
		c := w.NewCopier(Stdout, false)
		step := int(chunk%16) + 1
		for p := out; len(p) > 0; {
			k := min(step, len(p))
			if _, err := c.Write(p[:k]); err != nil {
				t.Fatal(err)
			}
			p = p[k:]
		}
		if err := c.Flush(); err != nil {
			t.Fatal(err)
		}
		if err := w.Close(); err != nil {
			t.Fatal(err)
		}
		b, err := os.ReadFile(path)
		if err != nil {
			t.Fatal(err)
		}
		var got []byte
		for _, line := range bytes.SplitAfter(b, []byte("\n")) {
			if len(line) == 0 {
				continue
			}
			if line[len(line)-1] != '\n' {
				t.Fatalf("entry without its newline: %q", line)
			}
			m := entryRE.FindSubmatch(line[:len(line)-1])
			if m == nil {
				t.Fatalf("malformed entry %q", line)
			}
			if len(m[4]) > max {
				t.Fatalf("entry of %d bytes, the maximum is %d: %q", len(m[4]), max, line)
			}
			got = append(got, m[4]...)
			if string(m[3]) == "F" {
				got = append(got, '\n')
			}
		}
		if !bytes.Equal(got, out) {
			t.Fatalf("the log holds %q, the output was %q", got, out)
		}
	})
}
