// Package crilog writes container output in the CRI log format the kubelet
// reads (kubelet/kuberuntime/logs):
//
//	2016-10-06T00:17:09.669794202Z stdout F text
//
// Each entry is an RFC 3339 UTC timestamp with nanoseconds, the stream
// ("stdout" or "stderr"), a tag, a space and the content. The tag is "F"
// for the last (or only) piece of a line and "P" for a piece that is
// continued by the next entry of the same stream: a line longer than the
// maximum line size is split into P…P F, and output that ends without a
// newline when the stream closes is written as P (the kubelet then shows it
// without adding a newline).
//
// A Writer is safe for concurrent use: every entry is written with one
// write(2) on an O_APPEND file, so entries of stdout and stderr never
// interleave within a line. Reopen switches to a new file at the same path,
// which the kubelet asks for after it rotated the log.
package crilog

import (
	"bytes"
	"errors"
	"io"
	"os"
	"sync"
	"time"
)

// Stream names a container output stream.
type Stream string

// Streams.
const (
	Stdout Stream = "stdout"
	Stderr Stream = "stderr"
)

// DefaultMaxLine is the largest content of one entry; longer lines are
// split into partial entries (containerd and CRI-O use 16 KiB too).
const DefaultMaxLine = 16 << 10

// timeFormat is RFC 3339 with a fixed nine-digit fraction so entries sort
// lexically; time.RFC3339Nano, which the kubelet parses with, accepts it.
const timeFormat = "2006-01-02T15:04:05.000000000Z07:00"

// Writer appends CRI log entries to a file.
type Writer struct {
	path    string
	maxLine int
	now     func() time.Time

	mu  sync.Mutex
	f   *os.File
	buf []byte // scratch for one entry, reused under mu
}

// Option configures a Writer.
type Option func(*Writer)

// WithMaxLine sets the maximum content size of one entry (>= 1).
func WithMaxLine(n int) Option {
	return func(w *Writer) {
		if n > 0 {
			w.maxLine = n
		}
	}
}

// WithClock replaces time.Now (for tests).
func WithClock(now func() time.Time) Option { return func(w *Writer) { w.now = now } }

// Open opens (creating if needed) the log file at path for appending.
func Open(path string, opts ...Option) (*Writer, error) {
	w := &Writer{path: path, maxLine: DefaultMaxLine, now: time.Now}
	for _, o := range opts {
		o(w)
	}
	f, err := openFile(path)
	if err != nil {
		return nil, err
	}
	w.f = f
	return w, nil
}

func openFile(path string) (*os.File, error) {
	return os.OpenFile(path, os.O_WRONLY|os.O_APPEND|os.O_CREATE, 0o640)
}

// Path returns the log file path.
func (w *Writer) Path() string { return w.path }

// MaxLine returns the maximum content size of one entry.
func (w *Writer) MaxLine() int { return w.maxLine }

// Reopen closes the current file and opens path again, creating it: after
// a rotation (rename) new entries go to a new file. On error the old file
// stays in use.
func (w *Writer) Reopen() error {
	f, err := openFile(w.path)
	if err != nil {
		return err
	}
	w.mu.Lock()
	old := w.f
	w.f = f
	w.mu.Unlock()
	if old != nil {
		return old.Close()
	}
	return nil
}

// Close closes the file; later writes fail with os.ErrClosed.
func (w *Writer) Close() error {
	w.mu.Lock()
	defer w.mu.Unlock()
	if w.f == nil {
		return nil
	}
	err := w.f.Close()
	w.f = nil
	w.buf = nil
	return err
}

// WriteEntry writes one entry as is (content must not contain a newline
// and should not exceed MaxLine; the Copier guarantees both).
func (w *Writer) WriteEntry(t time.Time, s Stream, partial bool, content []byte) error {
	w.mu.Lock()
	defer w.mu.Unlock()
	if w.f == nil {
		return os.ErrClosed
	}
	b := w.buf[:0]
	b = t.UTC().AppendFormat(b, timeFormat)
	b = append(b, ' ')
	b = append(b, s...)
	if partial {
		b = append(b, " P "...)
	} else {
		b = append(b, " F "...)
	}
	b = append(b, content...)
	b = append(b, '\n')
	_, err := w.f.Write(b)
	if cap(b) <= 2*w.maxLine+64 {
		w.buf = b[:0] // keep a bounded scratch buffer
	}
	return err
}

