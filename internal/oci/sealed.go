package oci

import (
	"errors"
	"fmt"
	"io"
	"os"

	"golang.org/x/sys/unix"
)

// The monitors start their libcontainer helpers from one sealed copy of
// conmon-go-runtime that noded makes when it starts.
//
// Why: a container's init is started from the helper's own binary, and
// a binary a container could reach through /proc/<init>/exe must be one
// it cannot rewrite (CVE-2019-5736). libcontainer therefore seals a copy
// of /proc/self/exe for every process it starts (a private overlay mount
// of the binary, made and torn down at every container create and every
// exec; a copy into a memfd where overlayfs cannot do it), unless
// /proc/self/exe already is a sealed memfd. So the helpers run from one:
// made once, inherited by each monitor (--runtime-fd), shared by every
// helper they start. Measured, it saves CPU rather than latency (~1 ms
// of machine CPU per ExecSync, conmon-go/README.md). It costs the size of
// the binary (~7 MiB of shared memory) once per noded start, kept while a
// monitor of that start lives.
//
// The memfd is noded's and closes with the Runtime; monitors keep their
// inherited descriptor (see conmon-go's --runtime-fd).

// baseSeals are the seals libcontainer requires of a cloned binary
// (exeseal.IsCloned): no writes, no size change, no more seal changes.
const baseSeals = unix.F_SEAL_SEAL | unix.F_SEAL_SHRINK | unix.F_SEAL_GROW | unix.F_SEAL_WRITE

// sealedCopy copies the executable at path into a new sealed memfd.
func sealedCopy(path string) (_ *os.File, retErr error) {
	src, err := os.Open(path)
	if err != nil {
		return nil, err
	}
	defer src.Close()
	fi, err := src.Stat()
	if err != nil {
		return nil, err
	}
	const flags = unix.MFD_CLOEXEC | unix.MFD_ALLOW_SEALING
	// MFD_EXEC (Linux 6.3) says the memfd is meant to be executed, which
	// a host with vm.memfd_noexec=1 requires; older kernels refuse the
	// flag and allow execution anyway.
	fd, err := unix.MemfdCreate("conmon-go-runtime", flags|unix.MFD_EXEC)
	if errors.Is(err, unix.EINVAL) {
		fd, err = unix.MemfdCreate("conmon-go-runtime", flags)
	}
	if err != nil {
		return nil, fmt.Errorf("memfd_create: %w", err)
	}
	f := os.NewFile(uintptr(fd), "memfd:conmon-go-runtime")
	defer func() {
		if retErr != nil {
			f.Close()
		}
	}()
	n, err := io.Copy(f, src)
	if err != nil {
		return nil, fmt.Errorf("copying %s: %w", path, err)
	}
	if n != fi.Size() {
		return nil, fmt.Errorf("copying %s: %d of %d bytes", path, n, fi.Size())
	}
	// F_SEAL_EXEC (Linux 6.3) also freezes the mode bits; best effort.
	_, _ = unix.FcntlInt(f.Fd(), unix.F_ADD_SEALS, unix.F_SEAL_EXEC)
	if _, err := unix.FcntlInt(f.Fd(), unix.F_ADD_SEALS, baseSeals); err != nil {
		return nil, fmt.Errorf("sealing the copy of %s: %w", path, err)
	}
	return f, nil
}
