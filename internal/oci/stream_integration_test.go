package oci

import (
	"bytes"
	"context"
	"errors"
	"fmt"
	"io"
	"strings"
	"sync"
	"syscall"
	"testing"
	"time"

	"github.com/noded-dev/noded/internal/errdefs"
)

// The streaming exec and attach subtests of TestIntegration (real
// monitors; see integration_test.go).

// syncBuffer is a bytes.Buffer safe for a writer and a reader at once.
type syncBuffer struct {
	mu sync.Mutex
	b  bytes.Buffer
}

func (s *syncBuffer) Write(p []byte) (int, error) {
	s.mu.Lock()
	defer s.mu.Unlock()
	return s.b.Write(p)
}

func (s *syncBuffer) String() string {
	s.mu.Lock()
	defer s.mu.Unlock()
	return s.b.String()
}

// testStreamExec runs streaming execs in the running container ctr, whose
// cgroup is cg (relative to the pids hierarchy; only its init runs there).
func testStreamExec(t *testing.T, e *testEnv, ctr ContainerID, cg string) {
	ctx, cancel := context.WithTimeout(context.Background(), time.Minute)
	defer cancel()
	onlyInit := func() bool {
		p, err := cgroupProcs("pids", cg)
		return err == nil && len(p) == 1
	}

	t.Run("stdin to stdout", func(t *testing.T) {
		var out bytes.Buffer
		code, err := e.rt.Exec(ctx, e.pod, ctr, []string{"cat"}, Stdio{In: strings.NewReader("hello\nworld\n"), Out: &out})
		if err != nil || code != 0 || out.String() != "hello\nworld\n" {
			t.Fatalf("cat: %d %v %q", code, err, out.String())
		}
	})
	t.Run("stderr apart", func(t *testing.T) {
		var out, errOut bytes.Buffer
		code, err := e.rt.Exec(ctx, e.pod, ctr, []string{"sh", "-c", "echo out; echo err >&2; [ -t 0 ] || echo no-tty"}, Stdio{Out: &out, Err: &errOut})
		if err != nil || code != 0 || out.String() != "out\nno-tty\n" || errOut.String() != "err\n" {
			t.Fatalf("got %d %v %q %q", code, err, out.String(), errOut.String())
		}
		// A stream not asked for is /dev/null.
		code, err = e.rt.Exec(ctx, e.pod, ctr, []string{"sh", "-c", "echo lost; echo err >&2"}, Stdio{Err: &errOut})
		if err != nil || code != 0 {
			t.Fatalf("without stdout: %d %v", code, err)
		}
	})
	t.Run("exit code", func(t *testing.T) {
		code, err := e.rt.Exec(ctx, e.pod, ctr, []string{"sh", "-c", "exit 3"}, Stdio{})
		if err != nil || code != 3 {
			t.Fatalf("got %d %v, want 3", code, err)
		}
	})
	t.Run("tty", func(t *testing.T) {
		var out syncBuffer
		code, err := e.rt.Exec(ctx, e.pod, ctr, []string{"tty"}, Stdio{Out: &out, Tty: true})
		if err != nil || code != 0 || !strings.HasPrefix(out.String(), "/dev/pts/") {
			t.Fatalf("tty: %d %v %q", code, err, out.String())
		}
		// The size set on this side's pty master is what the process sees.
		sizes := make(chan TermSize, 1)
		sizes <- TermSize{Width: 100, Height: 40}
		var out2 syncBuffer
		// Until the size arrives the terminal is 0x0, which busybox's
		// stty reports as an error: quiet while polling.
		poll := `while [ "$(stty size 2>/dev/null)" != "40 100" ]; do sleep 0.05; done; echo resized; stty size`
		code, err = e.rt.Exec(ctx, e.pod, ctr, []string{"sh", "-c", poll}, Stdio{Out: &out2, Tty: true, Resize: sizes})
		if err != nil || code != 0 || out2.String() != "resized\r\n40 100\r\n" {
			t.Fatalf("resize: %d %v %q", code, err, out2.String())
		}
		// Input goes through the terminal (echoed, as a terminal does).
		pr, pw := io.Pipe()
		var out3 syncBuffer
		done := make(chan error, 1)
		go func() {
			_, err := e.rt.Exec(ctx, e.pod, ctr, []string{"sh", "-c", "read x; echo got-$x"}, Stdio{In: pr, Out: &out3, Tty: true})
			done <- err
		}()
		if _, err := pw.Write([]byte("abc\n")); err != nil {
			t.Fatal(err)
		}
		if err := <-done; err != nil {
			t.Fatal(err)
		}
		pw.Close()
		if !strings.Contains(out3.String(), "got-abc\r\n") {
			t.Fatalf("tty input: %q", out3.String())
		}
	})
	t.Run("client gone", func(t *testing.T) {
		cctx, ccancel := context.WithCancel(ctx)
		var out syncBuffer
		done := make(chan error, 1)
		go func() {
			_, err := e.rt.Exec(cctx, e.pod, ctr, []string{"sh", "-c", "echo started; exec sleep 1000"}, Stdio{Out: &out})
			done <- err
		}()
		waitFor(t, func() bool { return out.String() == "started\n" })
		if onlyInit() {
			t.Fatal("the exec'd process is not in the container's cgroup")
		}
		ccancel()
		select {
		case err := <-done:
			if !errors.Is(err, context.Canceled) {
				t.Fatalf("exec after cancel: %v", err)
			}
		case <-time.After(5 * time.Second):
			t.Fatal("exec did not return after its context ended")
		}
		// The monitor killed the process: nothing is left in the container.
		waitFor(t, onlyInit)
	})
	t.Run("errors", func(t *testing.T) {
		if _, err := e.rt.Exec(ctx, e.pod, "nope", []string{"true"}, Stdio{}); !errdefs.IsNotFound(err) {
			t.Errorf("exec in an unknown container: %v", err)
		}
		if _, err := e.rt.Exec(ctx, e.pod, ctr, nil, Stdio{}); !errdefs.IsInvalidArgument(err) {
			t.Errorf("empty command: %v", err)
		}
		if _, err := e.rt.Exec(ctx, e.pod, ctr, []string{"/nope"}, Stdio{}); err == nil {
			t.Errorf("exec of a missing program succeeded")
		}
		e.run("stopped", e.spec("stopped", "true"))
		e.wait("stopped", 10*time.Second)
		if _, err := e.rt.Exec(ctx, e.pod, "stopped", []string{"true"}, Stdio{}); !errors.Is(err, errdefs.ErrFailedPrecondition) {
			t.Errorf("exec in a stopped container: %v", err)
		}
		e.delete("stopped")
	})
	t.Run("does not block stop and remove", func(t *testing.T) {
		// A running exec holds no monitor lock: the container can be
		// stopped and removed meanwhile, which ends the exec.
		e.run("execstop", e.spec("execstop", "sleep", "1000"))
		var out syncBuffer
		done := make(chan error, 1)
		go func() {
			code, err := e.rt.Exec(ctx, e.pod, "execstop", []string{"sh", "-c", "echo started; exec sleep 1000"}, Stdio{Out: &out})
			if err == nil && code != 137 {
				err = fmt.Errorf("exit code %d", code)
			}
			done <- err
		}()
		waitFor(t, func() bool { return out.String() == "started\n" })
		start := time.Now()
		if err := e.rt.Kill(ctx, e.pod, "execstop", syscall.SIGKILL); err != nil {
			t.Fatal(err)
		}
		e.wait("execstop", 10*time.Second)
		e.delete("execstop")
		if d := time.Since(start); d > 5*time.Second {
			t.Errorf("stop and remove took %s with an exec running", d)
		}
		select {
		case err := <-done:
			if err != nil {
				t.Errorf("exec ended with %v, want exit code 137", err)
			}
		case <-time.After(10 * time.Second):
			t.Fatal("exec did not end with its container")
		}
	})
}

