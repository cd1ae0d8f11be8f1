package main

import (
	"encoding/json"
	"errors"
	"io"
	"os"
	"sync"

	"golang.org/x/sys/unix"

	"github.com/noded-dev/noded/conmon-go/crilog"
	"github.com/noded-dev/noded/internal/oci/wire"
)

// Attach (wire.OpAttach; the framing is in internal/oci/wire/stream.go):
// the client passes pipes; the monitor writes the container's output to
// them as well as to the log, forwards the client's stdin to the
// container's, and applies the client's resize lines to the container's
// terminal. Output goes to the clients without ever blocking the
// container or its log: a client whose pipe is full is dropped.

// Output streams, as fanout indexes them.
const (
	streamStdout = 0
	streamStderr = 1
)

func streamIndex(s crilog.Stream) int {
	if s == crilog.Stderr {
		return streamStderr
	}
	return streamStdout
}

// fanout sends a container's output to its attached clients. It owns the
// clients' output descriptors; mu guards the set and is held only for
// non-blocking writes.
type fanout struct {
	mu      sync.Mutex
	clients map[*attachClient]struct{}
	ended   bool
	done    chan struct{} // closed by end
}

func newFanout() *fanout {
	return &fanout{clients: map[*attachClient]struct{}{}, done: make(chan struct{})}
}

// attachClient is one attached client's output: the write ends of its
// stdout and stderr pipes (-1 for none), non-blocking.
type attachClient struct {
	fds     [2]int
	dropped chan struct{} // closed when the fanout dropped the client: it did not keep up, or its pipe is gone
}

func (cl *attachClient) closeFds() {
	for i, fd := range cl.fds {
		if fd >= 0 {
			unix.Close(fd)
			cl.fds[i] = -1
		}
	}
}

// add attaches a client; false once the output has ended.
func (f *fanout) add(cl *attachClient) bool {
	f.mu.Lock()
	defer f.mu.Unlock()
	if f.ended {
		return false
	}
	f.clients[cl] = struct{}{}
	return true
}

// remove detaches a client and closes its pipes (its reader sees EOF).
func (f *fanout) remove(cl *attachClient) {
	f.mu.Lock()
	defer f.mu.Unlock()
	delete(f.clients, cl)
	cl.closeFds()
}

// write sends p, output of stream s, to every client that takes it; a
// client whose pipe is full (or gone) is dropped.
func (f *fanout) write(s int, p []byte) {
	f.mu.Lock()
	defer f.mu.Unlock()
	for cl := range f.clients {
		fd := cl.fds[s]
		if fd < 0 {
			continue
		}
		if err := writeNonblock(fd, p); err != nil {
			delete(f.clients, cl)
			cl.closeFds()
			close(cl.dropped)
		}
	}
}

// end detaches every client: the container's output has ended.
func (f *fanout) end() {
	f.mu.Lock()
	defer f.mu.Unlock()
	if f.ended {
		return
	}
	f.ended = true
	for cl := range f.clients {
		delete(f.clients, cl)
		cl.closeFds()
	}
	close(f.done)
}

// writeNonblock writes all of p to the non-blocking fd, or fails (EAGAIN
// when the pipe is full).
func writeNonblock(fd int, p []byte) error {
	for len(p) > 0 {
		n, err := unix.Write(fd, p)
		if errors.Is(err, unix.EINTR) {
			continue
		}
		if err != nil {
			return err
		}
		p = p[n:]
	}
	return nil
}

// teeReader gives what it reads to the fanout too.
type teeReader struct {
	r      io.Reader
	fan    *fanout
	stream int
}

func (t *teeReader) Read(p []byte) (int, error) {
	n, err := t.r.Read(p)
	if n > 0 {
		t.fan.write(t.stream, p[:n])
	}
	return n, err
}

