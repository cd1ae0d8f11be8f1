package main

import (
	"bytes"
	"io"
	"os"
	"strings"
	"testing"
	"time"

	"golang.org/x/sys/unix"

	"github.com/noded-dev/noded/conmon-go/crilog"
)

// attachPipe returns a pipe whose write end is an attach client's stdout
// (non-blocking, as attach makes it).
func attachPipe(t *testing.T) (*os.File, *attachClient) {
	t.Helper()
	var p [2]int
	if err := unix.Pipe2(p[:], unix.O_CLOEXEC); err != nil {
		t.Fatal(err)
	}
	if err := unix.SetNonblock(p[1], true); err != nil {
		t.Fatal(err)
	}
	r := os.NewFile(uintptr(p[0]), "attach-r")
	t.Cleanup(func() { r.Close() })
	return r, &attachClient{fds: [2]int{p[1], -1}, dropped: make(chan struct{})}
}

func setPipeSize(t *testing.T, r *os.File, size int) {
	t.Helper()
	if _, err := unix.FcntlInt(r.Fd(), unix.F_SETPIPE_SZ, size); err != nil {
		t.Skipf("F_SETPIPE_SZ %d: %v", size, err)
	}
}

func TestFanoutNeverBlocks(t *testing.T) {
	f := newFanout()
	fastR, fast := attachPipe(t)
	slowR, slow := attachPipe(t) // never read
	goneR, gone := attachPipe(t)
	setPipeSize(t, fastR, 1<<20)
	setPipeSize(t, slowR, 4096)
	for _, cl := range []*attachClient{fast, slow, gone} {
		if !f.add(cl) {
			t.Fatal("add refused")
		}
	}
	goneR.Close() // the client's side is gone: EPIPE

	// The slow client's pipe fills and it is dropped, the gone one too,
	// without the writer ever waiting; the fast one gets everything.
	chunk := bytes.Repeat([]byte("x"), 8192)
	start := time.Now()
	for range 64 {
		f.write(streamStdout, chunk)
	}
	if d := time.Since(start); d > 2*time.Second {
		t.Errorf("writes took %s", d)
	}
	for name, cl := range map[string]*attachClient{"slow": slow, "gone": gone} {
		select {
		case <-cl.dropped:
		default:
			t.Errorf("%s client not dropped", name)
		}
	}
	select {
	case <-fast.dropped:
		t.Fatal("fast client dropped")
	default:
	}
	f.end()
	if b, _ := io.ReadAll(fastR); len(b) != 64*8192 {
		t.Errorf("fast client got %d bytes", len(b))
	}
	if f.add(fast) {
		t.Error("add accepted after the end of the output")
	}
	select {
	case <-f.done:
	default:
		t.Error("done not closed by end")
	}
}

func TestTeeReaderFeedsLogAndClients(t *testing.T) {
	dir := t.TempDir()
	w, err := crilog.Open(dir + "/log")
	if err != nil {
		t.Fatal(err)
	}
	defer w.Close()
	f := newFanout()
	r, cl := attachPipe(t)
	f.add(cl)
	cp := w.NewCopier(crilog.Stderr, false)
	if _, err := cp.ReadFrom(&teeReader{r: strings.NewReader("one\ntwo\n"), fan: f, stream: streamIndex(crilog.Stderr)}); err != nil {
		t.Fatal(err)
	}
	// stderr of a client that asked only for stdout: nothing.
	f.end()
	if b, _ := io.ReadAll(r); len(b) != 0 {
		t.Errorf("stdout client got stderr %q", b)
	}
	r2, cl2 := attachPipe(t)
	cl2.fds[streamStderr], cl2.fds[streamStdout] = cl2.fds[streamStdout], -1
	f2 := newFanout()
	f2.add(cl2)
	cp2 := w.NewCopier(crilog.Stderr, false)
	if _, err := cp2.ReadFrom(&teeReader{r: strings.NewReader("three\n"), fan: f2, stream: streamStderr}); err != nil {
		t.Fatal(err)
	}
	f2.end()
	if b, _ := io.ReadAll(r2); string(b) != "three\n" {
		t.Errorf("stderr client got %q", b)
	}
	log, _ := os.ReadFile(dir + "/log")
	if n := strings.Count(string(log), " stderr F "); n != 3 {
		t.Errorf("log has %d stderr entries:\n%s", n, log)
	}
}
