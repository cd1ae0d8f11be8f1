package main

import (
	"errors"
	"os"

	"golang.org/x/sys/unix"

	"github.com/noded-dev/noded/internal/oci/wire"
)

// The monitor's unix socket, without the net package: net links the cgo
// DNS resolver, which makes the binary dynamically linked and bigger.
// Sockets are non-blocking fds wrapped in os.File, so reads, writes and
// accepts park goroutines in the runtime's poller (no thread per connection)
// and deadlines work.

// listenUnix binds and listens on path (mode 0600).
func listenUnix(path string) (*os.File, error) {
	fd, err := unix.Socket(unix.AF_UNIX, unix.SOCK_STREAM|unix.SOCK_NONBLOCK|unix.SOCK_CLOEXEC, 0)
	if err != nil {
		return nil, os.NewSyscallError("socket", err)
	}
	old := unix.Umask(0o077)
	err = unix.Bind(fd, &unix.SockaddrUnix{Name: path})
	unix.Umask(old)
	if err != nil {
		unix.Close(fd)
		return nil, &os.PathError{Op: "bind", Path: path, Err: err}
	}
	if err := unix.Listen(fd, 64); err != nil {
		unix.Close(fd)
		return nil, os.NewSyscallError("listen", err)
	}
	return os.NewFile(uintptr(fd), path), nil
}

// accept waits for a connection; it fails once l is closed.
func accept(l *os.File) (*os.File, error) {
	rc, err := l.SyscallConn()
	if err != nil {
		return nil, err
	}
	var nfd int
	var aerr error
	err = rc.Read(func(fd uintptr) bool {
		nfd, _, aerr = unix.Accept4(int(fd), unix.SOCK_NONBLOCK|unix.SOCK_CLOEXEC)
		return !errors.Is(aerr, unix.EAGAIN)
	})
	if err != nil {
		return nil, err
	}
	if aerr != nil {
		return nil, os.NewSyscallError("accept4", aerr)
	}
	return os.NewFile(uintptr(nfd), "conn"), nil
}

// recvFd receives one file descriptor sent with SCM_RIGHTS (as
// libcontainer sends the console master) and returns it non-blocking.
func recvFd(sock *os.File) (*os.File, error) {
	rc, err := sock.SyscallConn()
	if err != nil {
		return nil, err
	}
	buf := make([]byte, 4096)
	oob := make([]byte, unix.CmsgSpace(4))
	var oobn int
	var rerr error
	err = rc.Read(func(fd uintptr) bool {
		_, oobn, _, _, rerr = unix.Recvmsg(int(fd), buf, oob, unix.MSG_CMSG_CLOEXEC)
		return !errors.Is(rerr, unix.EAGAIN)
	})
	if err != nil {
		return nil, err
	}
	if rerr != nil {
		return nil, os.NewSyscallError("recvmsg", rerr)
	}
	fds, err := wire.ParseRights(oob[:oobn])
	if err != nil {
		return nil, err
	}
	if len(fds) != 1 {
		for _, fd := range fds {
			unix.Close(fd)
		}
		return nil, errors.New("recvmsg: expected one file descriptor")
	}
	if err := unix.SetNonblock(fds[0], true); err != nil {
		unix.Close(fds[0])
		return nil, err
	}
	return os.NewFile(uintptr(fds[0]), "console"), nil
}

// newConsoleSocket returns a socket pair on which libcontainer sends the
// master of a pty it made: ours (non-blocking, so that receiving parks no
// thread) and the child's end, for the helper.
func newConsoleSocket() (ours, child *os.File, _ error) {
	fds, err := unix.Socketpair(unix.AF_UNIX, unix.SOCK_STREAM|unix.SOCK_CLOEXEC, 0)
	if err != nil {
		return nil, nil, os.NewSyscallError("socketpair", err)
	}
	if err := unix.SetNonblock(fds[0], true); err != nil {
		unix.Close(fds[0])
		unix.Close(fds[1])
		return nil, nil, err
	}
	return os.NewFile(uintptr(fds[0]), "console-socket"), os.NewFile(uintptr(fds[1]), "console-socket-child"), nil
}

// rawFd returns f's descriptor without making it blocking (File.Fd would,
// and the mode is shared with whoever else holds the file).
func rawFd(f *os.File) (int, error) {
	rc, err := f.SyscallConn()
	if err != nil {
		return -1, err
	}
	fd := -1
	if err := rc.Control(func(u uintptr) { fd = int(u) }); err != nil {
		return -1, err
	}
	return fd, nil
}

// newConnReader reads the lines of a connection, with the descriptors
// sent along (wire.LineReader), parking in the poller.
func newConnReader(conn *os.File) *wire.LineReader {
	return &wire.LineReader{Recv: func(p, oob []byte) (int, int, error) {
		rc, err := conn.SyscallConn()
		if err != nil {
			return 0, 0, err
		}
		var n, oobn, flags int
		var rerr error
		err = rc.Read(func(fd uintptr) bool {
			n, oobn, flags, _, rerr = unix.Recvmsg(int(fd), p, oob, unix.MSG_CMSG_CLOEXEC)
			return !errors.Is(rerr, unix.EAGAIN)
		})
		if err == nil {
			err = rerr
		}
		if err == nil && flags&unix.MSG_CTRUNC != 0 {
			err = errors.New("recvmsg: control data truncated")
		}
		return n, oobn, err
	}}
}

// sendLine writes b on the connection, with fds (SCM_RIGHTS) attached to
// its first bytes.
func sendLine(conn *os.File, b []byte, fds []int) error {
	rc, err := conn.SyscallConn()
	if err != nil {
		return err
	}
	var oob []byte
	if len(fds) > 0 {
		oob = unix.UnixRights(fds...)
	}
	for len(b) > 0 {
		var n int
		var werr error
		err := rc.Write(func(fd uintptr) bool {
			n, werr = unix.SendmsgN(int(fd), b, oob, nil, unix.MSG_NOSIGNAL)
			return !errors.Is(werr, unix.EAGAIN)
		})
		if err == nil {
			err = werr
		}
		if errors.Is(err, unix.EINTR) {
			continue
		}
		if err != nil {
			return err
		}
		b, oob = b[n:], nil
	}
	return nil
}

// watchClose returns a channel closed when the client closes its end of
// the connection (what it sends meanwhile is ignored).
func watchClose(conn *os.File) <-chan struct{} {
	gone := make(chan struct{})
	go func() {
		defer close(gone)
		var b [256]byte
		for {
			if _, err := conn.Read(b[:]); err != nil {
				return
			}
		}
	}()
	return gone
}
