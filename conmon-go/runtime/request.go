package main

import (
	"errors"
	"fmt"
	"time"

	"golang.org/x/sys/unix"

	"github.com/noded-dev/noded/conmon-go/internal/helperapi"
	"github.com/noded-dev/noded/internal/oci/wire"
)

// warmIdle is helperapi.WarmIdle (a variable for tests).
var warmIdle = helperapi.WarmIdle

// errNoRequest: the monitor sent nothing within warmIdle.
var errNoRequest = errors.New("no request")

// readRequest reads the request from the unix socket fd until the monitor
// shuts its end, with the descriptors of the files sent along
// (SCM_RIGHTS; they are wrapped in os.Files once, where they are used).
// It waits at most warmIdle for the first byte. When nothing is there yet
// (a warm helper, started ahead of its request), it runs whileWaiting
// first, if not nil.
//
// legacy is true when fd is not a socket but a pipe: a monitor started
// before an upgrade speaks protocol 1 (helperapi.VersionPipe), where the
// request comes on stdin and its files are inherited as fds 3, 4, ….
func readRequest(fd int, whileWaiting func()) (body []byte, files []int, legacy bool, err error) {
	var st unix.Stat_t
	if err := unix.Fstat(fd, &st); err != nil {
		return nil, nil, false, fmt.Errorf("request: %w", err)
	}
	if st.Mode&unix.S_IFMT != unix.S_IFSOCK {
		body, err := readAll(fd)
		return body, nil, true, err
	}
	body, files, err = readSocket(fd, whileWaiting)
	return body, files, false, err
}

// readAll reads fd to its end (at most wire.MaxRequestSize).
func readAll(fd int) ([]byte, error) {
	var body []byte
	buf := make([]byte, 4096)
	for {
		n, err := unix.Read(fd, buf)
		switch {
		case err == unix.EINTR:
			continue
		case err != nil:
			return nil, fmt.Errorf("reading the request: %w", err)
		case n == 0:
			return body, nil
		case len(body)+n > wire.MaxRequestSize:
			return nil, errors.New("request too large")
		}
		body = append(body, buf[:n]...)
	}
}

func readSocket(fd int, whileWaiting func()) ([]byte, []int, error) {
	pfd := []unix.PollFd{{Fd: int32(fd), Events: unix.POLLIN}}
	if whileWaiting != nil {
		if n, err := unix.Poll(pfd, 0); n == 0 && err == nil {
			whileWaiting()
		}
	}
	deadline := time.Now().Add(warmIdle)
	for {
		n, err := unix.Poll(pfd, int(time.Until(deadline).Milliseconds()))
		if err == unix.EINTR {
			continue
		}
		if err != nil {
			return nil, nil, fmt.Errorf("waiting for the request: %w", err)
		}
		if n == 0 {
			return nil, nil, errNoRequest
		}
		break
	}
	var (
		body  []byte
		files []int
	)
	buf := make([]byte, 4096)
	oob := make([]byte, unix.CmsgSpace(16*4))
	for {
		n, oobn, _, _, err := unix.Recvmsg(fd, buf, oob, unix.MSG_CMSG_CLOEXEC)
		if err == unix.EINTR {
			continue
		}
		if err != nil {
			return nil, files, fmt.Errorf("reading the request: %w", err)
		}
		if oobn > 0 {
			got, err := parseRights(oob[:oobn])
			if err != nil {
				return nil, files, err
			}
			files = append(files, got...)
		}
		if n == 0 {
			return body, files, nil
		}
		if len(body)+n > wire.MaxRequestSize {
			return nil, files, errors.New("request too large")
		}
		body = append(body, buf[:n]...)
	}
}

func parseRights(oob []byte) ([]int, error) {
	fds, err := wire.ParseRights(oob)
	if err != nil {
		return nil, fmt.Errorf("request control message: %w", err)
	}
	return fds, nil
}

// mapFiles turns the request's fd fields (3 + index among the files sent)
// into the descriptors the files were received as. Fields below 3 are not
// files (-1, or unset in operations that take none).
func mapFiles(req *helperapi.Request, files []int) error {
	for _, p := range []*int{&req.StdinFd, &req.StdoutFd, &req.StderrFd, &req.ConsoleFd} {
		if *p < 3 {
			continue
		}
		i := *p - 3
		if i >= len(files) {
			return helperapi.Errorf(wire.CodeInvalidArgument, "request names file %d of %d", *p, len(files))
		}
		*p = files[i]
	}
	return nil
}
