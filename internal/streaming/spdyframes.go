package streaming

import (
	"bufio"
	"errors"
	"io"
	"net"
	"net/http"
	"sync"
)

// SPDY's framer (github.com/moby/spdystream, under k8s.io/cri-streaming)
// writes each frame in pieces, straight to the connection: a data frame
// is a 4-byte write, another 4-byte write, then the payload; a control
// frame is five or more small writes. On TCP with TCP_NODELAY every piece
// is a syscall and a segment of its own, and through the WebSocket tunnel
// a message of its own. frameConn gathers the pieces of each frame and
// writes the frame at once (a writev when the payload is large), so a
// frame costs the sender one syscall and the client one segment to parse.

// spdyFrameHeader is the size of a SPDY frame header, data or control:
// 4 bytes, then flags (1) and the payload length (3).
const spdyFrameHeader = 8

// frameConn is a net.Conn whose writes are SPDY frames, written whole.
// A frame's pieces wait in buf until its last byte comes; the framer
// writes each frame in one go under its own lock, so nothing waits
// longer than the framer takes to write one frame.
type frameConn struct {
	net.Conn
	out io.Writer // where frames go: the TCP connection under a watchedConn
	// vectored: out is a TCP connection, which net.Buffers writes with
	// one writev; a large payload then goes out without being copied.
	vectored bool

	mu     sync.Mutex // serialises writes; guards the fields below
	buf    []byte     // the current frame's bytes not written yet
	header bool       // the current frame's header is complete (in buf or written)
	remain int        // payload bytes of the current frame still to come
}

func newFrameConn(c net.Conn) *frameConn {
	out := c
	if wc, ok := c.(*watchedConn); ok {
		out = wc.Conn // it watches reads and Close only
	}
	_, tcp := out.(*net.TCPConn)
	return &frameConn{Conn: c, out: out, vectored: tcp}
}

// largePiece: on a TCP connection, a payload piece this large goes out at
// once with what was gathered before it (one writev), without a copy.
const largePiece = 4 << 10

// Write takes any part of a frame stream and writes each frame as soon
// as it is complete (a frame without payload, with its header).
func (c *frameConn) Write(p []byte) (int, error) {
	c.mu.Lock()
	defer c.mu.Unlock()
	n := len(p)
	for len(p) > 0 {
		if !c.header {
			k := min(spdyFrameHeader-len(c.buf), len(p))
			c.buf = append(c.buf, p[:k]...)
			p = p[k:]
			if len(c.buf) < spdyFrameHeader {
				break
			}
			h := c.buf
			c.header = true
			c.remain = int(h[5])<<16 | int(h[6])<<8 | int(h[7])
		}
		k := min(c.remain, len(p))
		piece := p[:k]
		p = p[k:]
		c.remain -= k
		sendNow := c.remain == 0 || (c.vectored && k >= largePiece)
		if !sendNow {
			c.buf = append(c.buf, piece...)
			continue
		}
		if err := c.flush(piece); err != nil {
			return 0, err
		}
		if c.remain == 0 {
			c.header = false
		}
	}
	return n, nil
}

// flush writes buf and piece with one write. The caller holds mu.
func (c *frameConn) flush(piece []byte) error {
	var err error
	switch {
	case len(piece) == 0:
		_, err = c.out.Write(c.buf)
	case len(c.buf) == 0:
		_, err = c.out.Write(piece)
	case c.vectored:
		bufs := net.Buffers{c.buf, piece}
		_, err = bufs.WriteTo(c.out)
	default:
		c.buf = append(c.buf, piece...)
		_, err = c.out.Write(c.buf)
	}
	c.buf = c.buf[:0]
	return err
}

// spdyUpgrade is the http.ResponseWriter handed to the library for a
// SPDY upgrade: its Hijack returns the connection wrapped in a frameConn.
// The 101 response is written by net/http before Hijack returns, so
// everything written to the frameConn is SPDY frames.
type spdyUpgrade struct {
	http.ResponseWriter
}

func (w spdyUpgrade) Hijack() (net.Conn, *bufio.ReadWriter, error) {
	hj, ok := w.ResponseWriter.(http.Hijacker)
	if !ok {
		return nil, nil, errors.New("streaming: the connection cannot be hijacked")
	}
	conn, rw, err := hj.Hijack()
	if err != nil {
		return nil, nil, err
	}
	fc := newFrameConn(conn)
	return fc, bufio.NewReadWriter(rw.Reader, bufio.NewWriter(fc)), nil
}

// isSPDYUpgrade: the request asks to upgrade to SPDY (exec, attach and
// port-forward of SPDY clients: kubectl before 1.30, crictl, the API
// server's proxy).
func isSPDYUpgrade(r *http.Request) bool {
	return r.Header.Get("Upgrade") == "SPDY/3.1"
}
