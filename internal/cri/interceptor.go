package cri

import (
	"context"
	"crypto/rand"
	"encoding/hex"
	"errors"
	"fmt"
	"path"
	"runtime/debug"
	"time"

	"github.com/sirupsen/logrus"
	"google.golang.org/grpc"
	"google.golang.org/grpc/codes"
	"google.golang.org/grpc/status"

	"github.com/noded-dev/noded/internal/errdefs"
	nlog "github.com/noded-dev/noded/internal/log"
)

// Observer records the outcome of one RPC (metrics); method is the short
// RPC name such as "PullImage".
type Observer interface {
	Observe(method string, code codes.Code, d time.Duration)
}

// UnaryInterceptor gives each request an id and a logger (in its context,
// internal/log: every domain package logs through it), logs it at debug,
// converts the handler's domain error into a gRPC status in this one place,
// and reports the outcome to obs (which may be nil).
func UnaryInterceptor(base *logrus.Entry, obs Observer) grpc.UnaryServerInterceptor {
	return func(ctx context.Context, req any, info *grpc.UnaryServerInfo, handler grpc.UnaryHandler) (any, error) {
		method := path.Base(info.FullMethod)
		log := base.WithFields(logrus.Fields{"id": newRequestID(), "method": method})
		ctx = nlog.WithContext(ctx, log)
		start := time.Now()
		if log.Logger.IsLevelEnabled(logrus.DebugLevel) {
			log.WithField("request", loggable(req)).Debug("request")
		}

		resp, err := callRecovering(ctx, req, handler, log)
		return resp, finish(log, obs, method, start, err, resp)
	}
}

// finish converts a handler's error into a gRPC status, reports the
// outcome to obs and logs it; resp (nil for a stream) is logged at debug.
func finish(log *logrus.Entry, obs Observer, method string, start time.Time, err error, resp any) error {
	err = toGRPC(err)
	elapsed := time.Since(start)
	code := status.Code(err)
	if obs != nil {
		obs.Observe(method, code, elapsed)
	}
	fields := logrus.Fields{"code": code.String(), "duration": elapsed}
	switch {
	case err == nil:
		if !log.Logger.IsLevelEnabled(logrus.DebugLevel) {
			break
		}
		e := log.WithFields(fields)
		if resp != nil {
			e = e.WithField("response", loggable(resp))
		}
		e.Debug("response")
	case code == codes.Unimplemented || code == codes.NotFound:
		// Expected in normal operation (probes, idempotent removes).
		log.WithFields(fields).WithError(err).Debug("request failed")
	default:
		log.WithFields(fields).WithError(err).Warn("request failed")
	}
	return err
}

// callRecovering runs the handler; a panic becomes codes.Internal with the
// stack in the log instead of taking the node's runtime down.
func callRecovering(ctx context.Context, req any, handler grpc.UnaryHandler, log *logrus.Entry) (resp any, err error) {
	defer func() {
		if p := recover(); p != nil {
			log.WithField("panic", p).WithField("stack", string(debug.Stack())).Error("handler panicked")
			resp, err = nil, status.Error(codes.Internal, fmt.Sprintf("internal error: %v", p))
		}
	}()
	return handler(ctx, req)
}

// codeOf lists the error classes in the order they are tested: the first
// class found in the error's chain decides the code.
var codeOf = []struct {
	class error
	code  codes.Code
}{
	{errdefs.ErrNotFound, codes.NotFound},
	{errdefs.ErrAlreadyExists, codes.AlreadyExists},
	{errdefs.ErrInvalidArgument, codes.InvalidArgument},
	{errdefs.ErrFailedPrecondition, codes.FailedPrecondition},
	{errdefs.ErrNotImplemented, codes.Unimplemented},
	{errdefs.ErrUnauthenticated, codes.Unauthenticated},
	{errdefs.ErrPermissionDenied, codes.PermissionDenied},
	{errdefs.ErrResourceExhausted, codes.ResourceExhausted},
	{errdefs.ErrUnavailable, codes.Unavailable},
	{errdefs.ErrAborted, codes.Aborted},
	{context.DeadlineExceeded, codes.DeadlineExceeded},
	{context.Canceled, codes.Canceled},
}

// toGRPC maps an errdefs class (or context error) to its gRPC code, keeping
// the message. An error already carrying a status keeps it; an error with
// no class becomes codes.Unknown.
func toGRPC(err error) error {
	if err == nil {
		return nil
	}
	if _, ok := status.FromError(err); ok {
		return err
	}
	for _, c := range codeOf {
		if errors.Is(err, c.class) {
			return status.Error(c.code, err.Error())
		}
	}
	return status.Error(codes.Unknown, err.Error())
}

func newRequestID() string {
	var b [8]byte
	_, _ = rand.Read(b[:])
	return hex.EncodeToString(b[:])
}