// Copier splits one stream into entries. It is not safe for concurrent use;
// use one per stream. Write may be called with any chunking; Flush (or
// Close) ends the stream.
type Copier struct {
	w       *Writer
	stream  Stream
	tty     bool
	pending []byte // start of a line not yet terminated, < maxLine bytes
	err     error  // first write error, reported once by Flush
}

// NewCopier returns a Copier writing stream s to w. With tty set a "\r"
// right before the newline is dropped (a terminal writes "\r\n").
func (w *Writer) NewCopier(s Stream, tty bool) *Copier {
	return &Copier{w: w, stream: s, tty: tty}
}

func (c *Copier) emit(t time.Time, partial bool, b []byte) {
	if err := c.w.WriteEntry(t, c.stream, partial, b); err != nil && c.err == nil {
		c.err = err
	}
}

// Write implements io.Writer; it never fails so that a full disk does not
// block the container; Flush reports the first write error.
func (c *Copier) Write(p []byte) (int, error) {
	c.write(p)
	return len(p), nil
}

// write splits p into log entries; a write error is kept for Flush.
func (c *Copier) write(p []byte) {
	t := c.w.now()
	max := c.w.maxLine
	for len(p) > 0 {
		i := bytes.IndexByte(p, '\n')
		if i < 0 {
			// No end of line: keep it, emitting full-size partial pieces.
			for len(c.pending)+len(p) > max {
				k := max - len(c.pending)
				if len(c.pending) == 0 {
					c.emit(t, true, p[:k])
				} else {
					c.pending = append(c.pending, p[:k]...)
					c.emit(t, true, c.pending)
					c.pending = c.pending[:0]
				}
				p = p[k:]
			}
			if len(p) > 0 {
				if c.pending == nil {
					c.pending = make([]byte, 0, min(max, 4096))
				}
				c.pending = append(c.pending, p...)
			}
			break
		}
		line := p[:i]
		p = p[i+1:]
		if len(c.pending) > 0 {
			// Complete the pending start, splitting if it got too long.
			for len(c.pending)+len(line) > max {
				k := max - len(c.pending)
				c.pending = append(c.pending, line[:k]...)
				c.emit(t, true, c.pending)
				c.pending = c.pending[:0]
				line = line[k:]
			}
			c.pending = append(c.pending, line...)
			line = c.pending
		} else {
			for len(line) > max {
				c.emit(t, true, line[:max])
				line = line[max:]
			}
		}
		if c.tty && len(line) > 0 && line[len(line)-1] == '\r' {
			line = line[:len(line)-1]
		}
		c.emit(t, false, line)
		c.pending = c.pending[:0]
		if cap(c.pending) > 4096 {
			c.pending = nil // do not keep a 16 KiB buffer for a quiet stream
		}
	}
}

// Flush writes what is left of an unterminated line as a partial entry and
// returns the first write error seen, if any.
func (c *Copier) Flush() error {
	if len(c.pending) > 0 {
		c.emit(c.w.now(), true, c.pending)
		c.pending = nil
	}
	err := c.err
	c.err = nil
	return err
}

// ReadFrom copies r until EOF or a read error, then flushes. Errors of the
// reader that only mean "the other end is gone" (EIO from a terminal whose
// slave closed, a closed file) end the copy without error.
func (c *Copier) ReadFrom(r io.Reader) (int64, error) {
	buf := make([]byte, 8192)
	var total int64
	var rerr error
	for {
		n, err := r.Read(buf)
		if n > 0 {
			total += int64(n)
			c.write(buf[:n])
		}
		if err != nil {
			if !errors.Is(err, io.EOF) && !isHangup(err) {
				rerr = err
			}
			break
		}
	}
	if err := c.Flush(); err != nil && rerr == nil {
		rerr = err
	}
	return total, rerr
}
