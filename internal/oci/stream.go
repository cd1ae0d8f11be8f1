package oci

import (
	"context"
	"encoding/json"
	"errors"
	"fmt"
	"io"
	"net"
	"os"
	"sync"
	"time"

	"golang.org/x/sys/unix"

	"github.com/noded-dev/noded/internal/errdefs"
	"github.com/noded-dev/noded/internal/log"
	"github.com/noded-dev/noded/internal/oci/wire"
)

// TermSize is a terminal's size in characters.
type TermSize struct {
	Width, Height uint16
}

// Stdio are the client's streams of an Exec or Attach. A nil In, Out or
// Err is a stream the client did not ask for. With Tty the process has a
// terminal: its output (stderr included) goes to Out, Err is not used,
// and the sizes received on Resize (nil: none) are applied to the
// terminal. Out and Err are not closed (their owner does that once Exec
// or Attach returned).
type Stdio struct {
	In       io.Reader
	Out, Err io.Writer
	Tty      bool
	Resize   <-chan TermSize
}

// outputGrace bounds how long output is still copied once the process (or
// the attached container's output) ended: a background child may hold the
// pipes.
const outputGrace = time.Second

// pipeSize is asked for the output pipes of exec and attach sessions: the
// monitor drops an attach client whose pipe is full, so it must absorb
// bursts; an exec's output moves in fewer, larger reads.
const pipeSize = 1 << 20

// errClientGone: writing to the client's Out or Err failed.
var errClientGone = errors.New("the client's stream is closed")

// Exec runs cmd in the running container with the client's streams as
// its stdio, through the pod's monitor (one connection for the exec; the
// framing is in internal/oci/wire/stream.go): without Tty, pipes whose
// other ends the monitor hands to the process, so that no process copies
// the bytes between noded and it; with Tty, the master of a pty
// libcontainer made in the container, which the monitor passes back, and
// which this side copies through and resizes. It returns the process's
// exit code once it exited and its output was copied. When ctx ends
// first (or writing to the client fails), the connection is closed, the
// monitor kills the process, and the error says why.
//
// Errors: NotFound (unknown container), FailedPrecondition (not
// running), InvalidArgument (empty command), Unavailable (no monitor).
func (r *Runtime) Exec(ctx context.Context, pod PodID, id ContainerID, cmd []string, s Stdio) (exitCode int32, err error) {
	if err := checkIDs(pod, id); err != nil {
		return -1, err
	}
	if len(cmd) == 0 {
		return -1, errdefs.InvalidArgument("empty command")
	}
	req := &wire.Request{Op: wire.OpExecStream, Container: string(id), Args: cmd, Tty: s.Tty}
	var p pipeSet
	defer p.close()
	if !s.Tty {
		if err := p.make(req, s); err != nil {
			return -1, err
		}
	}
	sc, err := r.dialStream(ctx, pod)
	if err != nil {
		return -1, err
	}
	defer sc.close()
	resp, fds, err := sc.roundTrip(ctx, req, p.child)
	p.closeChild()
	if err != nil {
		wire.CloseFds(fds)
		return -1, err
	}
	cp := newCopier()
	var master *os.File
	if s.Tty {
		if len(fds) != 1 {
			wire.CloseFds(fds)
			return -1, fmt.Errorf("exec in %s: the monitor sent %d descriptors, want the terminal", id, len(fds))
		}
		_ = unix.SetNonblock(fds[0], true)
		master = os.NewFile(uintptr(fds[0]), "exec-pty")
		defer master.Close()
		cp.output(orDiscard(s.Out), master)
		if s.In != nil {
			go func() { _, _ = io.Copy(master, s.In) }()
		}
		go resizeLoop(cp.done, s.Resize, master)
	} else {
		wire.CloseFds(fds)
		p.startCopies(cp, s)
	}
	log.FromContext(ctx).WithField("container", id).Debugf("exec %q: process %d", cmd[0], resp.Pid)

	last, err := waitSession(ctx, sc, cp, p.readers(master), "exec in "+string(id))
	if err != nil {
		return -1, err
	}
	if last.Exec == nil {
		return -1, fmt.Errorf("exec in %s: the monitor answered without an exit code", id)
	}
	return last.Exec.ExitCode, nil
}

