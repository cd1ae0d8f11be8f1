package main

import (
	"errors"
	"fmt"

	"golang.org/x/sys/unix"
)

// sealedSeals are the seals libcontainer requires of a binary it runs a
// container's init from without copying it first (exeseal.IsCloned).
const sealedSeals = unix.F_SEAL_SEAL | unix.F_SEAL_SHRINK | unix.F_SEAL_GROW | unix.F_SEAL_WRITE

// helperExe returns the path the helpers are started from: the sealed
// copy of conmon-go-runtime noded passed (--runtime-fd), through
// /proc/self/fd, so that a helper's /proc/self/exe is a sealed memfd and
// libcontainer need not seal a copy of it for every process it starts
// (internal/oci/sealed.go says why that matters); else the --runtime
// path. The descriptor is kept open for the monitor's life, close-on-exec:
// a helper resolves the path while it is still open, before its exec
// closes it.
func helperExe(o *options, log *logger) string {
	fd := o.runtimeFd
	if fd < 0 {
		return o.runtime
	}
	seals, err := unix.FcntlInt(uintptr(fd), unix.F_GET_SEALS, 0)
	if err != nil || seals&sealedSeals != sealedSeals {
		log.Warnf("--runtime-fd %d is not a sealed memfd (seals %#x, %v): helpers start from %s", fd, seals, err, o.runtime)
		if !errors.Is(err, unix.EBADF) {
			unix.Close(fd)
		}
		return o.runtime
	}
	unix.CloseOnExec(fd)
	return fmt.Sprintf("/proc/self/fd/%d", fd)
}
