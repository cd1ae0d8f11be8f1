package main

import (
	"fmt"
	"os"
	"testing"

	"golang.org/x/sys/unix"
)

func TestHelperExe(t *testing.T) {
	memfd := func(t *testing.T, seals int) int {
		t.Helper()
		fd, err := unix.MemfdCreate("test", unix.MFD_ALLOW_SEALING)
		if err != nil {
			t.Fatal(err)
		}
		if seals != 0 {
			if _, err := unix.FcntlInt(uintptr(fd), unix.F_ADD_SEALS, seals); err != nil {
				t.Fatal(err)
			}
		}
		return fd
	}
	pipe := func(t *testing.T) int {
		t.Helper()
		r, w, err := os.Pipe()
		if err != nil {
			t.Fatal(err)
		}
		t.Cleanup(func() { w.Close() })
		fd, err := unix.Dup(int(r.Fd()))
		r.Close()
		if err != nil {
			t.Fatal(err)
		}
		return fd
	}
	for _, tc := range []struct {
		desc     string
		fd       func(t *testing.T) int
		wantFd   bool // the helpers start from the descriptor
		wantOpen bool // and it stays open (else it was closed)
	}{
		{desc: "no descriptor", fd: func(*testing.T) int { return -1 }},
		{desc: "sealed memfd", fd: func(t *testing.T) int { return memfd(t, sealedSeals) }, wantFd: true, wantOpen: true},
		{desc: "memfd without the write seal", fd: func(t *testing.T) int {
			return memfd(t, unix.F_SEAL_SEAL|unix.F_SEAL_SHRINK|unix.F_SEAL_GROW)
		}},
		{desc: "not a memfd", fd: pipe},
		{desc: "not open", fd: func(*testing.T) int { return 1000 }},
	} {
		t.Run(tc.desc, func(t *testing.T) {
			fd := tc.fd(t)
			o := &options{runtime: "/usr/libexec/conmon-go-runtime", runtimeFd: fd}
			got := helperExe(o, newLogger("error"))
			want := o.runtime
			if tc.wantFd {
				want = fmt.Sprintf("/proc/self/fd/%d", fd)
			}
			if got != want {
				t.Fatalf("helperExe = %q, want %q", got, want)
			}
			if fd < 0 || fd == 1000 {
				return
			}
			flags, err := unix.FcntlInt(uintptr(fd), unix.F_GETFD, 0)
			if open := err == nil; open != tc.wantOpen {
				t.Fatalf("descriptor open: %v, want %v", open, tc.wantOpen)
			}
			if tc.wantOpen {
				if flags&unix.FD_CLOEXEC == 0 {
					t.Error("the kept descriptor is not close-on-exec")
				}
				unix.Close(fd)
			}
		})
	}
}