// waitSession waits for the monitor's last answer on a session's
// connection, for ctx to end (closing the connection: the monitor then
// kills an exec'd process, or detaches an attach) or for the client to
// go away, then stops the copies: after a normal end it lets them drain
// the output for up to outputGrace, otherwise it cuts them off.
func waitSession(ctx context.Context, sc *streamConn, cp *copier, readers []*os.File, what string) (*wire.Response, error) {
	ended := make(chan result, 1)
	go func() { ended <- sc.recvResult() }()
	select {
	case res := <-ended:
		if res.err != nil {
			cp.stop(0, readers...)
			if ctx.Err() != nil {
				return nil, ctx.Err()
			}
			return nil, res.err
		}
		cp.stop(outputGrace, readers...)
		return res.resp, nil
	case <-ctx.Done():
		sc.close()
		cp.stop(0, readers...)
		return nil, ctx.Err()
	case <-cp.clientGone:
		sc.close()
		cp.stop(0, readers...)
		return nil, errdefs.Unavailable("%s: %v", what, errClientGone)
	}
}

// Attach connects the client's streams to the container's main process
// through the pod's monitor (one connection for the attach; the framing
// is in internal/oci/wire/stream.go): the monitor writes the container's
// output to pipes whose read ends this side copies to Out and Err, and
// forwards what this side writes to the stdin pipe; sizes from Resize go
// to the monitor, which resizes the container's terminal. It returns nil
// when the container's output ended (it exited), ctx's error when ctx
// ended first (the monitor then detaches the client), an Unavailable
// error when the monitor dropped the client for not keeping up with the
// output or writing to the client failed.
//
// Errors before attaching: NotFound, FailedPrecondition (exited, or its
// stdin was closed after a first attach with stdin_once),
// InvalidArgument (In set for a container created without stdin).
func (r *Runtime) Attach(ctx context.Context, pod PodID, id ContainerID, s Stdio) error {
	if err := checkIDs(pod, id); err != nil {
		return err
	}
	req := &wire.Request{Op: wire.OpAttach, Container: string(id), Tty: s.Tty}
	var p pipeSet
	defer p.close()
	if err := p.make(req, s); err != nil {
		return err
	}
	sc, err := r.dialStream(ctx, pod)
	if err != nil {
		return err
	}
	defer sc.close()
	_, fds, err := sc.roundTrip(ctx, req, p.child)
	p.closeChild()
	wire.CloseFds(fds)
	if err != nil {
		return err
	}
	cp := newCopier()
	p.startCopies(cp, s)
	if s.Resize != nil {
		go sc.sendResizes(cp.done, s.Resize)
	}
	_, err = waitSession(ctx, sc, cp, p.readers(nil), "attach to "+string(id))
	return err
}

// pipeSet is the pipes of an exec or attach: child are the monitor's (or
// the process's) ends, sent with the request, in the order stdin, stdout,
// stderr; in, out and errOut are ours.
type pipeSet struct {
	child           []*os.File
	in, out, errOut *os.File
}

// make creates a pipe for each stream of s and sets the request's flags.
// The output pipes are made large (see pipeSize).
func (p *pipeSet) make(req *wire.Request, s Stdio) error {
	if s.In != nil {
		r, w, err := os.Pipe()
		if err != nil {
			return err
		}
		p.child, p.in, req.Stdin = append(p.child, r), w, true
	}
	for _, o := range []struct {
		w    io.Writer
		ours **os.File
		flag *bool
	}{{s.Out, &p.out, &req.Stdout}, {s.Err, &p.errOut, &req.Stderr}} {
		if o.w == nil || (o.flag == &req.Stderr && s.Tty) {
			continue
		}
		r, w, err := os.Pipe()
		if err != nil {
			return err
		}
		if rc, err := w.SyscallConn(); err == nil {
			_ = rc.Control(func(fd uintptr) { _, _ = unix.FcntlInt(fd, unix.F_SETPIPE_SZ, pipeSize) })
		}
		p.child, *o.ours, *o.flag = append(p.child, w), r, true
	}
	return nil
}

// startCopies copies between the client's streams and our ends; our
// stdin end is closed at the end of the client's stdin, so that the other
// side reads EOF.
func (p *pipeSet) startCopies(cp *copier, s Stdio) {
	if p.out != nil {
		cp.output(s.Out, p.out)
	}
	if p.errOut != nil {
		cp.output(s.Err, p.errOut)
	}
	if p.in != nil {
		in := p.in
		go func() {
			_, _ = io.Copy(in, s.In)
			in.Close()
		}()
	}
}

