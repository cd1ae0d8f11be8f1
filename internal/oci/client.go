package oci

import (
	"bufio"
	"context"
	"encoding/json"
	"errors"
	"fmt"
	"net"
	"os"
	"time"

	"go.opentelemetry.io/otel/attribute"

	"github.com/noded-dev/noded/internal/errdefs"
	"github.com/noded-dev/noded/internal/oci/wire"
	"github.com/noded-dev/noded/internal/tracing"
)

func isUnavailable(err error) bool { return errors.Is(err, errdefs.ErrUnavailable) }

// call sends one request to the pod's monitor and reads its answer. A
// monitor that cannot be reached gives an Unavailable error. Each call is
// a span ("monitor.<op>") of the request's trace.
func (r *Runtime) call(ctx context.Context, pod PodID, req *wire.Request) (*wire.Response, error) {
	ctx, span := tracing.Start(ctx, "monitor."+req.Op,
		attribute.String("noded.pod", string(pod)), attribute.String("noded.container", req.Container))
	start := time.Now()
	resp, err := r.callMonitor(ctx, pod, req)
	r.metrics.observe(req.Op, err, time.Since(start))
	tracing.End(span, err)
	return resp, err
}

func (r *Runtime) callMonitor(ctx context.Context, pod PodID, req *wire.Request) (*wire.Response, error) {
	sock := wire.SocketPath(r.o.RunDir, string(pod))
	var d net.Dialer
	conn, err := d.DialContext(ctx, "unix", sock)
	if err != nil {
		if ctx.Err() != nil {
			return nil, ctx.Err()
		}
		return nil, errdefs.Unavailable("no monitor for pod %s: %w", pod, err)
	}
	defer conn.Close()
	// Unblock reads and writes when ctx ends.
	stop := context.AfterFunc(ctx, func() { _ = conn.SetDeadline(time.Now()) })
	defer stop()
	b, err := json.Marshal(req)
	if err != nil {
		return nil, err
	}
	if _, err := conn.Write(append(b, '\n')); err != nil {
		if ctx.Err() != nil {
			return nil, ctx.Err()
		}
		return nil, errdefs.Unavailable("monitor of pod %s: %w", pod, err)
	}
	line, err := bufio.NewReader(conn).ReadBytes('\n')
	if err != nil {
		if ctx.Err() != nil {
			return nil, ctx.Err()
		}
		return nil, errdefs.Unavailable("monitor of pod %s: no answer to %s: %w", pod, req.Op, err)
	}
	var resp wire.Response
	if err := json.Unmarshal(line, &resp); err != nil {
		return nil, fmt.Errorf("monitor of pod %s: bad answer: %w", pod, err)
	}
	if resp.Error != "" {
		return &resp, codeError(resp.Code, resp.Error)
	}
	return &resp, nil
}

func codeError(code, msg string) error {
	switch code {
	case wire.CodeNotFound:
		return errdefs.NotFound("%s", msg)
	case wire.CodeAlreadyExists:
		return errdefs.AlreadyExists("%s", msg)
	case wire.CodeInvalidArgument:
		return errdefs.InvalidArgument("%s", msg)
	case wire.CodeFailedPrecondition:
		return errdefs.FailedPrecondition("%s", msg)
	case wire.CodeDeadlineExceeded:
		return errdefs.DeadlineExceeded("%s", msg)
	case wire.CodeUnavailable:
		return errdefs.Unavailable("%s", msg)
	}
	return errors.New(msg)
}

// callStarting is call, but (re)starts the monitor once when none answers:
// a monitor that died is replaced by one that adopts its containers.
func (r *Runtime) callStarting(ctx context.Context, pod PodID, req *wire.Request) (*wire.Response, error) {
	resp, err := r.call(ctx, pod, req)
	if !isUnavailable(err) || ctx.Err() != nil {
		return resp, err
	}
	if serr := r.StartMonitor(ctx, pod); serr != nil {
		return nil, err
	}
	return r.call(ctx, pod, req)
}

