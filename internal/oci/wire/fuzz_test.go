package wire

import (
	"bytes"
	"errors"
	"testing"
)

// FuzzLineReader feeds the monitor protocol's line reader an arbitrary
// byte stream in arbitrary pieces: it returns exactly the stream's lines,
// in order, until the end (ErrEnd after the last full line,
// ErrUnexpectedEnd inside one) or a line longer than its Max
// (ErrLineTooLong), and never holds much more than Max.
func FuzzLineReader(f *testing.F) {
	f.Add([]byte("{\"op\":\"hello\"}\n{\"op\":\"state\"}\n"), uint8(3), uint8(64))
	f.Add([]byte("no newline"), uint8(1), uint8(4))
	f.Add([]byte("\n\n"), uint8(7), uint8(1))
	f.Add(bytes.Repeat([]byte("y"), 300), uint8(200), uint8(16))
	f.Fuzz(func(t *testing.T, stream []byte, chunk, maxLine uint8) {
		max := int(maxLine) + 1
		step := int(chunk) + 1
		rest := stream
		r := &LineReader{Max: max, Recv: func(p, _ []byte) (int, int, error) {
			n := copy(p[:min(len(p), step)], rest)
			rest = rest[n:]
			return n, 0, nil
		}}
		want := bytes.Split(stream, []byte("\n"))
		for i := 0; ; i++ {
			line, fds, err := r.ReadLine()
			if len(fds) != 0 {
				t.Fatalf("descriptors out of nowhere: %v", fds)
			}
			if len(r.Buffered()) > max+4096 {
				t.Fatalf("holds %d bytes with a maximum line of %d", len(r.Buffered()), max)
			}
			switch {
			case err == nil:
				if i >= len(want)-1 || !bytes.Equal(line, want[i]) {
					t.Fatalf("line %d = %q, want %q", i, line, want[i])
				}
				continue
			case errors.Is(err, ErrLineTooLong):
				if len(want[i]) <= max {
					t.Fatalf("line %d of %d bytes called too long (max %d)", i, len(want[i]), max)
				}
			case errors.Is(err, ErrEnd):
				if i != len(want)-1 || len(want[i]) != 0 {
					t.Fatalf("end after %d lines, the stream has %d and %q", i, len(want)-1, want[len(want)-1])
				}
			case errors.Is(err, ErrUnexpectedEnd):
				if i != len(want)-1 || len(want[i]) == 0 {
					t.Fatalf("unexpected end at line %d of %d", i, len(want))
				}
			default:
				t.Fatalf("line %d: %v", i, err)
			}
			return
		}
	})
}

// FuzzParseRights parses arbitrary control data as the monitor protocol
// does: it must not panic (the descriptors it returns are not real, and
// are not closed).
func FuzzParseRights(f *testing.F) {
	f.Add([]byte{})
	f.Add([]byte{20, 0, 0, 0, 0, 0, 0, 0, 1, 0, 0, 0, 0, 0, 0, 0, 3, 0, 0, 0})
	f.Add(bytes.Repeat([]byte{0xff}, 40))
	f.Fuzz(func(_ *testing.T, oob []byte) {
		_, _ = ParseRights(oob)
	})
}
