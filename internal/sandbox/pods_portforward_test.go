package sandbox

import (
	"context"
	"errors"
	"io"
	"net"
	"os"
	"runtime"
	"strings"
	"testing"
	"time"

	"github.com/vishvananda/netlink"
	"golang.org/x/sys/unix"

	"github.com/noded-dev/noded/internal/errdefs"
	"github.com/noded-dev/noded/internal/ids"
	"github.com/noded-dev/noded/internal/netcni"
	"github.com/noded-dev/noded/internal/state"
)

// echoServer accepts one connection on ln and echoes it back until EOF.
func echoServer(t *testing.T, ln net.Listener) {
	t.Helper()
	t.Cleanup(func() { ln.Close() })
	go func() {
		c, err := ln.Accept()
		if err != nil {
			return
		}
		defer c.Close()
		_, _ = io.Copy(c, c)
	}()
}

// forward runs PortForward over a pipe, sends msg, half-closes, and
// returns what came back and PortForward's error.
func forward(t *testing.T, s *Services, id ids.SandboxID, port int, msg string) (string, error) {
	t.Helper()
	client, server := net.Pipe()
	errc := make(chan error, 1)
	ctx, cancel := context.WithTimeout(context.Background(), 5*time.Second)
	defer cancel()
	go func() { errc <- s.Pods.PortForward(ctx, id, int32(port), server) }()
	go func() { _, _ = client.Write([]byte(msg)) }()
	buf := make([]byte, len(msg))
	_ = client.SetReadDeadline(time.Now().Add(3 * time.Second))
	n, _ := io.ReadFull(client, buf)
	client.Close()
	return string(buf[:n]), <-errc
}

func TestPortForward(t *testing.T) {
	s, _ := newTestService(t, nil)
	ctx := context.Background()
	podID, err := s.Pods.RunPodSandbox(ctx, podConfig("pf"), "") // host network
	if err != nil {
		t.Fatal(err)
	}
	ln, err := net.Listen("tcp", "127.0.0.1:0")
	if err != nil {
		t.Fatal(err)
	}
	echoServer(t, ln)
	port := ln.Addr().(*net.TCPAddr).Port

	t.Run("echo through a host-network pod", func(t *testing.T) {
		got, err := forward(t, s, podID, port, "hello through the pod")
		if err != nil || got != "hello through the pod" {
			t.Fatalf("got %q, %v", got, err)
		}
	})
	t.Run("nothing listening names the port", func(t *testing.T) {
		free, _ := net.Listen("tcp", "127.0.0.1:0")
		p := free.Addr().(*net.TCPAddr).Port
		free.Close()
		if _, err := forward(t, s, podID, p, "x"); err == nil || !strings.Contains(err.Error(), "port") {
			t.Fatalf("err = %v, want a connection error naming the port", err)
		}
	})
	t.Run("checks", func(t *testing.T) {
		if err := s.Pods.CheckPortForward(podID); err != nil {
			t.Fatalf("ready pod: %v", err)
		}
		if err := s.Pods.CheckPortForward("0123456789abcdef"); !errdefs.IsNotFound(err) {
			t.Fatalf("unknown pod: %v", err)
		}
		if err := s.Pods.StopPodSandbox(ctx, podID); err != nil {
			t.Fatal(err)
		}
		if err := s.Pods.CheckPortForward(podID); !errors.Is(err, errdefs.ErrFailedPrecondition) {
			t.Fatalf("stopped pod: %v", err)
		}
		if _, err := forward(t, s, podID, port, "x"); !errors.Is(err, errdefs.ErrFailedPrecondition) {
			t.Fatalf("PortForward to a stopped pod: %v", err)
		}
	})
}

// In a pod with its own network namespace the connection reaches the
// pod's loopback, not the host's.
func TestPortForwardEntersThePodNetNS(t *testing.T) {
	if os.Geteuid() != 0 {
		t.Skip("creating a network namespace needs root")
	}
	dir := t.TempDir()
	nsPath, err := netcni.NewNetNS(dir, "pf")
	if err != nil {
		t.Fatal(err)
	}
	t.Cleanup(func() {
		_ = netcni.RemoveNetNS(nsPath)
		_ = unix.Unmount(dir, unix.MNT_DETACH)
	})
	ln := listenInNetNS(t, nsPath)
	echoServer(t, ln)
	port := ln.Addr().(*net.TCPAddr).Port

	s, _ := newTestService(t, nil)
	rec := &state.Sandbox{ID: ids.NewSandboxID(), Name: "pf-ns", State: state.SandboxReady, NetNSPath: nsPath, Dir: t.TempDir()}
	if err := s.Pods.o.Store.AddSandbox(rec); err != nil {
		t.Fatal(err)
	}
	t.Cleanup(func() { _ = s.Pods.o.Store.DeleteSandbox(rec.ID) })
	got, err := forward(t, s, rec.ID, port, "inside")
	if err != nil || got != "inside" {
		t.Fatalf("got %q, %v", got, err)
	}
	// The host's loopback has nothing on that port (most likely): the
	// dial did not happen there. Checked directly, to be sure.
	if c, err := net.DialTimeout("tcp", ln.Addr().String(), time.Second); err == nil {
		c.Close()
		t.Log("the host happens to listen on the same port; namespace check is inconclusive")
	}
}

// listenInNetNS brings up lo in the namespace and listens on it.
func listenInNetNS(t *testing.T, nsPath string) net.Listener {
	t.Helper()
	type result struct {
		ln  net.Listener
		err error
	}
	done := make(chan result, 1)
	go func() {
		runtime.LockOSThread() // never unlocked: the thread dies with the goroutine
		f, err := os.Open(nsPath)
		if err != nil {
			done <- result{err: err}
			return
		}
		defer f.Close()
		if err := unix.Setns(int(f.Fd()), unix.CLONE_NEWNET); err != nil {
			done <- result{err: err}
			return
		}
		lo, err := netlink.LinkByName("lo")
		if err == nil {
			err = netlink.LinkSetUp(lo)
		}
		if err != nil {
			done <- result{err: err}
			return
		}
		ln, err := net.Listen("tcp", "127.0.0.1:0")
		done <- result{ln, err}
	}()
	r := <-done
	if r.err != nil {
		t.Fatal(r.err)
	}
	return r.ln
}