// readers are the files output is read from.
func (p *pipeSet) readers(master *os.File) []*os.File {
	var fs []*os.File
	for _, f := range []*os.File{p.out, p.errOut, master} {
		if f != nil {
			fs = append(fs, f)
		}
	}
	return fs
}

func (p *pipeSet) closeChild() {
	for _, f := range p.child {
		f.Close()
	}
	p.child = nil
}

func (p *pipeSet) close() {
	p.closeChild()
	for _, f := range []*os.File{p.in, p.out, p.errOut} {
		if f != nil {
			f.Close()
		}
	}
}

// copier runs the output copies of one stream.
type copier struct {
	wg         sync.WaitGroup
	done       chan struct{} // closed by stop
	clientGone chan struct{} // closed when writing to the client failed
	goneOnce   sync.Once
	stopOnce   sync.Once
}

// copyBuffer is the size of one read of a process's output: with a 1 MiB
// pipe, 256 KiB reads keep the syscalls and SPDY frames per MiB few.
const copyBuffer = 256 << 10

// A process that writes a little at a time as fast as it can (busybox and
// most C stdio write 4 KiB) would have each of its writes read and sent
// to the client as a frame of its own: a read, a frame and a wakeup of
// the client per 4 KiB took so much CPU on a 2-CPU node that the process
// itself was starved, and a 64 MiB stream ran at 50 MiB/s one time and
// 180 MiB/s the next. So in a burst of short reads (the last read ended
// less than burstGap ago) the copy waits gatherDelay before reading
// again, and the pipe gathers a larger frame. Output that comes now and
// then (a shell, a log line) is never held back: its reads are far apart.
const (
	burstGap    = time.Millisecond
	gatherDelay = 500 * time.Microsecond
)

func newCopier() *copier {
	return &copier{done: make(chan struct{}), clientGone: make(chan struct{})}
}

// output copies src to dst until src ends (EOF, EIO of a pty whose
// process exited, or closed by stop).
func (c *copier) output(dst io.Writer, src *os.File) {
	c.wg.Add(1)
	go func() {
		defer c.wg.Done()
		buf := make([]byte, copyBuffer)
		var last time.Time // when the last read returned
		for {
			n, rerr := src.Read(buf)
			now := time.Now()
			if n > 0 {
				if _, err := dst.Write(buf[:n]); err != nil {
					c.goneOnce.Do(func() { close(c.clientGone) })
					return
				}
			}
			if rerr != nil {
				return
			}
			if n < copyBuffer/4 && now.Sub(last) < burstGap {
				time.Sleep(gatherDelay)
			}
			last = now
		}
	}()
}

// stop waits up to grace for the copies to reach the end of their input,
// then closes the inputs and waits for the copies to return.
func (c *copier) stop(grace time.Duration, inputs ...*os.File) {
	c.stopOnce.Do(func() { close(c.done) })
	finished := make(chan struct{})
	go func() { c.wg.Wait(); close(finished) }()
	if grace > 0 {
		t := time.NewTimer(grace)
		defer t.Stop()
		select {
		case <-finished:
			return
		case <-t.C:
		}
	}
	for _, f := range inputs {
		f.Close()
	}
	<-finished
}

func orDiscard(w io.Writer) io.Writer {
	if w == nil {
		return io.Discard
	}
	return w
}

// resizeLoop applies the sizes received to the pty until done.
func resizeLoop(done <-chan struct{}, sizes <-chan TermSize, master *os.File) {
	if sizes == nil {
		return
	}
	rc, err := master.SyscallConn()
	if err != nil {
		return
	}
	for {
		select {
		case <-done:
			return
		case sz, ok := <-sizes:
			if !ok {
				return
			}
			if sz.Width == 0 || sz.Height == 0 {
				continue
			}
			// Control keeps the descriptor from being closed meanwhile.
			_ = rc.Control(func(fd uintptr) {
				_ = unix.IoctlSetWinsize(int(fd), unix.TIOCSWINSZ, &unix.Winsize{Row: sz.Height, Col: sz.Width})
			})
		}
	}
}

// streamConn is the connection of one exec or attach.
type streamConn struct {
	pod     PodID
	c       *net.UnixConn
	lr      *wire.LineReader
	closeMu sync.Once
}

