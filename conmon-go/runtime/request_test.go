package main

import (
	"errors"
	"os"
	"testing"
	"time"

	"golang.org/x/sys/unix"

	"github.com/noded-dev/noded/conmon-go/internal/helperapi"
)

func socketpair(t *testing.T) (int, int) {
	t.Helper()
	fds, err := unix.Socketpair(unix.AF_UNIX, unix.SOCK_STREAM|unix.SOCK_CLOEXEC, 0)
	if err != nil {
		t.Fatal(err)
	}
	t.Cleanup(func() { unix.Close(fds[0]); unix.Close(fds[1]) })
	return fds[0], fds[1]
}

func TestReadRequest(t *testing.T) {
	t.Run("body and files", func(t *testing.T) {
		mon, helper := socketpair(t)
		r, w, err := os.Pipe()
		if err != nil {
			t.Fatal(err)
		}
		defer r.Close()
		defer w.Close()
		body := []byte(`{"op":"create","stdout_fd":4,"stderr_fd":3}`)
		if err := unix.Sendmsg(mon, body[:10], unix.UnixRights(int(r.Fd()), int(w.Fd())), nil, 0); err != nil {
			t.Fatal(err)
		}
		if _, err := unix.Write(mon, body[10:]); err != nil {
			t.Fatal(err)
		}
		if err := unix.Shutdown(mon, unix.SHUT_WR); err != nil {
			t.Fatal(err)
		}
		waited := false
		got, fds, legacy, err := readRequest(helper, func() { waited = true })
		if waited {
			t.Error("whileWaiting ran with the request there already")
		}
		if err != nil || string(got) != string(body) || len(fds) != 2 || legacy {
			t.Fatalf("readRequest: %q %v legacy %v, %v", got, fds, legacy, err)
		}
		defer unix.Close(fds[0])
		defer unix.Close(fds[1])
		// fds[1] is the pipe's write end: what goes in comes out of r.
		if _, err := unix.Write(fds[1], []byte("x")); err != nil {
			t.Fatalf("received descriptor: %v", err)
		}
		b := make([]byte, 1)
		if n, _ := r.Read(b); n != 1 || b[0] != 'x' {
			t.Fatalf("read %q through the received descriptor", b[:n])
		}
	})
	t.Run("nothing comes: a warm helper gives up", func(t *testing.T) {
		_, helper := socketpair(t)
		old := warmIdle
		warmIdle = 50 * time.Millisecond
		defer func() { warmIdle = old }()
		waited := false
		if _, _, _, err := readRequest(helper, func() { waited = true }); !errors.Is(err, errNoRequest) {
			t.Fatalf("want errNoRequest, got %v", err)
		}
		if !waited {
			t.Error("whileWaiting did not run while nothing came")
		}
	})
}

// A monitor started before an upgrade writes its request on a pipe.
func TestReadRequestFromAnOldMonitor(t *testing.T) {
	r, w, err := os.Pipe()
	if err != nil {
		t.Fatal(err)
	}
	defer r.Close()
	body := `{"version":1,"op":"kill","signal":9}`
	if _, err := w.WriteString(body); err != nil {
		t.Fatal(err)
	}
	w.Close()
	got, fds, legacy, err := readRequest(int(r.Fd()), nil)
	if err != nil || string(got) != body || len(fds) != 0 || !legacy {
		t.Fatalf("readRequest from a pipe: %q %v legacy %v, %v", got, fds, legacy, err)
	}
}

func TestMapFiles(t *testing.T) {
	tests := []struct {
		desc    string
		req     helperapi.Request
		files   []int
		want    [4]int // stdin, stdout, stderr, console
		wantErr bool
	}{
		{desc: "create with pipes", req: helperapi.Request{StdinFd: -1, StdoutFd: 3, StderrFd: 4, ConsoleFd: -1},
			files: []int{17, 18}, want: [4]int{-1, 17, 18, -1}},
		{desc: "tty: console socket only", req: helperapi.Request{StdinFd: -1, StdoutFd: -1, StderrFd: -1, ConsoleFd: 3},
			files: []int{9}, want: [4]int{-1, -1, -1, 9}},
		{desc: "kill: no files, fields unset", req: helperapi.Request{}, want: [4]int{0, 0, 0, 0}},
		{desc: "names a file not sent", req: helperapi.Request{StdoutFd: 5}, files: []int{7}, wantErr: true},
	}
	for _, tt := range tests {
		t.Run(tt.desc, func(t *testing.T) {
			req := tt.req
			err := mapFiles(&req, tt.files)
			if (err != nil) != tt.wantErr {
				t.Fatalf("err %v, want error %v", err, tt.wantErr)
			}
			if got := [4]int{req.StdinFd, req.StdoutFd, req.StderrFd, req.ConsoleFd}; !tt.wantErr && got != tt.want {
				t.Fatalf("got %v, want %v", got, tt.want)
			}
		})
	}
}
