package wire

import (
	"bytes"
	"errors"
	"syscall"
)

// The streaming operations, exec_stream and attach, keep their connection
// open for as long as the stream, and move no output or input bytes over
// it: the process's stdio are file descriptors the two sides pass with
// SCM_RIGHTS, so that no process copies the bytes between them and noded.
// The connection carries only JSON lines, and its end is the signal that
// the other side is gone.
//
// A line that carries file descriptors is sent with one sendmsg whose
// ancillary data holds them (they arrive with the line's first bytes) and
// is the first line its side sends, so that a reader attributes them to
// the right line (LineReader: the descriptors received while a line is
// read belong to it).
//
// exec_stream:
//
//	client  -> Request{Op: exec_stream, Container, Args, Env, Tty, Stdin, Stdout, Stderr}
//	           + without Tty: the child ends of the client's pipes, in the
//	             order stdin (read end), stdout, stderr (write ends), those
//	             whose flag is set (a stream not passed is /dev/null)
//	monitor -> Response{Pid} (+ with Tty: the master of the pty the process
//	           has as its stdio and controlling terminal; the client copies
//	           through it and resizes it with TIOCSWINSZ), or Response{Error}
//	monitor -> Response{Exec: {ExitCode}} once the process exited
//
// When the client closes the connection before the second answer, the
// monitor kills the process (SIGKILL).
//
// attach:
//
//	client  -> Request{Op: attach, Container, Stdin, Stdout, Stderr}
//	           + the ends of the client's pipes, in the order stdin (read
//	             end: the monitor forwards it to the container's stdin),
//	             stdout, stderr (write ends: the monitor writes the
//	             container's output to them, as well as to its log)
//	monitor -> Response{} once attached, or Response{Error}
//	client  -> Resize lines, any number ({"width":W,"height":H}; applied to
//	           the container's terminal, ignored without one)
//	monitor -> Response{} when the container's output ended (its pipes are
//	           closed first), or Response{Error} when the monitor dropped a
//	           client that did not keep up; nothing when the client closed
//	           the connection (it detached).
//
// The monitor never blocks on an attached client: it writes to the
// client's pipes without blocking, and drops the client (closes its pipes
// and answers the error) when a pipe is full.

// MaxStreamFds bounds the file descriptors that come with one line.
const MaxStreamFds = 4

// Resize is a terminal size, sent by an attach client.
type Resize struct {
	Width  uint16 `json:"width"`
	Height uint16 `json:"height"`
}

// LineReader reads newline-terminated lines from a unix stream socket,
// with the file descriptors sent along (SCM_RIGHTS). Recv is one
// recvmsg(2) (with MSG_CMSG_CLOEXEC); it returns 0 bytes at the end of
// the stream, and an error when the control data was truncated
// (MSG_CTRUNC: descriptors were lost).
type LineReader struct {
	Recv func(p, oob []byte) (n, oobn int, err error)
	// Max bounds a line (MaxRequestSize if 0).
	Max int

	buf []byte // read, not yet returned
	fds []int  // received, not yet returned
}

// ErrFdOverflow is returned when more descriptors came with a line than
// MaxStreamFds (the extra ones were closed by the kernel or by ReadLine).
var ErrFdOverflow = errors.New("too many file descriptors with one line")

// ErrLineTooLong is returned for a line longer than the reader's Max.
var ErrLineTooLong = errors.New("line too long")

// ReadLine returns the next line, without its newline, and the file
// descriptors received while it was read (the caller owns them, also
// when an error is returned with them). The end of the stream gives
// ErrEnd between lines and ErrUnexpectedEnd inside one; a failed Recv
// gives its error.
func (r *LineReader) ReadLine() (line []byte, fds []int, err error) {
	max := r.Max
	if max == 0 {
		max = MaxRequestSize
	}
	p := make([]byte, 4096)
	// Room for more than allowed, so that an overflow is seen here
	// rather than only as MSG_CTRUNC.
	oob := make([]byte, syscall.CmsgSpace(2*MaxStreamFds*4))
	for {
		if i := bytes.IndexByte(r.buf, '\n'); i >= 0 {
			line = append([]byte(nil), r.buf[:i]...)
			r.buf = r.buf[i+1:]
			fds, r.fds = r.fds, nil
			return line, fds, nil
		}
		if len(r.buf) > max {
			return nil, r.takeFds(), ErrLineTooLong
		}
		n, oobn, err := r.Recv(p, oob)
		if oobn > 0 {
			got, perr := ParseRights(oob[:oobn])
			r.fds = append(r.fds, got...)
			if perr != nil {
				return nil, r.takeFds(), perr
			}
			if len(r.fds) > MaxStreamFds {
				return nil, r.takeFds(), ErrFdOverflow
			}
		}
		if err != nil {
			return nil, r.takeFds(), err
		}
		if n == 0 {
			if len(r.buf) > 0 {
				return nil, r.takeFds(), ErrUnexpectedEnd
			}
			return nil, r.takeFds(), ErrEnd
		}
		r.buf = append(r.buf, p[:n]...)
	}
}

// Buffered returns what was read past the last line returned.
func (r *LineReader) Buffered() []byte { return r.buf }

func (r *LineReader) takeFds() []int {
	fds := r.fds
	r.fds = nil
	return fds
}

// ErrEnd is the end of the stream between lines; ErrUnexpectedEnd inside
// a line.
var (
	ErrEnd           = errors.New("end of stream")
	ErrUnexpectedEnd = errors.New("end of stream inside a line")
)

// ParseRights returns the file descriptors of SCM_RIGHTS control messages.
// A message whose data is not whole descriptors is skipped:
// syscall.ParseUnixRights indexes past its end (a panic that FuzzParseRights
// found; the kernel does not send such messages).
func ParseRights(oob []byte) ([]int, error) {
	msgs, err := syscall.ParseSocketControlMessage(oob)
	if err != nil {
		return nil, err
	}
	var fds []int
	for i := range msgs {
		if len(msgs[i].Data)%4 != 0 {
			continue
		}
		if got, err := syscall.ParseUnixRights(&msgs[i]); err == nil {
			fds = append(fds, got...)
		}
	}
	return fds, nil
}

// CloseFds closes descriptors (received and not used).
func CloseFds(fds []int) {
	for _, fd := range fds {
		_ = syscall.Close(fd)
	}
}
