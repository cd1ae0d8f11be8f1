package streaming

import (
	"bytes"
	"encoding/binary"
	"io"
	"net"
	"testing"
)

// recordConn is a net.Conn (not TCP) that records each write.
type recordConn struct {
	net.Conn
	writes [][]byte
}

func (c *recordConn) Write(p []byte) (int, error) {
	c.writes = append(c.writes, append([]byte(nil), p...))
	return len(p), nil
}

// dataFrame writes a SPDY data frame the way spdystream's framer does:
// stream id, flags and length, payload, each with a write of its own.
func dataFrame(w io.Writer, stream uint32, payload []byte) {
	_ = binary.Write(w, binary.BigEndian, stream)
	_ = binary.Write(w, binary.BigEndian, uint32(len(payload)))
	_, _ = w.Write(payload)
}

// controlFrame writes a SPDY control frame as the framer does (a ping:
// version, type, flags and length, then the 4-byte id).
func controlFrame(w io.Writer, id uint32) {
	_ = binary.Write(w, binary.BigEndian, uint16(0x8000|3))
	_ = binary.Write(w, binary.BigEndian, uint16(6))
	_ = binary.Write(w, binary.BigEndian, uint32(4))
	_ = binary.Write(w, binary.BigEndian, id)
}

func TestFrameConnWritesWholeFrames(t *testing.T) {
	big := bytes.Repeat([]byte("x"), 64<<10)
	tests := []struct {
		name   string
		write  func(w io.Writer)
		frames int
	}{
		{"data frame", func(w io.Writer) { dataFrame(w, 1, []byte("hello")) }, 1},
		{"empty data frame (FIN)", func(w io.Writer) { dataFrame(w, 1, nil) }, 1},
		{"control frame", func(w io.Writer) { controlFrame(w, 7) }, 1},
		{"large data frame", func(w io.Writer) { dataFrame(w, 3, big) }, 1},
		{"frames in a row", func(w io.Writer) {
			dataFrame(w, 1, []byte("a"))
			controlFrame(w, 9)
			dataFrame(w, 1, nil)
			dataFrame(w, 5, big)
		}, 4},
		{"a frame split across writes anywhere", func(w io.Writer) {
			var b bytes.Buffer
			dataFrame(&b, 1, []byte("split me"))
			controlFrame(&b, 2)
			for _, c := range b.Bytes() {
				_, _ = w.Write([]byte{c})
			}
		}, 2},
	}
	for _, tc := range tests {
		t.Run(tc.name, func(t *testing.T) {
			var want bytes.Buffer
			tc.write(&want)
			rc := &recordConn{}
			fc := newFrameConn(rc)
			tc.write(fc)
			if len(rc.writes) != tc.frames {
				t.Errorf("%d writes reached the connection, want %d (one a frame)", len(rc.writes), tc.frames)
			}
			if got := bytes.Join(rc.writes, nil); !bytes.Equal(got, want.Bytes()) {
				t.Errorf("the connection got %d bytes, not the %d written", len(got), want.Len())
			}
		})
	}
}

// On TCP a large payload goes out with its header in one writev: what the
// peer reads is the frame stream, unchanged.
func TestFrameConnTCP(t *testing.T) {
	ln, err := net.Listen("tcp", "127.0.0.1:0")
	if err != nil {
		t.Fatal(err)
	}
	defer ln.Close()
	got := make(chan []byte, 1)
	go func() {
		c, err := ln.Accept()
		if err != nil {
			got <- nil
			return
		}
		defer c.Close()
		b, _ := io.ReadAll(c)
		got <- b
	}()
	c, err := net.Dial("tcp", ln.Addr().String())
	if err != nil {
		t.Fatal(err)
	}
	fc := newFrameConn(&watchedConn{Conn: c})
	if !fc.vectored {
		t.Fatal("a TCP connection under a watchedConn is not written vectored")
	}
	var want bytes.Buffer
	for _, w := range []io.Writer{&want, fc} {
		dataFrame(w, 1, bytes.Repeat([]byte("y"), 100<<10))
		controlFrame(w, 4)
		dataFrame(w, 1, []byte("tail"))
	}
	c.Close()
	if b := <-got; !bytes.Equal(b, want.Bytes()) {
		t.Fatalf("peer read %d bytes, want %d unchanged", len(b), want.Len())
	}
}