// testAttach attaches to containers of the pod; joiner runs without stdin.
func testAttach(t *testing.T, e *testEnv, joiner ContainerID) {
	ctx, cancel := context.WithTimeout(context.Background(), time.Minute)
	defer cancel()

	t.Run("output", func(t *testing.T) {
		_, logPath := e.run("ticker2", e.spec("ticker2", "sh", "-c", "i=0; while true; do echo tick $i; echo err $i >&2; i=$((i+1)); sleep 0.05; done"))
		// Another Runtime (as after a restart of noded) attaches as well.
		rt2, err := New(e.opts)
		if err != nil {
			t.Fatal(err)
		}
		actx, acancel := context.WithCancel(ctx)
		var out, errOut syncBuffer
		done := make(chan error, 1)
		go func() { done <- rt2.Attach(actx, e.pod, "ticker2", Stdio{Out: &out, Err: &errOut}) }()
		waitFor(t, func() bool {
			return strings.Count(out.String(), "\n") >= 5 && strings.Count(errOut.String(), "\n") >= 5
		})
		acancel()
		if err := <-done; !errors.Is(err, context.Canceled) {
			t.Fatalf("attach after cancel: %v", err)
		}
		lines := strings.Split(strings.TrimSpace(out.String()), "\n")
		for _, l := range lines {
			if !strings.HasPrefix(l, "tick ") {
				t.Fatalf("stdout line %q", l)
			}
		}
		for _, l := range strings.Split(strings.TrimSpace(errOut.String()), "\n") {
			if !strings.HasPrefix(l, "err ") {
				t.Fatalf("stderr line %q", l)
			}
		}
		// The log got them too, and still gets the output after detach.
		last := "stdout F " + lines[len(lines)-1]
		waitFor(t, func() bool {
			got := logEntries(t, logPath)
			for i, l := range got {
				if l == last {
					return i < len(got)-4
				}
			}
			return false
		})
		// Attached until the container ends: nil then.
		var out2 syncBuffer
		done2 := make(chan error, 1)
		go func() { done2 <- e.rt.Attach(ctx, e.pod, "ticker2", Stdio{Out: &out2}) }()
		waitFor(t, func() bool { return strings.Contains(out2.String(), "tick") })
		if err := e.rt.Kill(ctx, e.pod, "ticker2", syscall.SIGKILL); err != nil {
			t.Fatal(err)
		}
		select {
		case err := <-done2:
			if err != nil {
				t.Fatalf("attach at the container's end: %v", err)
			}
		case <-time.After(10 * time.Second):
			t.Fatal("attach did not end with its container")
		}
		e.wait("ticker2", 10*time.Second)
		if err := e.rt.Attach(ctx, e.pod, "ticker2", Stdio{Out: &out2}); !errors.Is(err, errdefs.ErrFailedPrecondition) {
			t.Errorf("attach to an exited container: %v", err)
		}
		e.delete("ticker2")
	})
	t.Run("stdin", func(t *testing.T) {
		_, logPath := e.run("cat", e.spec("cat", "cat"), ctrOpts{stdin: true})
		for _, word := range []string{"hello", "again"} {
			// Each attach (not stdin_once) forwards its stdin; detaching
			// leaves the container's stdin open.
			actx, acancel := context.WithCancel(ctx)
			pr, pw := io.Pipe()
			var out syncBuffer
			done := make(chan error, 1)
			go func() { done <- e.rt.Attach(actx, e.pod, "cat", Stdio{In: pr, Out: &out}) }()
			if _, err := pw.Write([]byte(word + "\n")); err != nil {
				t.Fatal(err)
			}
			waitFor(t, func() bool { return out.String() == word+"\n" })
			pw.Close()
			acancel()
			if err := <-done; !errors.Is(err, context.Canceled) {
				t.Fatalf("attach: %v", err)
			}
		}
		waitFor(t, func() bool { return strings.Join(logEntries(t, logPath), "|") == "stdout F hello|stdout F again" })
		if st, err := e.rt.State(ctx, e.pod, "cat"); err != nil || st.Status != StatusRunning {
			t.Fatalf("cat after the attaches: %+v %v", st, err)
		}
		if err := e.rt.Kill(ctx, e.pod, "cat", syscall.SIGKILL); err != nil {
			t.Fatal(err)
		}
		e.wait("cat", 10*time.Second)
		e.delete("cat")
	})
	t.Run("stdin once", func(t *testing.T) {
		e.run("once", e.spec("once", "cat"), ctrOpts{stdin: true, stdinOnce: true})
		var out syncBuffer
		// The end of the first attach's stdin closes the container's: cat
		// ends, and with it the attach.
		if err := e.rt.Attach(ctx, e.pod, "once", Stdio{In: strings.NewReader("once\n"), Out: &out}); err != nil {
			t.Fatal(err)
		}
		if out.String() != "once\n" {
			t.Fatalf("output %q", out.String())
		}
		if st := e.wait("once", 10*time.Second); st.ExitCode != 0 {
			t.Fatalf("once: %+v", st)
		}
		e.delete("once")
	})
	t.Run("tty resize", func(t *testing.T) {
		s := e.spec("ttyattach", "sh", "-c", `while [ "$(stty size)" != "30 90" ]; do sleep 0.05; done; echo resized`)
		s.Process.Terminal = true
		e.run("ttyattach", s, ctrOpts{tty: true, stdin: true})
		sizes := make(chan TermSize, 1)
		sizes <- TermSize{Width: 90, Height: 30}
		var out syncBuffer
		if err := e.rt.Attach(ctx, e.pod, "ttyattach", Stdio{Out: &out, Tty: true, Resize: sizes}); err != nil {
			t.Fatal(err)
		}
		if !strings.Contains(out.String(), "resized\r\n") {
			t.Fatalf("output %q", out.String())
		}
		e.wait("ttyattach", 10*time.Second)
		e.delete("ttyattach")
	})
	t.Run("errors", func(t *testing.T) {
		err := e.rt.Attach(ctx, e.pod, joiner, Stdio{In: strings.NewReader("x"), Out: io.Discard})
		if !errdefs.IsInvalidArgument(err) || !strings.Contains(err.Error(), "without stdin") {
			t.Errorf("attach with stdin to a container without: %v", err)
		}
		if err := e.rt.Attach(ctx, e.pod, "nope", Stdio{Out: io.Discard}); !errdefs.IsNotFound(err) {
			t.Errorf("attach to an unknown container: %v", err)
		}
	})
}