// hello asks the monitor who it is.
func (r *Runtime) hello(ctx context.Context, pod PodID) (*wire.Response, error) {
	resp, err := r.call(ctx, pod, &wire.Request{Op: wire.OpHello})
	if err != nil {
		return nil, err
	}
	if resp.Pod != string(pod) {
		return nil, errdefs.AlreadyExists("monitor socket %s belongs to pod %s (pod ids share their first 12 characters)",
			wire.SocketPath(r.o.RunDir, string(pod)), resp.Pod)
	}
	return resp, nil
}

// StartMonitor makes sure the pod's monitor runs: it is a no-op when one
// answers (e.g. after a restart of noded), otherwise it starts conmon-go
// and returns once it listens. A monitor started
// after the previous one died adopts the containers that one left.
func (r *Runtime) StartMonitor(ctx context.Context, pod PodID) error {
	if !wire.ValidID(string(pod)) {
		return errdefs.InvalidArgument("invalid pod id %q", pod)
	}
	unlock, err := r.locks.Lock(ctx, pod)
	if err != nil {
		return err
	}
	defer unlock()
	_, err = r.hello(ctx, pod)
	if err == nil || !isUnavailable(err) {
		return err
	}
	sctx, span := tracing.Start(ctx, "monitor.spawn", attribute.String("noded.pod", string(pod)))
	pid, err := r.spawnMonitor(sctx, pod)
	tracing.End(span, err)
	if errors.Is(err, errMonitorRunning) {
		// Another monitor holds the pod's lock: it is starting up (or
		// shutting down); give it a moment to answer.
		return r.waitHello(ctx, pod, 5*time.Second)
	}
	if err != nil {
		if ctx.Err() != nil {
			return ctx.Err()
		}
		if isUnavailable(err) {
			return err
		}
		return errdefs.Unavailable("starting the monitor of pod %s: %v", pod, err)
	}
	if _, err := r.hello(ctx, pod); err != nil {
		return err
	}
	r.log.WithField("pod", pod).Debugf("monitor started, pid %d", pid)
	return nil
}

func (r *Runtime) waitHello(ctx context.Context, pod PodID, d time.Duration) error {
	deadline := time.Now().Add(d)
	for {
		_, err := r.hello(ctx, pod)
		if err == nil || !isUnavailable(err) || time.Now().After(deadline) {
			return err
		}
		select {
		case <-ctx.Done():
			return ctx.Err()
		case <-time.After(50 * time.Millisecond):
		}
	}
}

// StopMonitor shuts the pod's monitor down, after the pod's containers were
// deleted; containers still there are killed and deleted. Without a running
// monitor it removes what a dead one left (adopting leftover containers
// first).
func (r *Runtime) StopMonitor(ctx context.Context, pod PodID) error {
	if !wire.ValidID(string(pod)) {
		return errdefs.InvalidArgument("invalid pod id %q", pod)
	}
	unlock, err := r.locks.Lock(ctx, pod)
	if err != nil {
		return err
	}
	defer func() { unlock() }() // the lock is dropped and retaken below
	if _, err := r.hello(ctx, pod); isUnavailable(err) {
		entries, _ := os.ReadDir(wire.MonitorDir(r.o.RunDir, string(pod)))
		if len(entries) == 0 {
			r.removeMonitorFiles(pod)
			return nil
		}
		unlock()
		if err := r.StartMonitor(ctx, pod); err != nil {
			unlock = func() {}
			return err
		}
		if unlock, err = r.locks.Lock(ctx, pod); err != nil {
			unlock = func() {}
			return err
		}
	} else if err != nil {
		return err
	}
	_, err = r.call(ctx, pod, &wire.Request{Op: wire.OpShutdown})
	if err != nil && !isUnavailable(err) {
		return err
	}
	return nil
}

func (r *Runtime) removeMonitorFiles(pod PodID) {
	p := string(pod)
	for _, f := range []string{
		wire.SocketPath(r.o.RunDir, p), wire.PidPath(r.o.RunDir, p),
		wire.LockPath(r.o.RunDir, p), wire.MonitorLogPath(r.o.RunDir, p),
	} {
		_ = os.Remove(f)
	}
	_ = os.Remove(wire.MonitorDir(r.o.RunDir, p))
}