// dialStream connects to the pod's monitor, starting one when none
// answers (as callStarting does).
func (r *Runtime) dialStream(ctx context.Context, pod PodID) (*streamConn, error) {
	sock := wire.SocketPath(r.o.RunDir, string(pod))
	var d net.Dialer
	conn, err := d.DialContext(ctx, "unix", sock)
	if err != nil && ctx.Err() == nil {
		if serr := r.StartMonitor(ctx, pod); serr == nil {
			conn, err = d.DialContext(ctx, "unix", sock)
		}
	}
	if err != nil {
		if ctx.Err() != nil {
			return nil, ctx.Err()
		}
		return nil, errdefs.Unavailable("no monitor for pod %s: %w", pod, err)
	}
	uc := conn.(*net.UnixConn)
	sc := &streamConn{pod: pod, c: uc}
	sc.lr = &wire.LineReader{Recv: func(p, oob []byte) (int, int, error) {
		n, oobn, flags, _, err := uc.ReadMsgUnix(p, oob)
		if errors.Is(err, io.EOF) {
			err = nil
		}
		if err == nil && flags&unix.MSG_CTRUNC != 0 {
			err = errors.New("recvmsg: control data truncated")
		}
		return n, oobn, err
	}}
	return sc, nil
}

func (sc *streamConn) close() { sc.closeMu.Do(func() { sc.c.Close() }) }

// roundTrip sends the request with files (SCM_RIGHTS with its first
// bytes) and reads the first answer, with the descriptors that came with
// it (the caller closes them, on error too). ctx bounds only this step.
func (sc *streamConn) roundTrip(ctx context.Context, req *wire.Request, files []*os.File) (*wire.Response, []int, error) {
	stop := context.AfterFunc(ctx, func() { _ = sc.c.SetDeadline(time.Now()) })
	defer stop()
	b, err := json.Marshal(req)
	if err != nil {
		return nil, nil, err
	}
	b = append(b, '\n')
	var oob []byte
	if len(files) > 0 {
		fds := make([]int, len(files))
		for i, f := range files {
			// Fd makes the file blocking: these are the process's stdio.
			fds[i] = int(f.Fd())
		}
		oob = unix.UnixRights(fds...)
	}
	n, _, err := sc.c.WriteMsgUnix(b, oob, nil)
	if err == nil && n < len(b) {
		_, err = sc.c.Write(b[n:])
	}
	if err != nil {
		if ctx.Err() != nil {
			return nil, nil, ctx.Err()
		}
		return nil, nil, errdefs.Unavailable("monitor of pod %s: %w", sc.pod, err)
	}
	res := sc.recvResult()
	if !stop() || ctx.Err() != nil {
		// ctx ended (the connection's deadline may be set).
		wire.CloseFds(res.fds)
		return nil, nil, ctx.Err()
	}
	return res.resp, res.fds, res.err
}

// result is one answer of the monitor.
type result struct {
	resp *wire.Response
	fds  []int
	err  error
}

// recvResult reads one answer; an answer with an error gives the error's
// class, the end of the connection an Unavailable error.
func (sc *streamConn) recvResult() result {
	line, fds, err := sc.lr.ReadLine()
	if err != nil {
		if errors.Is(err, wire.ErrEnd) || errors.Is(err, wire.ErrUnexpectedEnd) || errors.Is(err, net.ErrClosed) {
			return result{fds: fds, err: errdefs.Unavailable("monitor of pod %s closed the connection", sc.pod)}
		}
		return result{fds: fds, err: errdefs.Unavailable("monitor of pod %s: %w", sc.pod, err)}
	}
	var resp wire.Response
	if err := json.Unmarshal(line, &resp); err != nil {
		return result{fds: fds, err: fmt.Errorf("monitor of pod %s: bad answer: %w", sc.pod, err)}
	}
	if resp.Error != "" {
		return result{resp: &resp, fds: fds, err: codeError(resp.Code, resp.Error)}
	}
	return result{resp: &resp, fds: fds}
}

// sendResizes sends the sizes received as Resize lines until done.
func (sc *streamConn) sendResizes(done <-chan struct{}, sizes <-chan TermSize) {
	for {
		select {
		case <-done:
			return
		case sz, ok := <-sizes:
			if !ok {
				return
			}
			b, _ := json.Marshal(wire.Resize{Width: sz.Width, Height: sz.Height})
			if _, err := sc.c.Write(append(b, '\n')); err != nil {
				return
			}
		}
	}
}