// attach serves one attach connection until the container's output ends,
// the client detaches (closes the connection) or is dropped. It owns fds
// (the client's pipe ends: stdin's read end, stdout's and stderr's write
// ends, those the request names, in that order). An error is returned only
// before the first answer (the caller answers it).
func (cs *containers) attach(conn *os.File, req *wire.Request, fds []int, lr *wire.LineReader) error {
	owned := fds
	defer func() { wire.CloseFds(owned) }()
	c, err := cs.table.get(req.Container)
	if err != nil {
		return err
	}
	if c.fan == nil {
		return errf(wire.CodeFailedPrecondition, "container %s was adopted by a restarted monitor: its output is not the monitor's, it cannot be attached", c.id)
	}
	if st := c.snapshot().Status; st == wire.StatusExited {
		return errf(wire.CodeFailedPrecondition, "container %s has exited", c.id)
	}
	if req.Stdin && c.stdin == nil {
		return errf(wire.CodeInvalidArgument, "container %s was created without stdin: attach without stdin, or create the container with stdin", c.id)
	}
	if req.Stdin && c.stdinWasClosed() {
		return errf(wire.CodeFailedPrecondition, "the stdin of container %s was closed after its first attach (stdin_once)", c.id)
	}
	in, cl := -1, &attachClient{fds: [2]int{-1, -1}, dropped: make(chan struct{})}
	n := 0
	for _, s := range []struct {
		want bool
		fd   *int
	}{{req.Stdin, &in}, {req.Stdout, &cl.fds[streamStdout]}, {req.Stderr, &cl.fds[streamStderr]}} {
		if s.want {
			if n < len(fds) {
				*s.fd = fds[n]
			}
			n++
		}
	}
	if n != len(fds) {
		return errf(wire.CodeInvalidArgument, "attach: %d files for %d streams", len(fds), n)
	}
	if c.console != nil && cl.fds[streamStderr] >= 0 {
		// A terminal has one output stream, stdout: the client's stderr
		// ends at once.
		unix.Close(cl.fds[streamStderr])
		cl.fds[streamStderr] = -1
	}
	for _, fd := range cl.fds {
		if fd >= 0 {
			if err := unix.SetNonblock(fd, true); err != nil {
				cl.closeFds()
				return err
			}
		}
	}
	var stdin *os.File
	if in >= 0 {
		if err := unix.SetNonblock(in, true); err != nil {
			cl.closeFds()
			return err
		}
		stdin = os.NewFile(uintptr(in), "attach-stdin")
	}
	owned = nil // cl and stdin have them now
	if stdin != nil {
		defer stdin.Close()
	}
	if !c.fan.add(cl) {
		cl.closeFds()
		return errf(wire.CodeFailedPrecondition, "container %s has exited", c.id)
	}
	defer c.fan.remove(cl)
	log := cs.log.with("container", c.id)
	log.Debugf("attached (stdin %v, stdout %v, stderr %v)", req.Stdin, req.Stdout, req.Stderr)
	writeResponse(conn, &wire.Response{})

	if stdin != nil {
		go func() {
			c.forwardStdin(stdin)
			if c.stdinOnce {
				c.closeStdin()
			}
		}()
	}
	gone := make(chan struct{})
	go func() {
		defer close(gone)
		c.readResizes(lr)
	}()
	var end *wire.Response
	select {
	case <-gone: // detached
	case <-cl.dropped:
		log.Warnf("attached client dropped: it did not keep up with the output")
		end = &wire.Response{Code: wire.CodeUnavailable, Error: "the attach client did not keep up with the container's output and was dropped"}
	case <-c.fan.done:
		end = &wire.Response{}
	}
	c.fan.remove(cl)
	if req.Stdin && c.stdinOnce {
		c.closeStdin()
	}
	if end != nil {
		writeResponse(conn, end)
	}
	log.Debugf("detached")
	return nil
}

// forwardStdin copies an attached client's stdin to the container's until
// the client's ends (or is closed when it detaches). A container that
// does not read its stdin blocks this goroutine only.
func (c *ctr) forwardStdin(in *os.File) {
	buf := make([]byte, 32<<10)
	for {
		n, err := in.Read(buf)
		if n > 0 {
			if _, werr := c.stdin.Write(buf[:n]); werr != nil {
				return
			}
		}
		if err != nil {
			return
		}
	}
}

// stdinWasClosed reports whether stdin_once closed the container's stdin.
func (c *ctr) stdinWasClosed() bool {
	c.mu.Lock()
	defer c.mu.Unlock()
	return c.stdinClosed
}

// closeStdin ends the container's stdin after the first attach with stdin
// (stdin_once): the pipe is closed, so the container reads EOF. A
// terminal stays open (it is the container's output too): it gets an
// end-of-file character (^D), which a program reading the terminal in
// canonical mode reads as EOF.
func (c *ctr) closeStdin() {
	c.mu.Lock()
	if c.stdinClosed {
		c.mu.Unlock()
		return
	}
	c.stdinClosed = true
	c.mu.Unlock()
	if c.console != nil && c.stdin == c.console {
		go func() { _, _ = c.console.Write([]byte{4}) }()
		return
	}
	c.stdin.Close()
}

// readResizes applies the client's resize lines to the container's
// terminal until the client closes the connection.
func (c *ctr) readResizes(lr *wire.LineReader) {
	for {
		line, fds, err := lr.ReadLine()
		wire.CloseFds(fds)
		if err != nil {
			return
		}
		var sz wire.Resize
		if json.Unmarshal(line, &sz) != nil || sz.Width == 0 || sz.Height == 0 || c.console == nil {
			continue
		}
		if fd, err := rawFd(c.console); err == nil {
			_ = unix.IoctlSetWinsize(fd, unix.TIOCSWINSZ, &unix.Winsize{Row: sz.Height, Col: sz.Width})
		}
	}
}
