package sandbox

import (
	"context"
	"errors"
	"fmt"
	"io"
	"net"
	"os"
	"runtime"
	"strconv"
	"sync"

	"golang.org/x/sys/unix"

	"github.com/noded-dev/noded/internal/errdefs"
	"github.com/noded-dev/noded/internal/ids"
	"github.com/noded-dev/noded/internal/log"
	"github.com/noded-dev/noded/internal/state"
)

// CheckPortForward says whether a pod can take port-forward streams: it
// must exist (NotFound) and be ready (FailedPrecondition), so that the
// PortForward RPC fails before it hands out a URL.
func (s *Pods) CheckPortForward(id ids.SandboxID) error {
	rec, err := s.o.Store.Sandbox(id)
	if err != nil {
		return err
	}
	if rec.State != state.SandboxReady {
		return errdefs.FailedPrecondition("pod sandbox %s is not ready", id.Short())
	}
	return nil
}

// PortForward connects stream to TCP port on the pod's loopback, in the
// pod's network namespace (the host's for a host-network pod), and copies
// both ways until either side closes. The connection is made in process,
// on an OS thread that enters the namespace for the socket() and
// connect() calls only: no socat or nsenter per connection. IPv4 is tried
// first, then IPv6, as the kubelet's own port-forward does.
func (s *Pods) PortForward(ctx context.Context, id ids.SandboxID, port int32, stream io.ReadWriteCloser) error {
	defer stream.Close()
	if port <= 0 || port > 65535 {
		return errdefs.InvalidArgument("invalid port %d", port)
	}
	rec, err := s.o.Store.Sandbox(id)
	if err != nil {
		return err
	}
	if rec.State != state.SandboxReady {
		return errdefs.FailedPrecondition("pod sandbox %s is not ready", id.Short())
	}
	conn, err := dialLoopback(ctx, rec.NetNSPath, int(port))
	if err != nil {
		return fmt.Errorf("connecting to port %d in pod %s: %w", port, id.Short(), err)
	}
	log.FromContext(ctx).WithFields(map[string]any{"pod": id.Short(), "port": port}).Debug("port-forward connected")
	return splice(ctx, conn, stream)
}

// splice copies between conn and stream until one side ends, then closes
// both (which ends the other copy).
func splice(ctx context.Context, conn net.Conn, stream io.ReadWriteCloser) error {
	var once sync.Once
	closeBoth := func() {
		once.Do(func() {
			_ = conn.Close()
			_ = stream.Close()
		})
	}
	stop := context.AfterFunc(ctx, closeBoth)
	defer stop()
	errc := make(chan error, 2)
	go func() {
		_, err := io.Copy(conn, stream)
		// The client is done sending: half-close so the server sees EOF
		// and can still answer.
		if tc, ok := conn.(*net.TCPConn); ok && err == nil {
			_ = tc.CloseWrite()
		} else {
			closeBoth()
		}
		errc <- err
	}()
	_, err := io.Copy(stream, conn)
	closeBoth()
	err2 := <-errc
	if err == nil {
		err = err2
	}
	if errors.Is(err, net.ErrClosed) || errors.Is(err, io.ErrClosedPipe) || ctx.Err() != nil {
		return nil
	}
	return err
}

// dialLoopback connects to port on loopback inside the network namespace
// at nsPath ("" is noded's own namespace).
func dialLoopback(ctx context.Context, nsPath string, port int) (net.Conn, error) {
	var errs []error
	for _, host := range []string{"127.0.0.1", "::1"} {
		conn, err := dialInNetNS(ctx, nsPath, net.JoinHostPort(host, strconv.Itoa(port)))
		if err == nil {
			return conn, nil
		}
		errs = append(errs, err)
		if ctx.Err() != nil {
			break
		}
	}
	return nil, errors.Join(errs...)
}

// dialInNetNS dials addr from inside the network namespace at nsPath. A
// socket belongs to the namespace it was created in, so only the dial
// runs on the entered thread; the connection then works from any thread.
func dialInNetNS(ctx context.Context, nsPath, addr string) (net.Conn, error) {
	var d net.Dialer
	if nsPath == "" {
		return d.DialContext(ctx, "tcp", addr)
	}
	target, err := os.Open(nsPath)
	if err != nil {
		return nil, fmt.Errorf("opening network namespace: %w", err)
	}
	defer target.Close()

	type result struct {
		conn net.Conn
		err  error
	}
	done := make(chan result, 1)
	go func() {
		// This goroutine's thread is the only one that changes namespace.
		// If it cannot go back, it stays locked and the Go runtime ends the
		// thread with the goroutine, so no other goroutine runs in the pod.
		runtime.LockOSThread()
		home, err := os.Open("/proc/thread-self/ns/net")
		if err != nil {
			runtime.UnlockOSThread()
			done <- result{err: err}
			return
		}
		defer home.Close()
		if err := unix.Setns(int(target.Fd()), unix.CLONE_NEWNET); err != nil {
			runtime.UnlockOSThread()
			done <- result{err: fmt.Errorf("entering network namespace: %w", err)}
			return
		}
		conn, err := d.DialContext(ctx, "tcp", addr)
		if unix.Setns(int(home.Fd()), unix.CLONE_NEWNET) == nil {
			runtime.UnlockOSThread()
		}
		done <- result{conn, err}
	}()
	r := <-done
	return r.conn, r.err
}
