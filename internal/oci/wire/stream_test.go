package wire

import (
	"errors"
	"os"
	"strings"
	"syscall"
	"testing"
)

// socketPair returns two connected unix stream sockets and a LineReader on
// the second.
func socketPair(t *testing.T) (int, *LineReader) {
	t.Helper()
	fds, err := syscall.Socketpair(syscall.AF_UNIX, syscall.SOCK_STREAM|syscall.SOCK_CLOEXEC, 0)
	if err != nil {
		t.Fatal(err)
	}
	t.Cleanup(func() { syscall.Close(fds[0]); syscall.Close(fds[1]) })
	lr := &LineReader{Recv: func(p, oob []byte) (int, int, error) {
		n, oobn, _, _, err := syscall.Recvmsg(fds[1], p, oob, syscall.MSG_CMSG_CLOEXEC)
		return n, oobn, err
	}}
	return fds[0], lr
}

func TestLineReaderPassesFds(t *testing.T) {
	w, lr := socketPair(t)
	r, pw, err := os.Pipe()
	if err != nil {
		t.Fatal(err)
	}
	defer r.Close()
	defer pw.Close()
	// A line with a descriptor, sent in one sendmsg, then two lines in
	// one write and a line in two pieces.
	if err := syscall.Sendmsg(w, []byte(`{"op":"attach"}`+"\n"), syscall.UnixRights(int(pw.Fd())), nil, 0); err != nil {
		t.Fatal(err)
	}
	if _, err := syscall.Write(w, []byte("{\"width\":80,\"height\":24}\nsecond\nthi")); err != nil {
		t.Fatal(err)
	}
	if _, err := syscall.Write(w, []byte("rd\n")); err != nil {
		t.Fatal(err)
	}
	line, fds, err := lr.ReadLine()
	if err != nil || string(line) != `{"op":"attach"}` || len(fds) != 1 {
		t.Fatalf("first line %q %v %v", line, fds, err)
	}
	// The descriptor is the pipe's write end.
	f := os.NewFile(uintptr(fds[0]), "passed")
	if _, err := f.Write([]byte("x")); err != nil {
		t.Fatal(err)
	}
	f.Close()
	b := make([]byte, 1)
	if n, err := r.Read(b); n != 1 || err != nil || b[0] != 'x' {
		t.Fatalf("read through the passed descriptor: %d %v", n, err)
	}
	for _, want := range []string{`{"width":80,"height":24}`, "second", "third"} {
		line, fds, err := lr.ReadLine()
		if err != nil || string(line) != want || len(fds) != 0 {
			t.Fatalf("line %q %v %v, want %q", line, fds, err, want)
		}
	}
	if _, err := syscall.Write(w, []byte("cut")); err != nil {
		t.Fatal(err)
	}
	_ = syscall.Shutdown(w, syscall.SHUT_WR)
	if _, _, err := lr.ReadLine(); !errors.Is(err, ErrUnexpectedEnd) {
		t.Fatalf("end inside a line: %v", err)
	}
}

func TestLineReaderEndAndLimits(t *testing.T) {
	w, lr := socketPair(t)
	_ = syscall.Shutdown(w, syscall.SHUT_WR)
	if _, _, err := lr.ReadLine(); !errors.Is(err, ErrEnd) {
		t.Fatalf("end between lines: %v", err)
	}

	w, lr = socketPair(t)
	lr.Max = 10
	if _, err := syscall.Write(w, []byte(strings.Repeat("a", 100))); err != nil {
		t.Fatal(err)
	}
	if _, _, err := lr.ReadLine(); !errors.Is(err, ErrLineTooLong) {
		t.Fatalf("long line: %v", err)
	}

	// More descriptors than a line may carry: refused, and none leaks to
	// the caller unseen (they are returned to be closed).
	w, lr = socketPair(t)
	r, pw, err := os.Pipe()
	if err != nil {
		t.Fatal(err)
	}
	defer r.Close()
	defer pw.Close()
	many := make([]int, MaxStreamFds+1)
	for i := range many {
		many[i] = int(pw.Fd())
	}
	if err := syscall.Sendmsg(w, []byte("x\n"), syscall.UnixRights(many...), nil, 0); err != nil {
		t.Fatal(err)
	}
	_, fds, err := lr.ReadLine()
	CloseFds(fds)
	if err == nil {
		t.Fatalf("a line with %d descriptors was accepted", len(many))
	}
}
